"""The public Python API: record dL/dh_t for every t of any torch recurrent model.

    import torch, harness
    lstm = torch.nn.LSTM(16, 64, num_layers=2)
    profile = harness.record(lstm, torch.randn(200, 8, 16))    # (seq_len, batch, input_size)
    profile.fit()["rate"], profile.plot()

What can be recorded (`model`):
- torch.nn.RNN (tanh or relu), LSTM, GRU: any num_layers, batch_first, bias or not. They are unrolled
  by harness.from_torch in the harness's explicit cells on the module's own parameters (shared, not
  copied), so the numbers are torch's equations. Refused in one line: bidirectional, an LSTM with
  proj_size, dropout between layers in training mode (call .eval()).
- a harness RecurrentNet or CellNet.
- a user cell: an nn.Module whose forward(x_t, state) -> state (a tensor or a tuple of tensors), such
  as torch.nn.LSTMCell (see harness.core.cells for what a cell may define).

Which derivative:
- default: the adjoint dL/dS_t of one loss with respect to each step's joint state S_t (every layer's
  blocks), for t = 0..T (everything that reaches S_t through the recurrence and the outputs);
  adjoint="total" takes each layer's h_t as a node of the graph instead, what retain_grad gives,
  which also counts the same-step paths into the layer above (and from an lstm's c_t into h_t).
  `loss` receives the model's output (a recurrent module's: its top layer's output sequence,
  (seq_len, batch, hidden) or batch first) and returns a scalar; the default is the probe, a fixed
  random unit readout of the final state summed over the batch, so each sample's gradient is its own.
- module=: the recurrent part of a larger model (harness.lab.module); the rest runs as written.
- recorder: "exact" (log-domain BPTT, any range, in the model's dtype) needs a loss that reads only the
  final step; "autograd" records what torch computes, in float64 (a float64 copy of the weights,
  the loss evaluated in the model's own dtype); "auto" picks exact for a final-step loss and autograd
  for a loss that reads every step. A loss reads every step when its gradient reaches an output before
  the last one (checked on the real graph).
- sources=N: the dependency-length view. For N loss steps s sampled from 1..T (seeded), L_s is the
  loss on the output at s alone (a final-step loss on the prefix); the result is, per lag k, the mean
  over the sources with s >= k of ln ||dL_s/dh_{s-k}||, computed by the exact recorder.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import inspect
import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from harness.core.cells import CellNet, RecurrentNet, StackedNet
from harness.core.errors import ConfigError, ModelError
from harness.core.memory import available_memory, segment_length, size
from harness.core.recorders import (
    RECORDERS,
    Overflow,
    aligned_to_ends,
    flush_denormals,
    leave_out_overflow,
    record_log_norms,
)
from harness.core.segments import record_profile
from harness.core.spec import RECORDING, VALIDATORS
from harness.core.tasks import step_drives
from harness.lab.module import Substitution, check_module, find_recurrent, is_recurrent, is_several
from harness.lab.profile import GradientProfile
from harness.lab.steps import like

Loss = Callable[[Tensor], Tensor]
META = torch.device("meta")  # a tensor there holds no values
Lengths = Tensor | np.ndarray | Sequence[int]  # each sequence's length in a padded batch (record's lengths=)
HASH_ROWS = 4096  # steps of log-norms recording_digest copies at a time
TORCH_CELLS = {nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru"}
ADJOINTS = ("state", "total")


def from_torch(module: nn.RNNBase) -> RecurrentNet:
    """A RecurrentNet that computes `module`'s own equations on its own parameters (the same Parameter
    objects: training one trains the other). Raises ModelError for what it cannot unroll."""
    cell = TORCH_CELLS.get(type(module))
    name = type(module).__name__
    if cell is None:
        raise ModelError(f"model={name}: expected torch.nn.RNN, LSTM or GRU (or a cell module; see harness.record)")
    if module.bidirectional:
        raise ModelError(
            f"model={name}(bidirectional=True): not supported; expected bidirectional=False "
            "(record each direction as its own module)"
        )
    if getattr(module, "proj_size", 0):
        raise ModelError(f"model={name}(proj_size={module.proj_size}): not supported; expected proj_size=0")
    if module.dropout and module.training and module.num_layers > 1:
        raise ModelError(
            f"model={name}(dropout={module.dropout}) in training mode: dropout between layers makes "
            "every step random; expected module.eval() or dropout=0"
        )
    activation = "relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "tanh"
    net = RecurrentNet(cell, activation, module.input_size, module.hidden_size, module.num_layers, module.bias)
    for name_, _ in list(net.named_parameters()):
        net._parameters[name_] = getattr(module, name_)  # the module's own Parameter, shared
    return net


def as_network(model: nn.Module, input_size: int) -> tuple[StackedNet, str, bool]:
    """(the network to unroll, its cell's name, whether inputs and outputs are batch first)."""
    if isinstance(model, StackedNet):
        return model, model.cell_name, False
    if isinstance(model, nn.RNNBase):
        return from_torch(model), TORCH_CELLS.get(type(model), type(model).__name__), model.batch_first
    if isinstance(model, nn.Module):
        if isinstance(model, (nn.RNNCellBase)) and model.input_size != input_size:
            raise ModelError(f"inputs: {input_size} features; {type(model).__name__} expects {model.input_size}")
        net = CellNet([model], input_size)
        return net, net.cell_name, False
    raise ModelError(
        f"model={type(model).__name__}: expected a torch.nn.Module (nn.RNN/LSTM/GRU, a harness "
        "network, or a cell whose forward(x_t, state) returns the new state)"
    )


def probe_loss(
    hidden_size: int, seed: int, like: Tensor, batch_first: bool = False, last: Tensor | None = None
) -> Loss:
    """The probe: r . h summed over the batch, r a fixed random unit vector (seeded), read at the last
    step (each sequence's own, `last`, in a padded batch; -1: none), or at step s when called as probe(outputs, s)
    (the dependency view)."""
    readout = torch.randn(hidden_size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    readout = (readout / readout.norm()).to(like)

    def probe(outputs: Tensor, s: int = -1) -> Tensor:
        if last is not None:  # a sequence of length 0 (last -1) is read nowhere: its gradient is 0
            rows, steps = torch.arange(len(last), device=outputs.device), last.to(outputs.device)
            at = steps.clamp(min=0)
            read = (outputs[rows, at] if batch_first else outputs[at, rows]) * (steps >= 0)[:, None]
        else:
            read = outputs[:, s] if batch_first else outputs[s]
        return (read @ readout.to(outputs)).sum()

    return probe


# torch's own errors for what a model does that a recording cannot follow (their first words), named
TORCH_ERRORS = {
    "When use_reentrant=True, torch.utils.checkpoint is incompatible with .grad()": (
        "the loss passes through torch.utils.checkpoint with use_reentrant=True, which torch.autograd.grad (the "
        "harness's recorders) cannot differentiate through; expected use_reentrant=False (torch's recommended "
        "form) or no checkpointing"
    ),
    "Inference tensors cannot be saved for backward": (
        "a tensor made under torch.inference_mode() (a parameter, a buffer, or one the loss reads) is saved for "
        "the backward pass, which autograd cannot do; expected it made outside that mode (or a clone of it)"
    ),
}


def torch_errors_named(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, with torch's errors of TORCH_ERRORS raised as ModelError in one line: they come from
    what the model does, not from the harness. Any other error passes on as it is."""

    @functools.wraps(function)
    def named(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RuntimeError as error:
            reason = next((why for start, why in TORCH_ERRORS.items() if str(error).startswith(start)), None)
            if reason is None:
                raise
            model = kwargs.get("model", args[0] if args else None)
            raise ModelError(f"model={type(model).__name__}: {reason}") from error

    return named


def needs_graph(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, which records gradients, called with grad mode on: a torch.no_grad() around the call
    (an evaluation loop's) is lifted for it and restored after; torch.inference_mode(), under which no
    graph can be made at all, is refused in one line."""

    @functools.wraps(function)
    def with_graph(*args: Any, **kwargs: Any) -> Any:
        if torch.is_inference_mode_enabled():
            raise ModelError(
                f"{function.__name__}: called inside torch.inference_mode(), where no graph can be made; expected a "
                "call outside it (inside torch.no_grad() is fine)"
            )
        with torch.enable_grad():
            return function(*args, **kwargs)

    return with_graph


@needs_graph
@torch_errors_named
def record(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    loss: Callable[..., Tensor] | None = None,
    targets: Tensor | None = None,
    module: nn.Module | None = None,
    recorder: str = "auto",
    sources: int | None = None,
    adjoint: str = "state",
    seed: int = 0,
    name: str = "python",
    segment: int | None = None,
    memory_fraction: float = 0.25,
    lengths: Lengths | None = None,
) -> GradientProfile:
    """Record ||dL/dh_t|| for every t, every layer and state block, every sample (see the module doc).

    inputs: what `model` takes (model(*inputs) for a tuple); for a recurrent model itself,
    (seq_len, batch, input_size), or (batch, seq_len, input_size) for a batch_first module, or, for
    nn.RNN/LSTM/GRU, a PackedSequence (as a module inside a model may be called with one: its lengths are
    the packing's).
    loss: output -> scalar (output: what `model` returns), or (output, targets) -> scalar when targets
    are given; with sources, also the step: loss(output, s) or loss(output, targets, s). Default: the
    probe on the recurrent module's own outputs.
    module: the recurrent part of `model` to record (harness.lab.module); default: the model itself
    if it is recurrent, else the one recurrent module it holds.
    recorder: "exact" | "autograd" | "auto".   sources: N for the dependency-length view.
    adjoint: "state" (dL/dS_t of each step's joint state) | "total" (each layer's h_t as a graph
    node, what retain_grad gives: includes the same-step path into the layer above).
    seed: seeds the probe's readout and the sampled sources.   name: the `name` column.
    segment: steps recorded per segment (harness.core.segments; None: as many as memory_fraction of
    the available memory holds); the numbers do not depend on it. The sources view runs in memory.
    lengths: (batch,) each sequence's length in a padded batch, whose lags then count from its own last
    step (its loss may read nothing of it after that step). Found by itself where the model holds an
    ended sequence's state (a cell in its own loop); give it for a module run over the padding (nn.GRU
    on a zero-padded batch, its outputs gathered at each length) or a sequence one step short of the batch.
    """
    check_settings(recorder, sources, adjoint, segment, memory_fraction, loss, targets, lengths)
    VALIDATORS["seed"]("seed", seed)  # as the command line's: an integer torch can seed with
    check_values("inputs", inputs)
    check_values("targets", targets)
    inputs, targets = ordinary(inputs), ordinary(targets)
    net, cell, reader, x, recurrent = unrolled(model, inputs, module, loss is not None, sources)
    check_sources(sources, recorder, adjoint, x.shape[0])
    # per sample, the first step whose state is not its own: a held row's, or the lengths given
    ends = None if sources is not None else ends_of(checked_lengths(lengths, x.shape[1], x.shape[0]), reader.ends())
    parameter = next(net.parameters())
    if loss is None:  # in a padded batch, each sequence read at its own last step
        early = ends is not None and bool((ends <= x.shape[0]).any())
        last = ends.clamp(max=x.shape[0] + 1) - 2 if early else None
        user_loss, loss = None, probe_loss(net.output_size, seed, parameter, reader.batch_first, last)
    else:
        user_loss = loss
        loss = (lambda out, *s: user_loss(out, targets, *s)) if targets is not None else user_loss

    start = time.perf_counter()
    with flush_denormals(), reader.recomputation_refused():
        last = (x.shape[0] - 1,) if sources else ()  # with sources the loss is told the step it reads
        every_step, finite = loss_reach(net, x, lambda out: loss(reader(out), *last), reader.check_reads)
        used = _recorder_used(recorder, every_step)
        if sources is not None:
            states = net(x, net.initial_state(x.shape[1]))
            stack = torch.stack([net.top_hidden(s) for s in states[1:]])
            log_norms, counts = dependency_view(net, states, stack, lambda out, s: loss(reader(out), s), sources, seed)
            used = "exact"
        elif adjoint == "total":
            from harness.core.total import total_adjoint

            log_norms, counts, used = total_adjoint(net, x, lambda out: loss(reader(out))), None, "autograd"
        else:
            log_norms, counts = (
                adjoint_view(net, x, lambda out: loss(reader(out)), every_step, used, segment, memory_fraction),
                None,
            )
        # a sample whose forward pass overflowed was not measured at any step (recorders.leave_out_overflow)
        # a padded row's replay after its end is not the model's (the dependency view's rows are lags, not steps)
        log_norms, overflow = leave_out_overflow(log_norms, finite, net, x, ends)
        finite = finite or overflow is None  # the only states out of range were a padded row's, after its end
        # a padded row's lags count from its own end, where its loss reads it (recorders.aligned_to_ends)
        own = None if ends is None or not bool((ends <= x.shape[0]).any()) else (ends - 1).cpu()
        if own is not None:
            if lengths is not None:
                check_unread_after(log_norms, own)
            log_norms = aligned_to_ends(log_norms, own)
    seq_len = len(log_norms) - 1  # a padded batch's longest sequence (aligned_to_ends), else x's steps
    columns = _profile_columns(
        name, cell, model, recurrent, net, x, seq_len, seed, used, parameter, user_loss, sources, adjoint
    )
    columns[RECORDING] = recording_digest(log_norms, counts, overflow, [*net.parameters(), x, targets])
    view = "adjoint" if sources is None else "dependency"
    elapsed = time.perf_counter() - start
    return GradientProfile(log_norms, net.state_names, columns, used, view, counts, finite, elapsed, overflow, own)


def recording_digest(
    log_norms: Tensor, sources: Tensor | None, overflow: Overflow | None, inputs: Sequence[Any]
) -> str:
    """A short hash of a recording: the numbers recorded, where its forward pass overflowed, and the
    recorded module's weights and inputs (a profile that overflowed everywhere is all nan, whatever
    the model). The columns name the model's shape, not its weights, inputs or loss: two recordings
    of one architecture (before and after training) have the same columns, and only this column tells
    their run ids apart (harness.core.spec.run_id), so that neither is read as a duplicate of the
    other nor saved over it. Nan and -0.0 are hashed as one value each."""
    digest = hashlib.sha1()
    for start in range(0, log_norms.shape[0], HASH_ROWS):  # a copy of HASH_ROWS rows at a time
        rows = log_norms[start : start + HASH_ROWS].detach().to("cpu", torch.float64)
        digest.update((torch.nan_to_num(rows, nan=math.nan, posinf=math.inf, neginf=-math.inf) + 0.0).numpy())
    for value in [sources, None if overflow is None else overflow.first_steps, *inputs]:
        hash_into(digest, value)
    return digest.hexdigest()[:12]


def hash_into(digest: Any, value: Any) -> None:
    """value into digest: a tensor's or array's dtype, shape and bytes; the items of a list, tuple or dict
    (targets may be any of them); anything else as it reads (its repr)."""
    if isinstance(value, Tensor):
        tensor = value.detach()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    elif isinstance(value, np.ndarray):  # its repr leaves out the middle of a large one
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            hash_into(digest, item)
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            hash_into(digest, value[key])
    else:
        digest.update(repr(value).encode())


class Reader:
    """What the loss reads, from the top layer's outputs (steps, B, H): the module's own output
    sequence (in its dtype, batch first where it is), or through a Substitution the whole model's."""

    def __init__(
        self,
        dtype: torch.dtype,
        batch_first: bool,
        substitution: Substitution | None = None,
        held_from: Tensor | None = None,
    ):
        self.dtype, self.batch_first, self.substitution = dtype, batch_first, substitution
        self.held_from = held_from if substitution is None else substitution.held_from

    def __call__(self, stack: Tensor) -> Any:
        if self.substitution is not None:
            return self.substitution.outputs(stack)
        stack = stack.to(self.dtype)
        return stack.transpose(0, 1) if self.batch_first else stack

    def check_reads(self, value: Tensor) -> None:
        if self.substitution is not None:
            self.substitution.check_reads(value)

    def ends(self) -> Tensor | None:
        """Per batch row, the first step whose state is the harness's alone (a padded sequence held from
        there; harness.core.recorders.leave_out_overflow), or None."""
        return self.held_from

    def recomputation_refused(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if self.substitution is None else self.substitution.recomputation_refused()


def unrolled(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    module: nn.Module | None,
    custom_loss: bool,
    sources: int | None = None,
) -> tuple[StackedNet, str, Reader, Tensor, nn.Module]:
    """(the network to unroll, its cell's name, what the loss reads, its inputs (T, B, I), the
    recurrent module recorded): the model itself, or its recurrent part (harness.lab.module), recorded
    in the dependency view where sources is given."""
    itself = isinstance(model, nn.RNNBase) and (module is None or module is model)  # a torch module, recorded as such
    packed = itself and isinstance(inputs, PackedSequence)  # unpacked by its capture (harness.lab.module)
    if module is None and (not isinstance(model, nn.Module) or is_recurrent(model)) and not packed:
        if isinstance(model, nn.Module):
            check_not_inference("model", model)
        net, cell, batch_first, x = checked_inputs(model, inputs)
        parameter = next(net.parameters())
        return net, cell, Reader(parameter.dtype, batch_first), x, model
    if itself:  # its input checked before the substitution runs it (torch would raise its own error)
        x = inputs[0] if is_several(inputs) and inputs else inputs  # model(x) or model(x, hx)
        checked_inputs(model, pad_packed_sequence(x, model.batch_first)[0] if isinstance(x, PackedSequence) else x)
    module = find_recurrent(model) if module is None else module
    check_module(model, module)
    check_not_inference("module", module)
    substitution = Substitution(model, inputs, module, sources)
    net, x = substitution.net, substitution.x
    check_network(net, x)
    batch_first = False
    if custom_loss:  # the model's own loss through the rest of the model; the probe reads the module's outputs
        return net, substitution.cell, Reader(x.dtype, batch_first, substitution), x, module
    return net, substitution.cell, Reader(x.dtype, batch_first, held_from=substitution.held_from), x, module


def check_not_inference(key: str, module: nn.Module) -> None:
    """ModelError, in one line naming it, for a recurrent module with a parameter made under
    torch.inference_mode(): every recording saves its parameters for the backward pass, which autograd
    cannot do for an inference tensor. (Elsewhere in the model one may never be saved: torch's error,
    where one is, is named by torch_errors_named.)"""
    made = next((name for name, p in module.named_parameters() if p.is_inference()), None)
    if made is not None:
        raise ModelError(
            f"{key}={type(module).__name__}: its parameter {made} was made under torch.inference_mode(), which "
            "autograd cannot save for a backward pass; expected the module built (or loaded) outside that mode"
        )


def _recorder_used(recorder: str, every_step: bool) -> str:
    """The recorder that runs ("auto": exact for a final-step loss); ConfigError for exact on an every-step one."""
    if recorder == "exact" and every_step:
        raise ConfigError(
            "recorder='exact': the loss reads outputs before the last step, whose direct "
            "gradient the exact recorder's rescaling cannot carry; expected recorder='autograd' "
            "or 'auto'"
        )
    return ("autograd" if every_step else "exact") if recorder == "auto" else recorder


def _profile_columns(
    name: str,
    cell: str,
    model: nn.Module,
    recurrent: nn.Module,
    net: StackedNet,
    x: Tensor,
    seq_len: int,
    seed: int,
    used: str,
    parameter: Tensor,
    user_loss: Callable | None,
    sources: int | None,
    adjoint: str,
) -> dict[str, Any]:
    """The table columns of one recording: what was recorded, on which inputs, how and with which loss."""
    return {
        "name": name,
        "cell": cell,
        "model": type(model).__name__,
        "module": type(recurrent).__name__,
        **_shape_columns(net, x, seq_len),
        "seed": seed,
        "recorder": used,
        "dtype": str(parameter.dtype).removeprefix("torch."),
        "device": parameter.device.type,
        "loss": "probe" if user_loss is None else "custom",
        "view": "adjoint" if sources is None else f"dependency ({sources} sources)",
        "adjoint": adjoint,
    }


def _shape_columns(net: StackedNet, x: Tensor, seq_len: int) -> dict[str, int | str | None]:
    """The table columns a recording's network and inputs fix (seq_len: the lags its profile reaches)."""
    return {
        "activation": getattr(net, "activation", None),
        "seq_len": seq_len,
        "hidden_size": net.hidden_size,
        "input_size": x.shape[-1],
        "num_layers": net.num_layers,
        "batch_size": x.shape[1],
    }


def check_recorder(recorder: Any) -> None:
    """ConfigError unless recorder is one record() takes."""
    if recorder not in (*RECORDERS, "auto"):
        raise ConfigError(f"recorder={recorder!r}: expected one of {', '.join(RECORDERS)}, auto")


def check_settings(
    recorder: str,
    sources: Any,
    adjoint: str,
    segment: Any,
    memory_fraction: Any,
    loss: Callable[..., Tensor] | None,
    targets: Tensor | None,
    lengths: Any,
) -> None:
    """ConfigError, in one line naming the argument, for a setting record() does not take."""
    check_recorder(recorder)
    check_lengths(lengths, sources)
    if adjoint not in ADJOINTS:
        raise ConfigError(f"adjoint={adjoint!r}: expected one of {', '.join(ADJOINTS)}")
    if sources is not None and (isinstance(sources, bool) or not isinstance(sources, int)):
        raise ConfigError(f"sources={sources!r}: expected an integer number of loss steps, or None")
    if segment is not None and (isinstance(segment, bool) or not isinstance(segment, int) or segment < 1):
        raise ConfigError(f"segment={segment!r}: expected an integer >= 1 (steps per segment), or None")
    number = isinstance(memory_fraction, (int, float)) and not isinstance(memory_fraction, bool)
    if not (number and 0 < memory_fraction <= 1):  # nan fails the comparison too
        raise ConfigError(f"memory_fraction={memory_fraction!r}: expected a number in (0, 1]")
    if loss is not None and not callable(loss):
        raise ConfigError(f"loss={type(loss).__name__}: expected a callable returning a scalar tensor")
    if targets is not None and loss is None:
        raise ConfigError("targets: given without a loss; expected loss=... that takes (output, targets)")
    if loss is not None:
        arguments = ("output",) + (("targets",) if targets is not None else ()) + (("s",) if sources else ())
        try:
            inspect.signature(loss).bind(*arguments)
        except TypeError:
            raise ConfigError(f"loss: expected a callable taking ({', '.join(arguments)})") from None
        except ValueError:  # a builtin without a signature: called as it is
            pass


def check_lengths(lengths: Any, sources: Any) -> None:
    """ConfigError, in one line, unless lengths is None, or a 1-d integer tensor or array (not on the meta
    device) or a list or tuple of integers, given without sources."""
    if lengths is None:
        return
    if isinstance(lengths, (list, tuple)):  # the first item that is no integer, named where a long list is not
        item = next((i for i, v in enumerate(lengths) if not is_integer(v)), None)
        if item is not None:
            raise ConfigError(
                f"lengths[{item}]={described(lengths[item])}: expected an integer (each sequence's length)"
            )
    if not is_lengths_kind(lengths):
        raise ConfigError(
            f"lengths={described(lengths)}: expected each sequence's length, a 1-d integer tensor or a list of integers"
        )
    if sources is not None:
        raise ConfigError(
            f"lengths with sources={sources}: the dependency view counts its lags from each loss step; "
            "expected one of them"
        )


def described(value: Any) -> str:
    """How an error names a value: a tensor or array by its dtype and shape, else by its repr (by its type
    where that is long)."""
    if isinstance(value, (Tensor, np.ndarray)):
        where = " on the meta device" if getattr(value, "device", None) == META else ""
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{type(value).__name__} of dtype {dtype} and shape {tuple(value.shape)}{where}"
    text = repr(value)
    return text if len(text) <= 60 else type(value).__name__


def is_lengths_kind(lengths: Any) -> bool:
    """A 1-d dense integer tensor (not on the meta device, which holds no values) or array, or a list or
    tuple of integers."""
    if isinstance(lengths, Tensor):
        integer = not (lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool)
        return lengths.dim() == 1 and integer and lengths.device != META and lengths.layout == torch.strided
    if isinstance(lengths, np.ndarray):
        return lengths.ndim == 1 and np.issubdtype(lengths.dtype, np.integer)
    return isinstance(lengths, (list, tuple)) and all(map(is_integer, lengths))


def is_integer(value: Any) -> bool:
    """An integer, Python's or numpy's, but not a truth value."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def checked_lengths(lengths: Lengths | None, batch: int, steps: int) -> Tensor | None:
    """lengths (check_lengths') as a cpu int64 tensor, or ConfigError in one line where it does not give
    one length from 0 to the inputs' steps to each of the batch's sequences."""
    if lengths is None:
        return None
    check_count(lengths, batch)
    try:  # through Python's integers: an unsigned 64-bit one past int64 is refused, not wrapped round
        values = torch.tensor(lengths.tolist() if isinstance(lengths, (Tensor, np.ndarray)) else list(lengths))
    except (OverflowError, RuntimeError, ValueError):
        raise ConfigError(f"lengths={described(lengths)}: expected integers from 0 to seq_len={steps}") from None
    outside = ((values < 0) | (values > steps)).nonzero()
    if len(outside):
        row = int(outside[0])
        raise ConfigError(f"lengths[{row}]={int(values[row])}: expected an integer from 0 to seq_len={steps}")
    return values


def check_count(lengths: Lengths, batch: int, where: str = "") -> None:
    """ConfigError, in one line, unless lengths holds one length per sequence of the batch."""
    if len(lengths) != batch:
        raise ConfigError(f"lengths: {len(lengths)} of them for a batch of {batch}{where}; expected one per sequence")


def ends_of(given: Tensor | None, held_from: Tensor | None) -> Tensor | None:
    """Per sample, the first step whose state is not its own (leave_out_overflow's ends): the held rows'
    (Substitution.held_from), or those of the lengths given, which may not run past a held row's; an
    error where every sequence ends before its first step (a profile of no step)."""
    if given is not None and held_from is not None:
        held = held_from.cpu()
        past = (given + 1 > held).nonzero()
        if len(past):
            row = int(past[0])
            raise ModelError(
                f"lengths[{row}]={int(given[row])}: the model holds that sequence's state from step {int(held[row])} "
                f"on (its length is {int(held[row]) - 1}); expected its length"
            )
    ends = held_from if given is None else given + 1
    if ends is not None and not bool((ends > 1).any()):
        raise (ModelError if given is None else ConfigError)(
            "lengths: every sequence of the batch has length 0 (held, or given, from its first step): no step "
            "of theirs to record; expected a sequence of 1 step or more"
        )
    return ends


def check_unread_after(log_norms: Tensor, lengths: Tensor) -> None:
    """ModelError, in one line, where the loss reads a sequence after the length given for it: its
    gradient there is not 0 (-inf; nan, a sample left out as overflowed, is not read). The step named is
    the last one read (the steps between pass its gradient back, not 0 either)."""
    after = (torch.arange(len(log_norms))[:, None] > lengths).to(log_norms.device)  # (T+1, B)
    read = (after & (log_norms > -math.inf).any(-1)).cpu()
    if bool(read.any()):
        row = int(read.any(0).nonzero()[0])
        t = int(read[:, row].nonzero()[-1])
        raise ModelError(
            f"lengths[{row}]={int(lengths[row])}: the loss reads that sequence up to step {t}, after its length "
            "(its gradient there is not 0); expected each sequence's length, after which the loss reads "
            "nothing of it (its padding masked out of the loss)"
        )


def check_values(key: str, value: Tensor | Sequence[Tensor] | None) -> None:
    """ModelError, in one line, for inputs or targets that cannot give a meaningful recording: empty,
    on the meta device, or holding nan or inf."""
    for tensor in (value,) if isinstance(value, Tensor) else value if isinstance(value, (tuple, list)) else ():
        if not isinstance(tensor, Tensor):
            continue
        if tensor.device == META:
            raise ModelError(f"{key}: on the meta device (no values); expected real tensors (cpu or cuda)")
        if tensor.numel() == 0:
            raise ModelError(f"{key}: shape {tuple(tensor.shape)} holds no values; expected a nonempty batch")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelError(f"{key}: {bad} of {tensor.numel()} values are nan or inf; expected finite values")


def ordinary(value: Any) -> Any:
    """inputs or targets with each tensor made under torch.inference_mode() (a data pipeline's or an
    evaluation loop's), at any depth of tuples (named ones too), lists and dicts, replaced by a clone:
    autograd cannot save an inference tensor for the backward pass, and a clone made outside that mode is
    an ordinary tensor holding the same values. A container without one is passed on as it is."""
    if isinstance(value, Tensor):
        return value.clone() if value.is_inference() else value
    if isinstance(value, dict):
        items = {key: ordinary(item) for key, item in value.items()}
        if all(items[key] is item for key, item in value.items()):
            return value
        copied = copy.copy(value)  # a dict of the value's own type
        copied.update(items)
        return copied
    if isinstance(value, (tuple, list)):
        items = [ordinary(item) for item in value]
        if all(new is item for new, item in zip(items, value)):
            return value
        return like(value, items)
    return value


def check_sources(sources: int | None, recorder: str, adjoint: str, seq_len: int) -> None:
    if sources is None:
        return
    if not 1 <= sources <= seq_len:
        raise ConfigError(f"sources={sources}: expected an integer from 1 to seq_len={seq_len}")
    if recorder == "autograd":
        raise ConfigError(
            "recorder='autograd' with sources: the dependency view is computed exactly, one "
            "final-step loss per source; expected recorder='auto' or 'exact'"
        )
    if adjoint == "total":
        raise ConfigError("adjoint='total' with sources: the dependency view records the state adjoint")


def checked_inputs(model: nn.Module, inputs: Tensor) -> tuple[StackedNet, str, bool, Tensor]:
    """The model as a network, its cell's name, whether it is batch first, and the inputs as (T, B, I);
    ModelError, in one line, for an input it cannot record."""
    if isinstance(inputs, PackedSequence):
        raise ModelError(
            f"inputs: a PackedSequence, which {type(model).__name__} does not take; expected a 3-d tensor "
            "(seq_len, batch, input_size) (a packed batch goes to nn.RNN, LSTM or GRU)"
        )
    if not isinstance(inputs, Tensor) or inputs.dim() != 3:
        raise ModelError(
            f"inputs: expected a 3-d tensor (seq_len, batch, input_size), got "
            f"{tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__}"
            " (for a model around a recurrent module, pass module=)"
        )
    net, cell, batch_first = as_network(model, inputs.shape[-1])
    x = inputs.transpose(0, 1) if batch_first else inputs  # (T, B, I) from here on
    expected = getattr(net, "input_size", x.shape[-1])
    if x.shape[-1] != expected or x.shape[0] < 1:
        raise ModelError(
            f"inputs: shape {tuple(inputs.shape)}; expected (seq_len >= 1, batch, {expected})"
            + (" batch first" if batch_first else "")
        )
    check_network(net, x)
    return net, cell, batch_first, x


def check_network(net: StackedNet, x: Tensor) -> None:
    """ModelError for a network on another dtype or device than its inputs, on the meta device, or
    whose step ignores its state (no gradient could flow back through time)."""
    parameter = next(net.parameters(), None)
    if parameter is None:
        raise ModelError(f"model: {net.cell_name} has no parameters; expected a recurrent module with weights")
    if parameter.device.type == "meta":
        raise ModelError("model: its parameters are on the meta device (no values); expected cpu or cuda")
    if x.dtype != parameter.dtype or x.device != parameter.device:
        raise ModelError(
            f"inputs: {x.dtype} on {x.device}; the model's parameters are {parameter.dtype} on "
            f"{parameter.device}: expected the same"
        )
    check_holds(net, x)  # before the first state is made: a user cell's may not fit
    with torch.enable_grad():
        state = net.initial_state(x.shape[1]).detach().requires_grad_()
        drive = net.input_drive(x[:1])[0]
        (grad,) = torch.autograd.grad(net.step(state, drive).sum(), state, allow_unused=True)
    if grad is None:
        raise ModelError(
            f"model: {net.cell_name}'s step does not read its state (its new state is a function of x_t "
            "alone); expected a recurrent cell"
        )


def check_holds(net: StackedNet, x: Tensor) -> None:
    """ConfigError, before anything is computed, where what every recording holds cannot fit in the
    memory available: the model's outputs at every step (the first pass, loss_reach) and its state.
    What the recording adds it fits to memory itself (segment_length); this is the floor."""
    itemsize = next(net.parameters()).element_size()
    steps, batch = x.shape[0], x.shape[1]
    outputs = steps * batch * net.output_size * itemsize
    state = batch * sum(net.block_sizes) * itemsize
    available = available_memory()
    if outputs + state > available:
        raise ConfigError(
            f"inputs of shape {tuple(x.shape)} (time-major): the recording holds at least {size(outputs + state)} "
            f"(the outputs at every step, {steps} x {batch} x {net.output_size}) but {size(available)} of memory "
            "is available; expected fewer steps or a smaller batch"
        )


UNREAD = (
    "loss: its value does not depend on the model's outputs (detached? inside a torch.utils.checkpoint with "
    "use_reentrant=True?); expected a loss on them"
)


def loss_reach(
    net: StackedNet, x: Tensor, loss: Callable[[Tensor], Tensor], check: Callable[[Tensor], None]
) -> tuple[bool, bool]:
    """Whether the loss reads outputs before the last step, and whether the forward pass stayed
    finite; asked on the outputs alone (a forward without a graph, then one gradient). `check` sees
    the loss value first (a Substitution's check that the loss reads nothing it does not follow).
    The forward keeps the outputs alone, its input drives computed CHUNK steps at a time as the
    recording computes them: not every layer's states and every step's drive (O(T) of them, whatever
    segment the recording then takes)."""
    with torch.no_grad():
        state = net.initial_state(x.shape[1]).detach()
        stack = torch.empty(x.shape[0], x.shape[1], net.output_size, dtype=state.dtype, device=state.device)
        for t, drive in enumerate(step_drives(net, x)):
            state = net.step(state, drive)
            stack[t] = net.top_hidden(state)
    stack.requires_grad_()
    with torch.enable_grad():
        value = loss(stack)
    if not (isinstance(value, Tensor) and value.dim() == 0):
        raise ModelError("loss: expected a callable returning a scalar tensor")
    if not value.requires_grad:
        raise ModelError(UNREAD)
    check(value)
    (reach,) = torch.autograd.grad(value, stack, allow_unused=True)
    if reach is None:
        raise ModelError(UNREAD)
    return bool(reach[:-1].ne(0).any()), bool(torch.isfinite(state).all())


def adjoint_view(
    net: StackedNet, x: Tensor, loss: Loss, every_step: bool, recorder: str, segment: int | None, memory_fraction: float
) -> Tensor:
    """ln ||dL/dS_t|| per sample for t = 0..T, recorded in segments (harness.core.segments)."""
    parameter = next(net.parameters())
    # autograd records what torch computes, in float64 (a float64 copy of the weights)
    if recorder == "autograd" and parameter.dtype != torch.float64:
        net, x = copy.deepcopy(net).double(), x.double()
    steps = segment_length(net, x.shape[0], x.shape[1], x.dtype.itemsize, recorder, memory_fraction, segment)
    log_norms, _, _ = record_profile(net, x, loss, not every_step, recorder, steps)
    return log_norms


def dependency_view(
    net: StackedNet,
    states: list[Tensor],
    stack: Tensor,
    loss_at: Callable[[Tensor, int], Tensor],
    sources: int,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """Per lag k (row T - k), the mean over sampled loss steps s >= k of ln ||dL_s/dh_{s-k}|| per sample,
    and how many sources each lag averages. L_s = loss_at(outputs, s - 1): the outputs with only
    step s's (index s - 1) on the graph, the others detached, so L_s reads step s's output alone."""
    seq_len = len(states) - 1
    generator = torch.Generator().manual_seed(seed)
    steps = (torch.randperm(seq_len, generator=generator)[:sources] + 1).sort().values.tolist()
    total = torch.zeros(seq_len + 1, states[0].shape[0], len(net.block_sizes), dtype=torch.float64)
    counts = torch.zeros(seq_len + 1, dtype=torch.float64)
    held = stack.detach()
    for s in steps:
        value = loss_at(torch.cat([held[: s - 1], stack[s - 1 : s], held[s:]]), s - 1)
        log_norms = record_log_norms(value, states[: s + 1], net.block_sizes, "exact", retain_graph=True)
        total[seq_len - s :] += log_norms.cpu()  # row seq_len - k holds lag k = s - t
        counts[seq_len - s :] += 1
    return total / counts.view(-1, 1, 1), counts  # a lag no source reaches: 0 / 0 = nan
