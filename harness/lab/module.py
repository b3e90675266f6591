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

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from harness.core.cells import CellNet, as_tuple, cell_initial_state, check_state_kinds
from harness.core.errors import ModelError
from harness.core.protocol import StackedNet
from harness.lab.steps import Arguments, check_feedback, check_held_reads, check_steps, held_parts, like


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
    if not isinstance(model, nn.Module):
        raise ModelError(f"model={type(model).__name__}: expected a torch.nn.Module holding module=")
    if isinstance(module, torch.jit.ScriptModule):
        raise ModelError(
            f"module={type(module).__name__}: a TorchScript module, which takes no hooks; expected the Python "
            "module (record the model before torch.jit.script)"
        )
    if not isinstance(module, nn.Module) or not is_recurrent(module):
        raise ModelError(
            f"module={type(module).__name__}: not recurrent; expected torch.nn.RNN, LSTM, GRU, a torch cell, or "
            "a cell whose forward(x_t, state) returns the new state (with hidden_size or initial_state)"
        )
    if not any(m is module for m in model.modules()):
        raise ModelError(f"module={type(module).__name__}: not a submodule of model={type(model).__name__}")


def graph_task() -> int:
    """The backward pass autograd's engine is running on this thread (-1: none). torch's own checkpointing
    asks the same private function; without it (a later torch), -1, and recomputation goes unrefused."""
    current = getattr(torch._C, "_current_graph_task_id", None)
    return -1 if current is None else current()


def call(model: nn.Module, inputs: Tensor | Sequence[Tensor]) -> Any:
    """model(inputs), or model(*inputs) for a tuple or list of them (a PackedSequence is one input)."""
    return model(*inputs) if is_several(inputs) else model(inputs)


def is_several(inputs: Any) -> bool:
    """Whether inputs are several arguments: a tuple or list, but not a PackedSequence (a named tuple)."""
    return isinstance(inputs, (tuple, list)) and not isinstance(inputs, PackedSequence)


