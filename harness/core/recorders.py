"""Recorders: per-sample ||dL/dS_t|| for every state block at every time step t = 0..T.

Both recorders hook the joint state S_t of every step (harness.core.cells) on the real autograd graph and
differ only in what the hook returns:

autograd  returns nothing: the gradient flows as torch computes it, in the run's dtype, so underflow
          to 0 and overflow to inf show up exactly as an optimiser would meet them.
exact     divides the gradient arriving at S_t by its per-sample norm and keeps the logarithm of that
          factor. The carried gradient stays of norm 1, so the log-norm ln||dL/dh_t|| = ln(arriving
          norm) + (sum of the logs divided out after t) is finite even when the norm itself is 1e-3000
          or 1e+3000. Dividing by a positive number per sample is exact because the backward pass is
          linear in the carried gradient and samples never mix. It needs the loss to read only the
          final state (otherwise the loss's own contribution at an earlier step would enter unscaled).

On a network that writes out its step's Jacobian (analytic_jacobian: the rnn, lstm and gru) the exact
recorder runs the same backward written out (pull_back): each cell's vector-Jacobian product in place
of autograd's graph, the same hook's division step by step. No graph is built or freed, which is what
makes it 2-3x faster and lets a segment hold as many steps as its coefficients' memory allows; the
hooks on the real graph stay the reference it is tested against, and what every other model (user
cells, the lru) records through. The division (Renormaliser) and the sums of its logs (suffix_sums)
are the ones every exact recording uses: in memory, in segments, and harness.core.detail's rows.

The autograd recorder takes norms in float64 (torch.linalg.vector_norm with dtype), so squaring a
float32 entry cannot overflow or underflow on the way; the exact one never needs to. Denormal floats
are flushed to zero while recording (`flush_denormals`): on x86 CPUs, arithmetic on them is ~100x
slower, and a vanishing gradient spends many steps there (see flush_denormals_everywhere for torch's
worker threads). For the autograd recorder that means float32 underflows at 1.2e-38, not 1.4e-45.

A forward pass that overflows (a state S_t holds inf or nan) leaves nothing to measure in that sample:
every dL/dS_t passes back through the Jacobians of the steps after the overflow (computed from inf or
nan: relu'(nan) = 0 reads as a zero gradient, inf - inf as nan), and the states after it are not the
network's. leave_out_overflow finds each sample's first non-finite step and sets its log-norms to nan
(not measured), so that no zero, -inf rate or -inf gain is read into a network that grows.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from harness.core.protocol import StackedNet
from harness.core.tasks import StreamedInputs, step_drives

RECORDERS = ("exact", "autograd")


_flushing_everywhere = False


def flush_denormals_everywhere() -> None:
    """Flush denormals to zero in this thread and in every thread started after this call.

    torch.set_flush_denormal changes only the calling thread, but a new thread inherits the
    floating-point state of the thread that creates it; so called before torch's first parallel op,
    this covers torch's intra-op worker threads too, which otherwise do half of every matmul on
    denormals at full penalty. The command line calls it first thing.
    """
    global _flushing_everywhere
    torch.set_flush_denormal(True)
    _flushing_everywhere = True


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero on the CPU for the duration (torch's default is off), then leave
    the setting as it was: the caller's own set_flush_denormal(True) stays on."""
    before = _flushing_everywhere or denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)


