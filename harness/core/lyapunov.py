"""Lyapunov exponents of a network's forward trajectory, and gradient flossing.

The largest Lyapunov exponent, for every cell: a tangent vector per sample is pushed through each
step's Jacobian (the cells' written-out JVPs where they have them, else a Jacobian-vector product by
double backward, see jvp) and renormalised, and the mean log growth per step after the first 10% of
steps (the transient from h_0 = 0) is the exponent; the batch median is reported. The norm of a
backpropagated gradient grows at the same exponent, so it should match the exact recorder's rate.
The k largest (theory.spectrum_k) by k tangents and QR decompositions (lyapunov_spectrum); the largest
also carried along a recording's forward pass (CarriedTangent); and gradient flossing's objective,
differentiable through the same loop (flossing_loss). harness.core.theory reports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from harness.core.analysis import EDGE_FRACTION
from harness.core.errors import ModelError
from harness.core.protocol import StackedNet
from harness.core.tasks import time_chunks


def jvp(step: Callable[[Tensor], Tensor], state: Tensor, tangent: Tensor) -> tuple[Tensor, Tensor]:
    """(step(state), J tangent) with J = d step / d state, by the double-backward trick: the
    vector-Jacobian product u -> J^T u is linear in u, so its own gradient against `tangent` is
    J tangent. Two reverse passes on torch's native kernels; forward-mode AD (torch.autograd.
    forward_ad) gives the same numbers but runs this cell's adds and matmuls through Python
    decompositions, 2-3x slower at these sizes."""
    state = state.detach().requires_grad_()
    with torch.enable_grad():
        new = step(state)
        probe = torch.zeros_like(new, requires_grad=True)
        (pulled,) = torch.autograd.grad(new, state, probe, create_graph=True)
        (pushed,) = torch.autograd.grad(pulled, probe, tangent)
    return new.detach(), pushed


def chunk_drives(model: StackedNet, chunk: Tensor) -> tuple[Tensor, ...]:
    with torch.no_grad():
        return model.input_drive(chunk)


def push_tangents(
    model: StackedNet, state: Tensor, drive: Tensor, tangents: Tensor, analytic: bool = True
) -> tuple[Tensor, Tensor]:
    """(the next state, J_t tangents) for tangents (k, batch, state): the cells' own JVP for built-in
    cells (all k at once, no graph), else the generic double-backward jvp, one tangent at a time
    (analytic=False forces it: the slow, obvious reference the tests hold the fast path to)."""
    if analytic and model.analytic_jacobian:
        with torch.no_grad():
            return model.step_jvp(state, drive, tangents)
    pushed = [jvp(lambda s: model.step(s, drive), state, tangent) for tangent in tangents]
    return pushed[0][0], torch.stack([tangent for _, tangent in pushed])


SPREAD_PER_QR = 4.0  # nats: the most the tangents may grow apart between two QR decompositions
GROWTH_PER_QR = 40.0  # nats: the most they may grow or shrink together (float32 spans about 87 each way)
MAX_QR_INTERVAL = 16  # steps


class Growth:
    """The tangents' log growth along a trajectory of seq_len steps: call `step` with the tangents
    after each step's Jacobian; it re-orthonormalises them when due (and returns them), summing the
    logs of |R_ii| after the transient (the first EDGE_FRACTION of steps). The interval between QR
    decompositions is `interval`, or adapts: after each, the next comes when the tangents may have grown
    apart by SPREAD_PER_QR nats at the rates just seen (e^4: two digits of float32 lost at most), or
    grown or shrunk together by GROWTH_PER_QR (far from float32's overflow and underflow), every 1 to
    MAX_QR_INTERVAL steps. The exponents do not depend on it (tested): a product of triangular factors
    has the product of their diagonals."""

    def __init__(
        self,
        seq_len: int,
        k: int,
        batch: int,
        device: torch.device,
        interval: int | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        self.seq_len, self.skip, self.interval = seq_len, math.ceil(EDGE_FRACTION * seq_len), interval
        self.t, self.next_qr, self.last_qr = 0, 1, 0
        self.growth = torch.zeros(k, batch, dtype=dtype, device=device)  # out of place: it may carry a graph

    def step(self, tangents: Tensor) -> Tensor:
        return self.renormalise(tangents) if self.tick() else tangents

    def tick(self) -> bool:
        """Count a step; whether the tangents after it are due to be renormalised (then call renormalise)."""
        self.t += 1
        return self.t in (self.next_qr, self.skip, self.seq_len)

    def renormalise(self, tangents: Tensor) -> Tensor:
        t = self.t
        tangents, logs = orthonormal(tangents)
        if t > self.skip:  # a QR at the transient's last step: every log after it is counted whole
            self.growth = self.growth + logs.to(self.growth.dtype)
        steps = self.interval
        if steps is None:
            rates = logs.double() / (t - self.last_qr)
            # One tangent cannot grow apart from others: only its size matters.
            spread = 0.0 if len(rates) == 1 else (rates.max() - rates.min()).item()
            size_change = rates.abs().max().item()
            steps = int(min(MAX_QR_INTERVAL, SPREAD_PER_QR / max(spread, 1e-9), GROWTH_PER_QR / max(size_change, 1e-9)))
        self.next_qr, self.last_qr = t + max(1, steps), t
        return tangents

    def exponents(self) -> Tensor:
        """The exponents so far, nats per step, sorted from the largest: each index's batch median."""
        return (self.growth.median(dim=1).values / max(self.seq_len - self.skip, 1)).sort(descending=True).values.cpu()

    def mean_exponents(self) -> Tensor:
        """The exponents so far, nats per step, in the tangents' order: each index's batch mean."""
        return self.growth.mean(dim=1) / max(self.seq_len - self.skip, 1)


Push = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]  # (state, drive, tangents) -> next ones


