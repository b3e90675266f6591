"""Recording in segments: any sequence length in memory bounded by the segment, not by T.

    forward, no graph      S_0 -> ... -> S_T, keeping only the state at each segment's start
    the loss               on the outputs it reads (the final one, or every step's), once, for
                           dL/d output_t: the only thing the backward needs from it
    backward, by segment   last segment first: rebuild its graph from its start state, inject
                           dL/d output_t for its steps and the gradient carried into its end state,
                           backpropagate through the recorder's hooks to its start, carry that on

The gradient carried from one segment into the one before is the one that would flow in one graph
(for the exact recorder, already renormalised by the hooks after it, so of order one); every state is
hooked once, in the segment where its whole gradient meets, and the exact recorder's log divisors are
summed once over the whole sequence, so the numbers are the in-memory recording's, bit for bit. A
segment covering the whole sequence is the in-memory recording. Input drives (harness.core.cells'
input_drive) are computed in fixed chunks aligned to t = 0 whatever the segment length, so the numbers
do not depend on it (tested to be identical). No graph is longer than a segment, so none is deep
enough to overflow the stack when it is freed (a 30,000-step graph with hooks segfaulted torch).

Written out (the exact recorder on a network with written-out Jacobians, recorders.pull_back), a
segment is rebuilt as its steps' Jacobian coefficients instead of a graph, and pulled back through
them. Where the whole sequence fits in one segment, the forward pass keeps them as it goes and nothing
is run twice. The exact recorder's log divisors are summed by recorders.suffix_sums, one segment at a
time, as an in-memory recording sums them at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from harness.core.protocol import StackedNet
from harness.core.recorders import backpropagate, pull_back, record_log_norms, suffix_sums, written_out
from harness.core.tasks import CHUNK, StreamedInputs

if TYPE_CHECKING:
    from harness.core.lyapunov import CarriedTangent

DRIVE_CHUNK = CHUNK  # steps of input drive computed together (a batched matmul), aligned to t = 0
STEPS_AT_ONCE = 64  # steps whose Jacobian coefficients are computed together: dispatch amortised, a few MB


class Drives:
    """Input drives of steps [b, e), computed in DRIVE_CHUNK-aligned chunks (the last one cached)."""

    def __init__(self, net: StackedNet, inputs: Tensor | StreamedInputs):
        self.net, self.inputs, self.cached = net, inputs, (-1, None)

    def __call__(self, begin: int, end: int) -> list[Tensor]:
        drives = []
        for chunk in range(begin // DRIVE_CHUNK, math.ceil(end / DRIVE_CHUNK)):
            if self.cached[0] != chunk:
                with torch.no_grad():  # the recorders need no parameter gradients
                    span = self.inputs[chunk * DRIVE_CHUNK : (chunk + 1) * DRIVE_CHUNK]
                    self.cached = (chunk, self.net.input_drive(span))
            start = chunk * DRIVE_CHUNK
            drives.extend(self.cached[1][max(begin - start, 0) : end - start])
        return drives


def record_profile(
    net: StackedNet,
    inputs: Tensor | StreamedInputs,
    output_loss: Callable[[Tensor], Tensor],
    final_state_only: bool,
    recorder: str,
    segment: int,
    progress: Callable[[int], object] | None = None,
    tangent: CarriedTangent | None = None,
) -> tuple[Tensor, Tensor, bool]:
    """Record ln||dL/d block|| for t = 0..T in segments of `segment` steps (see the module docstring).

    output_loss receives the top layer's outputs the loss reads, (1, batch, width) for a final-state
    loss or (T, batch, width), and returns the scalar loss. Returns (log_norms (T+1, batch, blocks),
    the loss, whether every state stayed finite). progress, if given, is told how many steps were
    done, forward and backward (2 T in all). tangent, if given (a network with written-out Jacobians),
    is pushed through every step of the forward pass, which visits each step once: the largest
    Lyapunov exponent at the cost of the tangent's own work (harness.core.theory.CarriedTangent).

    The exact recorder on a network with written-out Jacobians runs its backward written out
    (recorders.pull_back) instead of through autograd's hooks: the same numbers to rounding (tested),
    no graph, and where the whole sequence is one segment, one forward pass whose coefficients the
    backward reuses.
    """
    progress = progress or (lambda steps: None)
    seq_len = inputs.shape[0]
    drives = Drives(net, inputs)
    writes_out = written_out(net, recorder)
    if segment >= seq_len and not writes_out:  # the in-memory recording: one forward pass with its graph
        return _in_memory(net, inputs, drives, output_loss, final_state_only, recorder, progress, tangent)
    bounds = list(range(0, seq_len, segment)) + [seq_len]
    # One segment written out: the backward reuses the forward's coefficients instead of recomputing them.
    forward = Linearised(net, tangent, keep=writes_out and len(bounds) == 2)
    starts, outputs, state, finite = _forward_in_segments(
        net, inputs.shape[1], drives, bounds, forward, final_state_only, progress
    )
    read = torch.stack([net.top_hidden(state)] if final_state_only else outputs).requires_grad_()
    with torch.enable_grad():
        loss = output_loss(read)
        (output_grads,) = torch.autograd.grad(loss, read)
    log_norms = _backward_in_segments(
        net, drives, bounds, starts, forward, state, output_grads, final_state_only, recorder, writes_out, progress
    )
    return log_norms, loss.detach(), finite and bool(torch.isfinite(loss))


def _backward_in_segments(
    net: StackedNet,
    drives: Drives,
    bounds: list[int],
    starts: list[Tensor],
    forward: Linearised,
    final_state: Tensor,
    output_grads: Tensor,
    final_state_only: bool,
    recorder: str,
    writes_out: bool,
    progress: Callable[[int], object],
) -> Tensor:
    """The backward pass, last segment first, each carrying its gradient to the one before: log_norms."""
    seq_len = bounds[-1]
    log_norms: Tensor | None = None  # (T+1, batch, blocks), filled from the end, segment by segment
    after: Tensor | None = None  # the exact recorder's ln divisors summed from S_T back to the segment's end
    carry = None  # the gradient flowing into the segment's end state from the segments after it
    if writes_out:  # a final-state loss (the exact recorder needs one): all of it enters at S_T
        carry = torch.zeros_like(final_state)
        net.top_hidden(carry).copy_(output_grads[0])
    for index in reversed(range(len(starts))):
        begin, end = bounds[index], bounds[index + 1]
        if writes_out:
            coefficients = (
                forward.kept if len(starts) == 1 else segment_coefficients(net, starts[index], drives(begin, end))
            )
            rows, logs, carry = pull_back(net, coefficients, carry, record_first=begin == 0)
        else:
            rows, logs, carry = backward_through_graph(
                net, starts[index], drives(begin, end), carry, recorder, output_grads, final_state_only, begin, seq_len
            )
        if log_norms is None:
            log_norms = rows.new_empty((seq_len + 1, *rows.shape[1:]))
        if logs is not None:  # one segment at a time: no T-long temporaries beside the result
            sums, after = suffix_sums(logs, after)
            rows = rows + sums
        log_norms[end + 1 - len(rows) : end + 1] = rows
        progress(end - begin)
    return log_norms


def _in_memory(
    net: StackedNet,
    inputs: Tensor | StreamedInputs,
    drives: Drives,
    output_loss: Callable[[Tensor], Tensor],
    final_state_only: bool,
    recorder: str,
    progress: Callable[[int], object],
    tangent: CarriedTangent | None,
) -> tuple[Tensor, Tensor, bool]:
    """record_profile in one segment through autograd's hooks: one forward pass with its graph."""
    seq_len, batch = inputs.shape[0], inputs.shape[1]
    states = [net.initial_state(batch)]
    forward = Linearised(net, tangent)
    for drive in drives(0, seq_len):
        states.append(forward.step(states[-1], drive))
        progress(1)
    forward.flush()
    loss = output_loss(torch.stack([net.top_hidden(s) for s in (states[-1:] if final_state_only else states[1:])]))
    log_norms = record_log_norms(loss, states, net.block_sizes, recorder)
    progress(seq_len)
    return log_norms, loss.detach(), bool(torch.isfinite(states[-1]).all() and torch.isfinite(loss))


