"""The recurrent part of any model: harness.record(model, inputs, module=model.lstm, loss=...).

    model = CharLM()                                   # Embedding -> LSTM(batch_first) -> Linear
    harness.record(model, token_ids, module=model.lstm,
                   loss=lambda logits, y: F.cross_entropy(logits.flatten(0, 1), y.flatten()), targets=y)

How: one capture pass runs `model(inputs)` without a graph and keeps what reaches `module` (its input
sequence, or each step's input for a cell the model calls in its own loop) and what it returns. The
harness then unrolls the module on its own parameters (harness.from_torch; a cell as a CellNet) from
those inputs, and evaluates the loss by running the model again with `module`'s forward shadowed for
that call, so that it returns the harness's outputs. The rest of the model (embeddings, heads, norms,
residuals) runs as written, on a real graph, so dL/d(module output) is the model's own; the recorders
take it from there.

What the module returns besides its top layer's outputs (an LSTM's c_n, lower layers' h_n, a cell's
c) is passed through from the capture pass, detached; a model whose loss reads it is refused (the
recording would miss that path). The module must start from zeros (or a cell's own initial_state), and
a cell called in the model's own loop must be passed back what it returned, unchanged and not detached,
and its inputs must not be computed from what it returned (a model feeding its own predictions back): the
capture pass of such a cell runs on a graph that shows whether they are, and such a model is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from harness.core.cells import CellNet, as_tuple, cell_initial_state
from harness.core.errors import ModelError
from harness.core.protocol import StackedNet


def is_recurrent(module: nn.Module) -> bool:
    """A module harness.record can unroll: nn.RNN/LSTM/GRU, a torch cell, a harness network, or a
    user cell (an int hidden_size or an initial_state method)."""
    return isinstance(module, (nn.RNNBase, nn.RNNCellBase, StackedNet)) or (
        not isinstance(module, (nn.Linear, nn.Embedding))
        and (isinstance(getattr(module, "hidden_size", None), int) or callable(getattr(module, "initial_state", None)))
    )


def find_recurrent(model: nn.Module) -> nn.Module:
    """The one recurrent module in `model` (the model itself if it is one); ModelError naming them
    when there are several, or saying none was found."""
    if is_recurrent(model):
        return model
    found = [(name, m) for name, m in model.named_modules() if name and is_recurrent(m)]
    outermost = [(n, m) for n, m in found if not any(n.startswith(f"{o}.") for o, _ in found)]
    if len(outermost) == 1:
        return outermost[0][1]
    if not outermost:
        raise ModelError(
            f"model={type(model).__name__}: no recurrent module in it; expected nn.RNN/LSTM/GRU, a torch "
            "cell, or a cell of your own with an int hidden_size or an initial_state(batch_size) method "
            "(docs/cells.md), passed as module=... inside a larger model"
        )
    names = ", ".join(f"{n} ({type(m).__name__})" for n, m in outermost)
    raise ModelError(
        f"model={type(model).__name__} holds {len(outermost)} recurrent modules: {names}; expected module= naming one"
    )


def check_module(model: nn.Module, module: nn.Module) -> None:
    """ModelError in one line for a module= that is not a recurrent part of `model`."""
    if not isinstance(module, nn.Module) or not is_recurrent(module):
        raise ModelError(
            f"module={type(module).__name__}: not recurrent; expected torch.nn.RNN, LSTM, GRU, a torch cell, or "
            "a cell whose forward(x_t, state) returns the new state (with hidden_size or initial_state)"
        )
    if not any(m is module for m in model.modules()):
        raise ModelError(f"module={type(module).__name__}: not a submodule of model={type(model).__name__}")


def call(model: nn.Module, inputs: Tensor | Sequence[Tensor]) -> Any:
    """model(inputs), or model(*inputs) for a tuple or list of them."""
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


class Substitution:
    """The model with `module`'s outputs replaced by the harness's (see the module docstring).

    After construction: net (the module unrolled by the harness), cell (its name), x (its inputs,
    (T, B, I)). outputs(stack) runs the model with the module's top outputs replaced by `stack` and
    returns the model's output.
    """

    def __init__(self, model: nn.Module, inputs: Tensor | Sequence[Tensor], module: nn.Module):
        self.model, self.inputs, self.module = model, inputs, module
        self.per_step = not isinstance(module, nn.RNNBase)  # a cell: one call per step
        calls: list[tuple[tuple, dict, Any]] = []
        leaves: list[tuple[Tensor, ...]] = []  # a cell's outputs, step by step, as the model received them

        def keep(_: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
            if not self.per_step:
                calls.append((args, kwargs, out))
                return None
            # Each step's outputs are handed on as fresh leaves of a graph, so that what the model makes
            # of them before its next call shows (see check_steps); the values are the cell's own.
            fresh = tuple(o.detach().requires_grad_(o.is_floating_point()) for o in as_tuple(out))
            leaves.append(fresh)
            calls.append((args, kwargs, like(out, [f.detach() for f in fresh])))
            return like(out, [f.clone() for f in fresh])  # not the leaves: the model may change them in place

        hook = module.register_forward_hook(keep, with_kwargs=True)
        try:
            with torch.enable_grad() if self.per_step else torch.no_grad():
                output = call(model, inputs)
        finally:
            hook.remove()
        if not calls:
            raise ModelError(f"module={type(module).__name__}: model={type(model).__name__} did not call it")
        self.returned = [out for _, _, out in calls]
        if self.per_step:
            self._capture_cell(calls)
            check_steps(type(module).__name__, calls, leaves, output, cell_initial_state(module, len(self.x[0])))
        else:
            self._capture_sequence(calls)
        self.captured = torch.stack([self._top(out) for out in self.returned]) if self.per_step else self._sequence()
        self.held: list[Tensor] = []

    def _capture_sequence(self, calls: list) -> None:
        from harness.lab.api import TORCH_CELLS, from_torch

        name = type(self.module).__name__
        if len(calls) != 1:
            raise ModelError(f"module={name}: called {len(calls)} times in one forward pass; expected once")
        args, kwargs, _ = calls[0]
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, Tensor) or x.dim() != 3:
            raise ModelError(f"module={name}: its input is {type(x).__name__}; expected an unpacked 3-d tensor")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        if hx is not None and any(h.ne(0).any() for h in as_tuple(hx)):
            raise ModelError(f"module={name}: called with a nonzero initial state hx; expected hx=None or zeros")
        self.net: StackedNet = from_torch(self.module)
        self.cell = TORCH_CELLS[type(self.module)]
        self.x = (x.transpose(0, 1) if self.module.batch_first else x).detach()

    def _capture_cell(self, calls: list) -> None:
        name = type(self.module).__name__
        x = [input_given(c) for c in calls]
        if not all(isinstance(x_t, Tensor) and x_t.dim() == 2 for x_t in x):
            raise ModelError(f"module={name}: each call's input should be (batch, features); got {type(x[0])}")
        first = state_given(calls[0])
        if first is not None:
            expected = cell_initial_state(self.module, x[0].shape[0])
            if any(not torch.equal(a, b) for a, b in zip(as_tuple(first), expected)):
                raise ModelError(
                    f"module={name}: its first call's state is not its initial state (zeros or its own "
                    "initial_state); expected the model to start from it"
                )
        self.net = CellNet([self.module], x[0].shape[-1])
        self.cell = self.net.cell_name
        self.x = torch.stack(x).detach()

    def _sequence(self) -> Tensor:
        """The module's output sequence from the capture pass, as (T, B, H)."""
        seq = self.returned[0][0]
        return seq.transpose(0, 1) if self.module.batch_first else seq

    @staticmethod
    def _top(out: Any) -> Tensor:
        return as_tuple(out)[0]

    def outputs(self, stack: Tensor) -> Any:
        """The model's output with the module's top outputs taken from `stack`: (T, B, H), or (1, B, H)
        for the last step alone (the capture pass's outputs before it: a loss that reads only the last
        step gets the same value)."""
        stack = stack.to(self.captured.dtype)
        if len(stack) == len(self.captured):
            parts = list(stack.unbind(0))
        else:
            parts = [*self.captured[:-1].unbind(0), stack[-1]]
        self.held = []
        # The module's forward is shadowed for the call (an instance attribute), not hooked after it:
        # what it would compute is replaced anyway, and an LSTM's own forward costs as much as the rest.
        self.module.forward = self._replacement(parts)
        try:
            return call(self.model, self.inputs)
        finally:
            del self.module.forward

    def _replacement(self, parts: list[Tensor]) -> Callable:
        counter = iter(range(len(parts)))

        def replace(*args: Any, **kwargs: Any) -> Any:
            if self.per_step:
                t = next(counter)
                returned = self.returned[t]
                rest = [self._hold(o) for o in as_tuple(returned)[1:]]
                return like(returned, [parts[t], *rest])
            sequence = torch.stack(parts, 1 if self.module.batch_first else 0)
            final = self.returned[0][1]
            if isinstance(final, tuple):  # an LSTM's (h_n, c_n)
                return sequence, (self._final_h(final[0], parts[-1]), self._hold(final[1]))
            return sequence, self._final_h(final, parts[-1])

        return replace

    def _final_h(self, h_n: Tensor, top: Tensor) -> Tensor:
        """h_n with its top layer from the harness's last output, the layers below held."""
        return torch.cat([self._hold(h_n[:-1]), top.unsqueeze(0)]) if len(h_n) > 1 else top.unsqueeze(0)

    def _hold(self, value: Tensor) -> Tensor:
        """A returned tensor the recording does not follow: a leaf, so a loss that reads it is caught."""
        held = value.detach().clone().requires_grad_()
        self.held.append(held)
        return held

    def check_reads(self, value: Tensor) -> None:
        """ModelError if the loss value read anything the recording does not follow."""
        held = [h for h in self.held if h.numel()]
        grads = torch.autograd.grad(value, held, allow_unused=True, retain_graph=True) if held else []
        if any(g is not None and g.ne(0).any() for g in grads):
            raise ModelError(
                f"module={type(self.module).__name__}: the loss reads what the module returns besides its top "
                "layer's outputs (a final c, lower layers' h_n, a cell's second state); expected a model that "
                "reads only the top layer's outputs (and its h_n)"
            )