def follow(push: Push, drives: Iterable[Tensor], state: Tensor, tangents: Tensor, growth: Growth) -> Growth:
    """The tangents' dynamics along the trajectory from `state`: each step's Jacobian applied by `push`,
    then the QR (or norm) when Growth says it is due, its logs summed after the transient."""
    for drive in drives:
        state, tangents = push(state, drive, tangents)
        tangents = growth.step(tangents)
    return growth


def first_tangents(batch: int, size: int, k: int, generator: torch.Generator, seed: int, like: Tensor) -> Tensor:
    """k orthonormal tangents per sample (k, batch, size): the first drawn from the run's generator as the
    largest exponent's always was, so theory_lyapunov's numbers do not depend on k; the others from seed."""
    first = torch.randn((1, batch, size), generator=generator, dtype=torch.float64)
    others = torch.randn((k - 1, batch, size), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return orthonormal(torch.cat([first, others]).to(like))[0]


def lyapunov_spectrum(
    model: StackedNet,
    inputs: Tensor,
    generator: torch.Generator,
    k: int = 1,
    interval: int | None = None,
    seed: int = 0,
    analytic: bool = True,
) -> Tensor:
    """The k largest Lyapunov exponents of the forward trajectory the recording follows (from the
    network's own initial_state: zeros for the built-in cells, a user cell's own h_0), nats per step,
    sorted from the largest (Benettin et al. 1980, as in Engelken, Wolf & Abbott 2023): k tangent
    vectors pushed through each step's Jacobian and re-orthonormalised by a QR decomposition (see
    Growth for when), the logs of |R_ii| summed after the transient, per sample; the batch median of
    each index is reported. Returns a float64 tensor (k,). The QR is what costs (the tangents are k
    forward passes' worth of matmuls), so it runs only when due."""
    batch, size = inputs.shape[1], sum(model.block_sizes)
    if not 1 <= k <= size:
        raise ModelError(f"theory.spectrum_k={k}: this network's state has {size} entries; expected 1 to {size}")
    state = start_state(model, inputs)
    tangents = first_tangents(batch, size, k, generator, seed, state)
    growth = Growth(inputs.shape[0], k, batch, inputs.device, interval)
    drives = (drive for chunk in time_chunks(inputs) for drive in chunk_drives(model, chunk))
    push = lambda s, drive, t: push_tangents(model, s, drive, t, analytic)  # noqa: E731
    return follow(push, drives, state, tangents, growth).exponents()


class CarriedTangent:
    """The largest Lyapunov exponent of a built-in network's trajectory, carried along a recording's
    forward pass (harness.core.segments.record_profile(tangent=...)): that pass already computes each
    step and its Jacobian coefficients (segments.Linearised), so the exponent costs only the tangent's
    own work instead of a second pass over the sequence: per step its matmul, the cell's few products,
    an occasional renormalisation. The same trajectory, the same first tangent and the same transient
    as lyapunov_exponent, which it equals to rounding (tested)."""

    def __init__(self, model: StackedNet, seq_len: int, batch: int, generator: torch.Generator, like: Tensor):
        self.model = model
        self.blocks = model.split(first_tangents(batch, sum(model.block_sizes), 1, generator, 0, like)[0])
        self.growth = Growth(seq_len, 1, batch, like.device)

    def push(self, steps: list[list]) -> None:
        """Push the tangent through consecutive steps, given each one's coefficients (step_coefficients)."""
        with torch.no_grad():
            for coefficients in steps:
                self.blocks = self.model.push_tangent(coefficients, self.blocks)
                if self.growth.tick():
                    joint = self.growth.renormalise(self.model.join(self.blocks).unsqueeze(0))[0]
                    self.blocks = self.model.split(joint)

    def exponent(self) -> float:
        return float(self.growth.exponents()[0])


def orthonormal(tangents: Tensor) -> tuple[Tensor, Tensor]:
    """(tangents (k, batch, state) re-orthonormalised, ln|R_ii| (k, batch)): the QR decomposition of
    each sample's state x k matrix; for one tangent, its norm."""
    if tangents.shape[0] == 1:
        norms = tangents.norm(dim=-1)
        return tangents / norms.clamp_min(torch.finfo(norms.dtype).tiny).unsqueeze(-1), norms.log()
    q, r = torch.linalg.qr(tangents.permute(1, 2, 0))  # (batch, state, k), (batch, k, k)
    diagonal = r.diagonal(dim1=-2, dim2=-1).abs().clamp_min(torch.finfo(r.dtype).tiny)
    return q.permute(2, 0, 1), diagonal.log().T


def flossing_loss(model: StackedNet, inputs: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Gradient flossing's objective (Engelken 2023): the sum of the squares of the k largest Lyapunov
    exponents of the trajectory on `inputs`, batch means, differentiable in the parameters through the
    tangents' dynamics (the cells' JVPs, built with the graph) and the QR decompositions at every step
    (the spectrum's loop, follow, with Growth's interval 1). Its gradient pushes the exponents toward
    0, where gradients neither vanish nor explode."""
    batch, size = inputs.shape[1], sum(model.block_sizes)
    state = start_state(model, inputs)
    tangents = orthonormal(torch.randn((k, batch, size), generator=generator, dtype=torch.float64).to(state))[0]
    growth = Growth(inputs.shape[0], k, batch, inputs.device, interval=1, dtype=inputs.dtype)
    return follow(model.step_jvp, model.input_drive(inputs), state, tangents, growth).mean_exponents().pow(2).sum()


def start_state(model: StackedNet, inputs: Tensor) -> Tensor:
    """S_0 of the recorded trajectory: the network's own initial state, off the graph."""
    with torch.no_grad():
        return model.initial_state(inputs.shape[1]).detach().to(dtype=inputs.dtype, device=inputs.device)


def lyapunov_exponent(model: StackedNet, inputs: Tensor, generator: torch.Generator) -> float:
    """Largest Lyapunov exponent of the recorded forward trajectory (batch median), per step."""
    return float(lyapunov_spectrum(model, inputs, generator, k=1)[0])


def spectrum_summary(exponents: Tensor) -> dict[str, float]:
    """lyapunov_dimension (Kaplan-Yorke: j + S_j / |lambda_{j+1}| with S_j the largest non-negative
    partial sum; 0 when the first exponent is negative, k when every partial sum is >= 0),
    entropy_rate (the sum of the positive exponents) and spectrum_sum, from exponents sorted down; all
    NaN where an exponent is."""
    values = exponents.double().tolist()
    if any(math.isnan(v) for v in values):  # a trajectory that overflowed (theory.predictions): not defined
        return {"lyapunov_dimension": math.nan, "entropy_rate": math.nan, "spectrum_sum": math.nan}
    sums = np.cumsum(values)
    if values[0] < 0:
        dimension = 0.0
    elif sums[-1] >= 0:
        dimension = float(len(values))
    else:
        j = int(np.nonzero(sums >= 0)[0].max()) + 1  # exponents 1..j keep the volume growing
        dimension = j + sums[j - 1] / abs(values[j])
    return {
        "lyapunov_dimension": dimension,
        "entropy_rate": float(sum(v for v in values if v > 0)),
        "spectrum_sum": float(sums[-1]),
    }