def _forward_in_segments(
    net: StackedNet,
    batch: int,
    drives: Drives,
    bounds: list[int],
    forward: Linearised,
    final_state_only: bool,
    progress: Callable[[int], object],
) -> tuple[list[Tensor], list[Tensor], Tensor, bool]:
    """The forward pass without a graph: (each segment's start state, the top layer's outputs where the
    loss reads every step, the final state, whether every segment's end state stayed finite)."""
    starts, outputs, finite = [], [], True
    state = net.initial_state(batch).detach()
    with torch.no_grad():
        for begin, end in zip(bounds[:-1], bounds[1:]):
            starts.append(state)
            for drive in drives(begin, end):
                state = forward.step(state, drive)
                progress(1)
                if not final_state_only:
                    outputs.append(net.top_hidden(state))
            finite = finite and bool(torch.isfinite(state).all())
        forward.flush()
    return starts, outputs, state, finite


class Linearised:
    """The forward pass of a network with written-out Jacobians, with their coefficients where anything
    needs them: computed STEPS_AT_ONCE steps at a time from what each step's tail computed
    (RecurrentNet.step_coefficients: a few large elementwise ops instead of many small ones), pushed
    through by a carried tangent, and kept for the written-out backward if asked. With neither, a
    plain step. flush() when the pass ends."""

    def __init__(self, net: StackedNet, tangent: CarriedTangent | None = None, keep: bool = False):
        self.net, self.tangent = net, tangent
        self.kept: list[list] | None = [] if keep else None  # every step's coefficients, in order
        self.pending: list[list] = []  # steps' internals whose coefficients are not computed yet

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        if self.tangent is None and self.kept is None:
            return self.net.step(state, drive)
        state, internals = self.net.linearised_step(state, drive)  # the same state, bit for bit
        self.pending.append(internals)
        if len(self.pending) == STEPS_AT_ONCE:
            self.flush()
        return state

    def flush(self) -> None:
        if not self.pending:
            return
        with torch.no_grad():
            coefficients = self.net.step_coefficients(self.pending)
        self.pending = []
        if self.tangent is not None:
            self.tangent.push(coefficients)
        if self.kept is not None:
            self.kept.extend(coefficients)


