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
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from harness.core.cells import StackedNet
from harness.core.recorders import backpropagate, record_log_norms
from harness.core.tasks import CHUNK, StreamedInputs

if TYPE_CHECKING:
    from harness.core.theory import CarriedTangent

DRIVE_CHUNK = CHUNK  # steps of input drive computed together (a batched matmul), aligned to t = 0
class Drives:
    """Input drives of steps [b, e), computed in DRIVE_CHUNK-aligned chunks (the last one cached)."""

    def __init__(self, net: StackedNet, inputs: Tensor | StreamedInputs):
        self.net, self.inputs, self.cached = net, inputs, (-1, None)

    def __call__(self, begin: int, end: int) -> list[Tensor]:
        drives = []
        for chunk in range(begin // DRIVE_CHUNK, math.ceil(end / DRIVE_CHUNK)):
            if self.cached[0] != chunk:
                with torch.no_grad():  # the recorders need no parameter gradients
                    span = self.inputs[chunk * DRIVE_CHUNK:(chunk + 1) * DRIVE_CHUNK]
                    self.cached = (chunk, self.net.input_drive(span))
            start = chunk * DRIVE_CHUNK
            drives.extend(self.cached[1][max(begin - start, 0):end - start])
        return drives


def record_profile(net: StackedNet, inputs: Tensor | StreamedInputs, output_loss: Callable[[Tensor], Tensor], final_state_only: bool,
                   recorder: str, segment: int, progress: Callable[[int], object] | None = None,
                   tangent: CarriedTangent | None = None) -> tuple[Tensor, Tensor, bool]:
    """Record ln||dL/d block|| for t = 0..T in segments of `segment` steps (see the module docstring).

    output_loss receives the top layer's outputs the loss reads, (1, batch, width) for a final-state
    loss or (T, batch, width), and returns the scalar loss. Returns (log_norms (T+1, batch, blocks),
    the loss, whether every state stayed finite). progress, if given, is told how many steps were
    done, forward and backward (2 T in all). tangent, if given (a built-in network's), is pushed through
    every step of the forward pass, which visits each step once: the largest Lyapunov exponent at the
    cost of the tangent's own work (harness.core.theory.CarriedTangent).
    """
    progress = progress or (lambda steps: None)
    seq_len, batch = inputs.shape[0], inputs.shape[1]
    drives = Drives(net, inputs)

    def step(state: Tensor, drive: Tensor) -> Tensor:
        if tangent is None:
            return net.step(state, drive)
        state, internals = net.linearised_step(state, drive)  # the same state, bit for bit
        tangent.step(internals)
        return state
    if segment >= seq_len:  # one segment: the in-memory recording, one forward pass with its graph
        states = [net.initial_state(batch)]
        for drive in drives(0, seq_len):
            states.append(step(states[-1], drive))
            progress(1)
        loss = output_loss(torch.stack([net.top_hidden(s) for s in (states[-1:] if final_state_only else states[1:])]))
        log_norms = record_log_norms(loss, states, net.block_sizes, recorder)
        progress(seq_len)
        return log_norms, loss.detach(), bool(torch.isfinite(states[-1]).all() and torch.isfinite(loss))
    bounds = list(range(0, seq_len, segment)) + [seq_len]
    starts, outputs, finite = [], [], True
    state = net.initial_state(batch).detach()
    with torch.no_grad():
        for begin, end in zip(bounds[:-1], bounds[1:]):
            starts.append(state)
            for drive in drives(begin, end):
                state = step(state, drive)
                progress(1)
                if not final_state_only:
                    outputs.append(net.top_hidden(state))
            finite = finite and bool(torch.isfinite(state).all())
    read = torch.stack([net.top_hidden(state)] if final_state_only else outputs).requires_grad_()
    with torch.enable_grad():
        loss = output_loss(read)
        (output_grads,) = torch.autograd.grad(loss, read)

    log_norms: Tensor | None = None  # (T+1, batch, blocks), filled from the end, segment by segment
    after: Tensor | None = None  # the exact recorder's ln divisors summed from S_T back to the segment's end
    carry = None  # the gradient flowing into the segment's end state from the segments after it
    for index in reversed(range(len(starts))):
        begin, end = bounds[index], bounds[index + 1]
        states = [starts[index].clone().requires_grad_()]
        with torch.enable_grad():
            for drive in drives(begin, end):
                states.append(net.step(states[-1], drive))
            if final_state_only:
                objective = (net.top_hidden(states[-1]) * output_grads[0]).sum() if end == seq_len else 0
            else:
                objective = (torch.stack([net.top_hidden(s) for s in states[1:]]) * output_grads[begin:end]).sum()
            if carry is not None:
                objective = objective + (states[-1] * carry).sum()
        # A segment's start state is hooked by the segment before it, where all of its gradient meets
        # (the output read at that step included), exactly as in one graph.
        rows, logs, carry = backpropagate(objective, states, net.block_sizes, recorder, hook_first=begin == 0)
        if log_norms is None:
            log_norms = rows.new_empty((seq_len + 1, *rows.shape[1:]))
        if logs is not None:
            # The suffix sums of the divisors, folded from S_T back exactly as accumulate folds the
            # whole sequence at once (so the numbers are the in-memory recording's, bit for bit), one
            # segment at a time: no T-long temporaries beside the result.
            after = torch.zeros_like(logs[:1]) if after is None else after
            folded = torch.cat([after, logs.flip(0)]).cumsum(0)
            rows = rows + folded[:-1].flip(0)
            after = folded[-1:]
        log_norms[end + 1 - len(rows):end + 1] = rows
        progress(end - begin)
    return log_norms, loss.detach(), finite and bool(torch.isfinite(loss))