def denormals_flushed() -> bool:
    """Whether this thread treats denormal floats as zero (torch has no getter: a denormal multiplied
    by one is zero only then)."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0)


def block_norms(grad: Tensor, block_sizes: Sequence[int], dtype: torch.dtype | None = None) -> Tensor:
    """Per-sample norms of each block of a joint state's gradient: (batch, blocks).

    Taken without squaring below the float's range: each sample is divided by its largest |entry|
    first and the norm multiplied back, so a gradient whose entries are 1e-20 in float32 (or 1e-160
    in float64), whose squares underflow to 0, has its true norm (sqrt(sum of squares) alone gives 0
    there, or a denormal flushed to 0)."""
    peak = grad.abs().amax(dim=1, keepdim=True)
    # a zero gradient stays zero (not 0/0), an inf or nan one keeps its inf or nan norm (not inf/inf)
    peak = torch.where((peak > 0) & torch.isfinite(peak), peak, torch.ones_like(peak))
    unit = grad / peak
    if len(set(block_sizes)) == 1:  # equal blocks: one reduction over a view
        norms = torch.linalg.vector_norm(unit.view(grad.shape[0], len(block_sizes), -1), dim=-1, dtype=dtype)
    else:
        norms = torch.stack(
            [torch.linalg.vector_norm(b, dim=-1, dtype=dtype) for b in unit.split(list(block_sizes), dim=1)], dim=1
        )
    return norms * peak.to(norms.dtype)


class Renormaliser:
    """The exact recorder's step, called with the gradient arriving at each S_t from S_T back: it
    keeps the arriving block norms and the divisor, and returns the gradient divided by it. Both
    backpropagate's hook and pull_back call it, so the two record with the same ops in the same order.
    The arriving gradient is one step's Jacobian applied to a unit vector, so its norms are safe to
    take in its own dtype. The divisor is kept exactly as applied; a sample whose gradient is exactly
    0 stays 0, and its log-norm is -inf from here back. keep_gradients: also keep each arriving
    gradient, in float64 (harness.core.detail's per-unit rows)."""

    def __init__(self, block_sizes: Sequence[int], keep_gradients: bool = False):
        self.block_sizes = block_sizes
        self.norms: list[Tensor] = []
        self.divisors: list[Tensor] = []
        self.gradients: list[Tensor] | None = [] if keep_gradients else None

    def __call__(self, grad: Tensor) -> Tensor:
        arriving = block_norms(grad, self.block_sizes)
        total = arriving if len(self.block_sizes) == 1 else torch.linalg.vector_norm(arriving, dim=1, keepdim=True)
        divisor = total.clamp_min(torch.finfo(grad.dtype).tiny)
        self.norms.append(arriving)
        self.divisors.append(divisor)
        if self.gradients is not None:
            self.gradients.append(grad.double())
        return grad / divisor

    def logs(self) -> tuple[Tensor, Tensor | None]:
        """(ln of the arriving block norms, ln of the divisors, or None if none were taken), S_0 first."""
        arriving = torch.stack(self.norms[::-1]).double().log()
        return arriving, torch.stack(self.divisors[::-1]).double().log() if self.divisors else None


def backpropagate(
    objective: Tensor,
    states: list[Tensor],
    block_sizes: Sequence[int],
    recorder: str,
    retain_graph: bool = False,
    hook_first: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Backpropagate `objective` to states[0] through the recorder's hooks on the states.

    Returns (arriving, log_divisors, first_grad): ln of each block's norm of the gradient arriving at
    each hooked state, (hooked states, batch, blocks), float64 and before any division at or after that
    state; the exact recorder's ln divisor per hooked state, (hooked, batch, 1), else None; and the
    gradient that reached states[0] (after its own hook, if hooked). `accumulate` turns the first two
    into log-norms. hook_first=False leaves states[0] to the caller (a segment's start, hooked by the
    segment before it, where its whole gradient meets).
    """
    if recorder not in RECORDERS:
        raise ValueError(f"recorder={recorder!r}: allowed {', '.join(RECORDERS)}")
    # Hooks fire from S_T back to S_0; each appends its step's numbers, reversed at the end.
    renormalise = Renormaliser(block_sizes)

    def read(grad: Tensor) -> None:
        renormalise.norms.append(block_norms(grad, block_sizes, torch.float64))

    hook = renormalise if recorder == "exact" else read
    hooked = states if hook_first else states[1:]
    handles = [state.register_hook(hook) for state in hooked]
    try:
        (first_grad,) = torch.autograd.grad(objective, states[0], retain_graph=retain_graph)
    finally:
        for handle in handles:
            handle.remove()
    if len(renormalise.norms) != len(hooked):
        raise RuntimeError(
            f"{len(renormalise.norms)} of {len(hooked)} state hooks fired: is every S_t on "
            "the path from the loss to S_0?"
        )
    return (*renormalise.logs(), first_grad)


def written_out(net: StackedNet, recorder: str) -> bool:
    """Whether a recording runs its backward written out (pull_back) rather than through autograd's
    hooks: the exact recorder on a network whose cells know their own Jacobians (analytic_jacobian)."""
    return recorder == "exact" and net.analytic_jacobian


def pull_back(
    net: StackedNet, coefficients: list[list], cotangent: Tensor, record_first: bool
) -> tuple[Tensor, Tensor | None, Tensor]:
    """The exact recorder written out for a built-in network, with backpropagate's returns.

    coefficients are steps b+1..e's (RecurrentNet.step_coefficients), cotangent the gradient carried
    into S_e (dL/dS_e before its renormalisation). Each step does what backpropagate's hook (the
    same Renormaliser) and torch's backward would: record the arriving block norms, divide by their
    total, pull the cotangent through the step (RecurrentNet.pull_cotangent, the cell's own
    vector-Jacobian product, tested against autograd's Jacobians). No autograd graph: a step costs the
    cell's few products and its transposed matmuls. Rows are S_{b+1}..S_e, with S_b first if record_first.
    """
    renormalise = Renormaliser(net.block_sizes)
    with torch.no_grad():
        for step in reversed(coefficients):
            cotangent = net.pull_cotangent(step, renormalise(cotangent))
        if record_first:
            cotangent = renormalise(cotangent)
    return (*renormalise.logs(), cotangent)


def suffix_sums(log_divisors: Tensor, carried: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(at each row, the sum of the log divisors taken after it; the sum of them all) for the exact
    recorder's rows S_b..S_e in order (the first dimension), given `carried`, the sum of those taken
    after S_e (None: S_e is S_T, none). One cumulative sum folded from S_T back, so that a sequence
    folded segment by segment (carrying the second return) gets the numbers of one fold, bit for bit."""
    start = torch.zeros_like(log_divisors[:1]) if carried is None else carried
    folded = torch.cat([start, log_divisors.flip(0)]).cumsum(0)
    return folded[:-1].flip(0), folded[-1:]


def accumulate(arriving: Tensor, log_divisors: Tensor | None) -> Tensor:
    """Log-norms from backpropagate's rows (S_0..S_T in order): the gradient arriving at S_t had been
    divided by the divisors taken at t+1 .. T, so those logs are added back."""
    if log_divisors is None:
        return arriving
    return arriving + suffix_sums(log_divisors)[0]


def record_log_norms(
    loss: Tensor, states: list[Tensor], block_sizes: Sequence[int], recorder: str, retain_graph: bool = False
) -> Tensor:
    """Backpropagate `loss` to states[0] and return ln||dL/d block|| of shape (T+1, batch, blocks).

    `states` are S_0..S_T; S_t's blocks are consecutive columns of widths block_sizes. Entries are
    float64; -inf is a zero gradient, +inf an overflow, nan a gradient that became nan.
    """
    arriving, log_divisors, _ = backpropagate(loss, states, block_sizes, recorder, retain_graph)
    return accumulate(arriving, log_divisors)


class Overflow(NamedTuple):
    """Where a recording's forward pass left the float range."""

    first_steps: Tensor  # (batch,): each sample's first t whose S_t holds inf or nan; -1 where none did

    @property
    def samples(self) -> Tensor:
        """(batch,) bool: the samples whose forward pass overflowed (their log-norms are not measured)."""
        return self.first_steps >= 0

    @property
    def at(self) -> int | None:
        """The first time step whose state is not finite in any sample (diverged_at); None if none."""
        steps = self.first_steps[self.samples]
        return int(steps.min()) if len(steps) else None


def first_nonfinite_steps(net: StackedNet, inputs: Tensor | StreamedInputs) -> Tensor:
    """Per sample, the first t whose state S_t holds inf or nan, -1 where S_0..S_T all stay finite: the
    recording's own forward pass again (the same drives, CHUNK-aligned, and steps, so the same states),
    without a graph, stopped once every sample has overflowed."""
    batch = inputs.shape[1]
    with torch.no_grad():
        state = net.initial_state(batch).to(dtype=inputs.dtype, device=inputs.device)
        first = torch.where(torch.isfinite(state).flatten(1).all(dim=1), -1, 0).to(device="cpu", dtype=torch.long)
        for t, drive in enumerate(step_drives(net, inputs), start=1):
            if bool((first >= 0).all()):
                return first
            state = net.step(state, drive)
            bad = (~torch.isfinite(state)).flatten(1).any(dim=1).cpu()
            first = torch.where(bad & (first < 0), t, first)
    return first


def leave_out_overflow(
    log_norms: Tensor, finite: bool, net: StackedNet, inputs: Tensor | StreamedInputs, ends: Tensor | None = None
) -> tuple[Tensor, Overflow | None]:
    """(log_norms with every row of the samples whose forward pass overflowed set to nan, the Overflow;
    see the module docstring for why a whole sample goes), or (log_norms, None) for a finite recording.
    `finite`: the recording's own verdict; only a recording that was not finite is run again
    (first_nonfinite_steps), so a finite one costs nothing. Where only the loss overflowed, the
    Overflow names no sample (at is None) and log_norms are left as they are: all were measured.
    ends: per sample, the first t whose S_t is the harness's alone, never the model's (a padded sequence
    that has ended, harness.lab.module: the model holds its state, the recurrence runs on); a state that
    leaves float's range from there on is no overflow of the model's, unless its inf or nan reached the
    sample's own steps through the backward pass (0 times inf), and a recording whose only non-finite
    states are such is finite. Its rows from its end on are left as they are: aligned_to_ends drops them
    (the model computes nothing from a replayed state; a loss that reads one is refused)."""
    if finite:
        return log_norms, None
    first = first_nonfinite_steps(net, inputs)
    if ends is not None:
        own = torch.arange(len(log_norms))[:, None] < ends.cpu()  # (T+1, B): each sample's own steps
        nan_at_own = (torch.isnan(log_norms).flatten(2).any(2).cpu() & own).any(0)
        replayed = (first >= ends.cpu()) & ~nan_at_own  # a replay's overflow alone
        if bool(replayed.any()):
            first = torch.where(replayed, -1, first)
            if not bool((first >= 0).any()):
                return log_norms, None
    overflow = Overflow(first)
    if overflow.at is None:
        return log_norms, overflow
    log_norms = log_norms.clone()
    log_norms[:, overflow.samples.to(log_norms.device)] = math.nan
    return log_norms, overflow


def aligned_to_ends(log_norms: Tensor, lengths: Tensor) -> Tensor:
    """log_norms (T+1, B, ...) with each sample's rows moved down so that its own last state S_length is
    the last row: in a padded batch, lag k then counts back from each sequence's own end (where its loss
    is read), not from the batch's last step, whose ended rows' gradients are the model's exact 0 (-inf)
    and would fill the batch's quantiles there. Rows above a sample's first state are nan: no sample of
    it at lags beyond its length (the quantiles leave nan out, as they do a lag no source reaches). Only
    the longest sample's lags are kept: max(lengths) + 1 rows, fewer than T + 1 where every sample ended
    before T. lengths: (B,), each sample's own steps, T for one that ran to the end (left as it is)."""
    rows = int(lengths.max()) + 1
    shift = (rows - 1 - lengths).to(log_norms.device)  # (B,)
    source = torch.arange(rows, device=log_norms.device)[:, None] - shift  # (rows, B): the row each comes from
    index = source.clamp(min=0).view(*source.shape, *(1,) * (log_norms.dim() - 2))
    aligned = log_norms.gather(0, index.expand(-1, *log_norms.shape[1:]))
    aligned[source < 0] = math.nan
    return aligned


def status_flags(
    log_norms: torch.Tensor,
    states_finite: bool,
    recorder: str,
    overflow: Overflow | None = None,
    lengths: Tensor | None = None,
) -> list[str]:
    """Numerical trouble as data. The loss's own step t = T is left out: there the lstm's c (and any
    block the loss does not read) has a gradient that is exactly 0 by construction.

    overflow (leave_out_overflow's): the gradient flags are read on the samples that stayed finite only,
    their own; the others' rows are nan because they were not measured, not because a gradient was.
    Without it, a recording that was not finite gets no underflow or zero flag: a zero read through an
    overflowed forward pass (relu'(nan) = 0) is garbage, not a vanishing gradient.
    lengths (aligned_to_ends'): only each sample's own rows are read, not the nan above its first state."""
    steps = len(log_norms) - 1
    measured = torch.ones((steps, log_norms.shape[1]), dtype=torch.bool, device=log_norms.device)
    if lengths is not None:
        measured &= torch.arange(steps, device=log_norms.device)[:, None] >= (steps - lengths.to(log_norms.device))
    if overflow is not None:
        measured &= ~overflow.samples.to(log_norms.device)
    before_loss = log_norms[:-1][measured]
    flags = [] if states_finite else ["diverged"]  # the forward pass itself reached inf or nan
    if torch.isnan(before_loss).any():
        flags.append("nan")
    if torch.isposinf(before_loss).any():
        flags.append("overflow")
    if torch.isneginf(before_loss).any() and (states_finite or overflow is not None):
        # autograd: underflow (or a true zero); exact: the gradient is exactly zero (e.g. dead relus)
        flags.append("underflow" if recorder == "autograd" else "zero")
    return flags