def like(out: Any, tensors: list[Tensor]) -> Any:
    """tensors in the container `out` came in (a tensor, tuple, named tuple or list)."""
    if isinstance(out, Tensor):
        return tensors[0]
    return type(out)(*tensors) if hasattr(out, "_fields") else type(out)(tensors)


def input_given(call: tuple[tuple, dict, Any]) -> Any:
    """The input a cell was called with (its first argument, or input=)."""
    args, kwargs, _ = call
    return args[0] if args else kwargs.get("input")


def state_given(call: tuple[tuple, dict, Any]) -> Any:
    """The state a cell was called with (its second argument, or its keyword besides input=), or None."""
    args, kwargs, _ = call
    return args[1] if len(args) > 1 else next((v for k, v in kwargs.items() if k != "input"), None)


def rows_equal(a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> Tensor:
    """Per batch row, whether states a and b hold the same values (nan equal to nan; compared in the
    lower of their precisions, so a state the model keeps in float32 is its float64 cell's state)."""
    equal = torch.ones(len(b[0]), dtype=torch.bool, device=b[0].device)
    for x, y in zip(a, b, strict=True):
        low = x.dtype if torch.finfo(x.dtype).bits <= torch.finfo(y.dtype).bits else y.dtype
        x, y = x.detach().to(low), y.detach().to(low)
        equal &= ((x == y) | (x.isnan() & y.isnan())).flatten(1).all(1)
    return equal


def check_steps(name: str, calls: list, leaves: list[tuple[Tensor, ...]], output: Any, initial: tuple) -> None:
    """ModelError where the model does more between two calls of its cell than pass the state on, so
    that the harness, which unrolls the cell's own recurrence from the captured inputs, would record a
    recurrence the model does not run. Each step's outputs reached the model as fresh leaves (`leaves`),
    so what it made of them shows on the capture pass's graph:

    - the state passed to step t, row by row, must be what step t - 1 returned or, from some step on
      to the end, the row's state before (a padded sequence that has ended, held by torch.where), and
      then neither the model's output nor a later input may read what the cell returns for that row;
    - no state tensor may be detached (truncated backpropagation);
    - no input may be computed from what the cell returned (its own predictions fed back).
    Greedy decoding passes: the argmax's embedding has no gradient to the cell's outputs."""
    floating = [r for step in leaves for r in step if r.requires_grad]
    if not floating:  # no graph (inference mode): nothing can be told
        return
    never = len(calls) + 1
    held_from = torch.full(
        (len(leaves[0][0]),), never, device=leaves[0][0].device
    )  # per row: the step its state is held from
    before: tuple = initial
    for t in range(1, len(calls)):
        given = as_tuple(state_given(calls[t]) if state_given(calls[t]) is not None else initial)
        if len(given) != len(leaves[t - 1]):
            raise ModelError(
                f"module={name}: step {t} is given a state of {len(given)} tensors where step {t - 1} "
                f"returned {len(leaves[t - 1])}; expected the state it returned"
            )
        passed, held = rows_equal(given, leaves[t - 1]), rows_equal(given, before)
        was_held = held_from < t
        changed = ~passed & ~held
        if changed.any():
            raise ModelError(
                f"module={name}: the state passed to step {t} is neither what step {t - 1} returned nor, for a "
                f"padded sequence that has ended, its state before (batch row {int(changed.nonzero()[0])}: a "
                "reset, a norm, noise, zoneout); expected the cell's own recurrence"
            )
        resumed = was_held & ~held
        if resumed.any():
            row = int(resumed.nonzero()[0])
            raise ModelError(
                f"module={name}: the state of batch row {row}, held from step {int(held_from[row])} (as a padded "
                f"sequence that has ended), is run again at step {t}; expected a held state to stay held"
            )
        held_from = torch.where(~passed & held & ~was_held, t, held_from)
        cut = [s for s, r in zip(given, leaves[t - 1], strict=True) if r.requires_grad and not s.requires_grad]
        if cut:
            raise ModelError(
                f"module={name}: the model detaches the state between steps {t - 1} and {t} (truncated "
                "backpropagation, or a reentrant checkpoint); expected the gradient to flow through the "
                "whole recurrence"
            )
        before = given
    # What reads the cell's outputs: a random projection of each input at steps >= 1 and of the model's
    # output, back to every leaf (random, so that no structure, a sum that is constant, cancels it).
    fed = [x_t for x_t in map(input_given, calls[1:]) if isinstance(x_t, Tensor) and x_t.requires_grad]
    if fed:
        grads = torch.autograd.grad(fed, floating, [torch.randn_like(x_t) for x_t in fed], allow_unused=True)
        if any(g is not None and g.ne(0).any() for g in grads):
            raise ModelError(
                f"module={name}: the model computes its input at a step from what the module returned before "
                "(it feeds its own outputs or predictions back); expected inputs that do not depend on its outputs"
            )
    read = [o for o in tensors_in(output) if o.requires_grad]
    if read and (held_from < never).any():
        grads = torch.autograd.grad(read, floating, [torch.randn_like(o) for o in read], allow_unused=True)
        by_step = iter(grads)
        for t, step in enumerate(leaves):
            for r in step:
                g = next(by_step) if r.requires_grad else None
                # a row held from step f discards what the cell returned at f - 1 and after
                discarded = held_from <= t + 1
                if g is not None and g[discarded].ne(0).any():
                    raise ModelError(
                        f"module={name}: the model reads what the cell returned at step {t} for a batch row whose "
                        "state it holds from then on (a padded sequence that has ended); expected it to read the "
                        "held state, as the recurrence it runs does"
                    )


def tensors_in(value: Any) -> list[Tensor]:
    """The tensors in a model's output (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in tensors_in(item)]
    return []