def segment_coefficients(net: StackedNet, start: Tensor, drives: Sequence[Tensor]) -> list[list]:
    """A segment's steps again from its start state, keeping their Jacobian coefficients."""
    forward, state = Linearised(net, keep=True), start
    with torch.no_grad():
        for drive in drives:
            state = forward.step(state, drive)
        forward.flush()
    return forward.kept


def backward_through_graph(
    net: StackedNet,
    start: Tensor,
    drives: list[Tensor],
    carry: Tensor | None,
    recorder: str,
    output_grads: Tensor,
    final_state_only: bool,
    begin: int,
    seq_len: int,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """One segment's backward through autograd's hooks: rebuild its graph from its start state, inject
    the output gradients of its steps and the gradient carried into its end state, backpropagate."""
    end = begin + len(drives)
    states = [start.clone().requires_grad_()]
    with torch.enable_grad():
        for drive in drives:
            states.append(net.step(states[-1], drive))
        if final_state_only:
            objective = (net.top_hidden(states[-1]) * output_grads[0]).sum() if end == seq_len else 0
        else:
            objective = (torch.stack([net.top_hidden(s) for s in states[1:]]) * output_grads[begin:end]).sum()
        if carry is not None:
            objective = objective + (states[-1] * carry).sum()
    # A segment's start state is hooked by the segment before it, where all of its gradient meets
    # (the output read at that step included), exactly as in one graph.
    return backpropagate(objective, states, net.block_sizes, recorder, hook_first=begin == 0)