class Substitution:
    """The model with `module`'s outputs replaced by the harness's (see the module docstring).

    After construction: net (the module unrolled by the harness), cell (its name), x (its inputs,
    (T, B, I)). outputs(stack) runs the model with the module's top outputs replaced by `stack` and
    returns the model's output.
    """

    def __init__(
        self, model: nn.Module, inputs: Tensor | Sequence[Tensor], module: nn.Module, sources: int | None = None
    ):
        self.model, self.inputs, self.module = model, inputs, module
        self.sources = sources  # recorded in the dependency view (sources=N): see check_reads
        self.per_step = not isinstance(module, nn.RNNBase)  # a cell: one call per step
        calls: list[tuple[tuple, dict, Any]] = []
        leaves: list[tuple[Tensor, ...]] = []  # a cell's outputs, step by step, as the model received them

        def keep(_: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
            if not self.per_step:
                calls.append((args, kwargs, out))
                return None
            # Each step's outputs are handed on as fresh leaves of a graph, so that what the model makes
            # of them before its next call shows (see check_steps); the values are the cell's own.
            parts = as_tuple(out) if isinstance(out, (Tensor, tuple, list)) else ()
            if not (parts and all(isinstance(o, Tensor) for o in parts)):
                kinds = ", ".join(type(o).__name__ for o in (out.values() if isinstance(out, dict) else parts))
                raise ModelError(
                    f"module={type(module).__name__}: returns {type(out).__name__}{f' of {kinds}' if kinds else ''}; "
                    "expected its state: a tensor, or a tuple or list of tensors"
                )
            check_state_kinds(f"module={type(module).__name__}", parts)
            fresh = tuple(o.detach().requires_grad_() for o in parts)
            leaves.append(fresh)
            calls.append((args, kwargs, like(out, [f.detach() for f in fresh])))
            return like(out, [f.clone() for f in fresh])  # not the leaves: the model may change them in place

        hook = module.register_forward_hook(keep, with_kwargs=True)
        try:
            with torch.enable_grad() if self.per_step else torch.no_grad():
                call(model, inputs)
        finally:
            hook.remove()
        if not calls:
            raise ModelError(f"module={type(module).__name__}: model={type(model).__name__} did not call it")
        self.returned = [out for _, _, out in calls]
        self.calling = False  # True while outputs() runs the model: its calls of the module are the harness's
        self.held_from: Tensor | None = None  # per batch row, the step a padded sequence's state is held from
        self.packed: PackedSequence | None = None  # the module's input, where it was called with a packed one
        if self.per_step:
            arguments = Arguments(module)
            name, initial = type(module).__name__, self._capture_cell(calls, arguments)
            with self.recomputation_refused():
                self.held_from = check_steps(name, arguments, calls, leaves, initial)
                check_feedback(name, arguments, calls, leaves)
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
        if isinstance(x, PackedSequence):  # its sequences zero-padded, each ending at its own length
            if self.sources is not None:
                raise ModelError(
                    f"module={name}: called with a PackedSequence, whose sequences end at their own lengths, "
                    f"with sources={self.sources}; expected sources=None (the dependency view counts its lags "
                    "from each loss step of the whole batch)"
                )
            self.packed = x
            x, lengths = pad_packed_sequence(x)  # (T, B, I), the batch's own order
            self.held_from = lengths.to(x.device) + 1  # the first step after each sequence's own end
        elif not isinstance(x, Tensor) or x.dim() != 3:
            raise ModelError(
                f"module={name}: its input is {type(x).__name__}; expected a 3-d tensor or a PackedSequence"
            )
        elif self.module.batch_first:
            x = x.transpose(0, 1)
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        if hx is not None and any(h.ne(0).any() for h in as_tuple(hx)):
            raise ModelError(f"module={name}: called with a nonzero initial state hx; expected hx=None or zeros")
        self.net: StackedNet = from_torch(self.module)
        self.cell = TORCH_CELLS[type(self.module)]
        self.x = x.detach()

    def _capture_cell(self, calls: list, arguments: Arguments) -> tuple[Tensor, ...]:
        """The cell's net and inputs from its calls, checked; returns its initial state."""
        name = type(self.module).__name__
        x = [arguments.input(c) for c in calls]
        if not all(isinstance(x_t, Tensor) and x_t.dim() == 2 for x_t in x):
            raise ModelError(f"module={name}: each call's input should be (batch, features); got {type(x[0])}")
        names = {arguments.input_name, arguments.state_name}
        # an argument left at None (a mask not given) changes nothing the harness replays
        extras = (
            [
                *(a for a in args[2:] if a is not None),
                *(k for k, v in kwargs.items() if k not in names and v is not None),
            ]
            for args, kwargs, _ in calls
        )
        extra = next((e for e in extras if e), None)
        if extra:
            shown = ", ".join(k if isinstance(k, str) else type(k).__name__ for k in extra)
            raise ModelError(
                f"module={name}: called with {shown} besides its input and state; expected calls cell(input, "
                "state): the harness replays the cell on those two alone"
            )
        shrunk = next((t for t, x_t in enumerate(x) if x_t.shape != x[0].shape), None)
        if shrunk is not None:
            raise ModelError(
                f"module={name}: step {shrunk}'s input is {tuple(x[shrunk].shape)}, step 0's {tuple(x[0].shape)} (a "
                "batch that sheds its ended sequences); expected every step's batch whole, an ended sequence's "
                "state held (torch.where)"
            )
        expected = cell_initial_state(self.module, x[0].shape[0])
        returned = len(as_tuple(calls[0][2]))
        if returned != len(expected):
            raise ModelError(
                f"module={name}: returns a state of {returned} tensors, its initial state has {len(expected)} (without "
                "an initial_state method, zeros of hidden_size); expected an initial_state(batch_size) method "
                f"that returns all {returned}"
            )
        first = arguments.state(calls[0])
        if first is not None:
            if any(not torch.equal(a, b) for a, b in zip(as_tuple(first), expected)):
                raise ModelError(
                    f"module={name}: its first call's state is not its initial state (zeros or its own "
                    "initial_state); expected the model to start from it"
                )
        self.net = CellNet([self.module], x[0].shape[-1])
        self.cell = self.net.cell_name
        self.x = torch.stack(x).detach()
        return expected

    def _sequence(self) -> Tensor:
        """The module's output sequence from the capture pass, as (T, B, H) (zero past a packed
        sequence's end)."""
        seq = self.returned[0][0]
        if self.packed is not None:
            return pad_packed_sequence(seq)[0]
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
        self.held, self.parts = [], parts
        # The module's forward is shadowed for the call (an instance attribute), not hooked after it:
        # what it would compute is replaced anyway, and an LSTM's own forward costs as much as the rest.
        self.module.forward = self._replacement(parts)
        self.calling = True
        try:
            return call(self.model, self.inputs)
        finally:
            self.calling = False
            del self.module.forward

    @contextlib.contextmanager
    def recomputation_refused(self) -> Iterator[None]:
        """While gradients are pulled back through the model's graph (the checks, the recording), a call of
        the module in a backward pass, outside outputs(), is the model recomputing it (activation
        checkpointing), which would run the module's own forward where the harness's outputs were:
        ModelError, in one line, instead of torch's CheckpointError or a gradient that misses the harness.
        The harness's own recurrence calls a cell module too, in forward passes (in the backward pass, if
        any, that record() itself was called from)."""

        outer = graph_task()  # record() may itself be called from a backward pass (a hook's)
        recording = threading.get_ident()  # another thread's backward pass may run the module too

        def refuse(*_: Any) -> None:
            if threading.get_ident() == recording and not self.calling and graph_task() not in (-1, outer):
                raise ModelError(
                    f"module={type(self.module).__name__}: called again in the backward pass (activation "
                    "checkpointing, torch.utils.checkpoint); expected it called in the forward pass only: record "
                    "the model with checkpointing off (the gradients are the same)"
                )

        hook = self.module.register_forward_pre_hook(refuse)
        try:
            yield
        finally:
            hook.remove()

    def _replacement(self, parts: list[Tensor]) -> Callable:
        counter = iter(range(len(parts)))

        def replace(*args: Any, **kwargs: Any) -> Any:
            if self.per_step:
                t = next(counter)
                returned = self.returned[t]
                rest = [self._hold(o) for o in as_tuple(returned)[1:]]
                return like(returned, [parts[t], *rest])
            if self.packed is not None:
                sequence, top = self._packed(parts)
            else:
                sequence, top = torch.stack(parts, 1 if self.module.batch_first else 0), parts[-1]
            final = self.returned[0][1]
            if isinstance(final, tuple):  # an LSTM's (h_n, c_n)
                return sequence, (self._final_h(final[0], top), self._hold(final[1]))
            return sequence, self._final_h(final, top)

        return replace

    def _packed(self, parts: list[Tensor]) -> tuple[PackedSequence, Tensor]:
        """The harness's outputs packed as the module packed its own (the same order of .data, which a
        model may read directly), and each sequence's output at its own last step, h_n's top layer."""
        padded, ends = torch.stack(parts), self.held_from - 2  # (T, B, H); each sequence's last step
        order = self.packed.sorted_indices
        data = pack_padded_sequence(
            padded if order is None else padded.index_select(1, order),
            (ends + 1 if order is None else (ends + 1)[order]).cpu(),
        ).data
        packed = PackedSequence(data, self.packed.batch_sizes, order, self.packed.unsorted_indices)
        return packed, padded[ends, torch.arange(padded.shape[1], device=padded.device)]

    def _final_h(self, h_n: Tensor, top: Tensor) -> Tensor:
        """h_n with its top layer from the harness's last output, the layers below held."""
        return torch.cat([self._hold(h_n[:-1]), top.unsqueeze(0)]) if len(h_n) > 1 else top.unsqueeze(0)

    def _hold(self, value: Tensor) -> Tensor:
        """A returned tensor the recording does not follow: a leaf, so a loss that reads it is caught."""
        held = value.detach().clone().requires_grad_()
        self.held.append(held)
        return held

    def check_reads(self, value: Tensor) -> None:
        """ModelError if the loss value read anything the recording does not follow: what the module
        returns besides its top outputs, or, of a padded sequence that has ended, what the cell returns
        once its state is held (the model drops it; the harness's recurrence runs on)."""
        name = type(self.module).__name__
        held = [h for h in self.held if h.numel()]
        late = [] if self.held_from is None else held_parts(self.parts, self.held_from, self.sources)
        inputs = held + [part for _, part in late]
        grads = torch.autograd.grad(value, inputs, allow_unused=True, retain_graph=True) if inputs else []
        if any(g is not None and g.ne(0).any() for g in grads[: len(held)]):
            raise ModelError(
                f"module={name}: the loss reads what the module returns besides its top "
                "layer's outputs (a final c, lower layers' h_n, a cell's second state); expected a model that "
                "reads only the top layer's outputs (and its h_n)"
            )
        if late:
            check_held_reads(name, late, grads[len(held) :], self.held_from, self.sources, len(self.parts) - 1)
