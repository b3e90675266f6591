"""What theory predicts for a run's per-step rate (natural log per step back), beside what it measures.

linear      activation=identity, cell=rnn: the backward pass multiplies by W_hh^T every step, so the
            asymptotic rate is ln rho(W_hh), the log spectral radius of the scaled recurrent matrix
            (for init=orthogonal or identity the gain over k steps is exactly scale^k). For a user
            cell, the same from the step's own Jacobian dS_t/dS_{t-1}, where the step is affine in
            its state (the Jacobian is the same at the origin and at a random state and input);
            otherwise it does not apply.
mean_field  a one-layer rnn with gaussian or orthogonal init and any elementwise activation
            (Poole et al. 2016; Schoenholz et al. 2017; Chen, Pennington & Schoenholz 2018): the
            pre-activation variance settles at the fixed point
                q* = scale^2 E[act(sqrt(q*) z)^2] + sigma_d^2,     z ~ N(0, 1),
            where sigma_d^2 is the input drive variance the run records, and a gradient's squared
            norm changes by chi = scale^2 E[act'(sqrt(q*) z)^2] per step, so rate = ln(chi) / 2.
            Expectations by a fine trapezoid rule (see gaussian_moments for why not Gauss-Hermite).
            It assumes wide layers, every unit seeing the
            same drive variance (a wide input), and gradients independent of the forward weights
            (untied), which is close for tanh and less so for relu. critical_scale solves chi = 1.
lru         linear and diagonal: the linear rate and the Lyapunov exponent are both ln(scale max|lambda_j|),
            from the eigenvalues (never a dense Jacobian, so hidden 8192 is cheap); with the probe the
            whole profile has a closed form (closed_form_profile). indrnn with activation=identity:
            unit j's gain over k steps is |u_j|^k, so the linear rate is ln max|u_j|.
lyapunov    the largest Lyapunov exponent of the run's own forward trajectory, for every cell: a
            tangent vector per sample is pushed through each step's Jacobian (a Jacobian-vector
            product, see jvp) and renormalised, and the mean log growth per step after the first 10% of steps (the
            transient from h_0 = 0) is the exponent; the batch median is reported. The norm of a
            backpropagated gradient grows at the same exponent, so it should match the exact
            recorder's rate.
Where a prediction does not apply, it is NaN and `theory_note` says why.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from harness.core.analysis import EDGE_FRACTION
from harness.core.cells import ACTIVATIONS, CellNet, RecurrentNet, StackedNet
from harness.core.errors import ModelError
from harness.core.modern import IndRNNNet, LRUNet, MinimalNet
from harness.core.spec import RunSpec
from harness.core.tasks import time_chunks

THEORY_COLUMNS = ("theory_linear", "theory_mean_field", "theory_critical_scale", "theory_lyapunov", "theory_note")
SPECTRUM_COLUMNS = ("lyapunov_dimension", "entropy_rate", "spectrum_sum")  # with theory.spectrum_k > 0

def gaussian_moments(activation: str, q: float) -> tuple[float, float]:
    """(E[act(u)^2], E[act'(u)^2]) for u ~ N(0, q), act' by autograd.

    A symmetric trapezoid grid in u over 12 standard deviations, fine enough for both the Gaussian
    and the activation's own features near 0 (spacing min(sqrt(q), 1) / 64), with the discrete
    Gaussian weights normalised to sum 1. Gauss-Hermite, the textbook choice, puts its nodes on the
    Gaussian's scale and misses features narrower than that: with 100 nodes it is 2% off for
    E[tanh'^2] at q = 10 already (0.01 nats per step in the rate). An even number of nodes leaves
    none at 0, so a relu's jump there splits the weight exactly in half.
    """
    # q* = 0 (no drive, subcritical) is read as its limit q -> 0+: a relu's slope there averages to
    # 1/2 over any perturbation, not relu'(0) = 0.
    spread = max(math.sqrt(q), 1e-9)
    half_width = 12 * spread
    # At most 20,000 nodes: only for q > 1e4, where the state is far out on the activation and its
    # shape near 0 no longer matters, does the spacing grow past 1/64.
    spacing = max(min(spread, 1.0) / 64, half_width / 10_000)
    count = math.ceil(half_width / spacing)
    u = torch.linspace(-half_width, half_width, 2 * count, dtype=torch.float64).requires_grad_()
    weights = torch.exp(-0.5 * (u.detach() / spread) ** 2)
    weights[[0, -1]] *= 0.5  # trapezoid ends
    weights /= weights.sum()
    y = ACTIVATIONS[activation](u)
    (slope,) = torch.autograd.grad(y.sum(), u)
    return float(weights @ y.detach() ** 2), float(weights @ slope**2)


def mean_field_fixed_point(activation: str, scale: float, drive_var: float) -> float:
    """The largest q with q = scale^2 E[act(u)^2] + drive_var, u ~ N(0, q); inf if q grows without bound.

    The map is increasing in q, so its fixed point is bracketed and found by bisection (plain
    iteration crawls near the critical scale).
    """
    def excess(q: float) -> float:
        return scale**2 * gaussian_moments(activation, q)[0] + drive_var - q

    low, high = 0.0, max(drive_var, 1.0)
    while excess(high) > 0:  # past the fixed point
        low, high = high, 4 * high
        if high > 1e8:
            return math.inf
    for _ in range(100):
        middle = 0.5 * (low + high)
        if excess(middle) > 0:
            low = middle
        else:
            high = middle
        if high - low <= 1e-10 * max(high, 1e-12):
            break
    return 0.5 * (low + high)


def mean_field_rate(activation: str, scale: float, drive_var: float) -> float:
    q = mean_field_fixed_point(activation, scale, drive_var)
    if math.isinf(q):  # the forward pass grows without bound: chi is taken far out on the activation
        q = 1e8
    _, slope_moment = gaussian_moments(activation, q)
    chi = scale**2 * slope_moment
    return 0.5 * math.log(chi) if chi > 0 else -math.inf


def mean_field_curve(activation: str, scales: np.ndarray, drive_var: float, points: int = 200) -> np.ndarray:
    """mean_field_rate at many scales at once (the phase figure's dense curve), ~10x cheaper than one
    bisection per scale. The fixed-point equation is solved backwards: on a log grid of the excess
    e = q - drive_var, the scale whose fixed point is q is s(q) = sqrt(e / E[act(u)^2]); each scale's
    largest q (mean_field_fixed_point's choice) is read off between the grid points where s(q) crosses
    it, and its rate is then computed at that q exactly as mean_field_rate does. Agrees with it to
    1e-4 nats per step (tested); below the grid's smallest scale q is its limit 0+, above its largest
    q is unbounded (read as 1e8, as there)."""
    excess = np.logspace(-12, 8, points) * max(drive_var, 1.0)
    q = drive_var + excess
    grid_scales = np.sqrt(excess / np.array([gaussian_moments(activation, float(v))[0] for v in q]))
    rates = []
    for scale in np.asarray(scales, dtype=float):
        if scale <= 0:
            rates.append(-math.inf)
            continue
        crossing = np.flatnonzero((grid_scales[:-1] - scale) * (grid_scales[1:] - scale) <= 0)
        if len(crossing):  # the secant in (s, ln e) between the bracket, then once more from its point
            i = crossing[-1]
            bracket = [(grid_scales[i], math.log(excess[i])), (grid_scales[i + 1], math.log(excess[i + 1]))]
            for _ in range(2):
                (s0, l0), (s1, l1) = bracket
                log_excess = l0 if s1 == s0 else l0 + (scale - s0) * (l1 - l0) / (s1 - s0)
                found = math.sqrt(math.exp(log_excess) / gaussian_moments(activation, drive_var + math.exp(log_excess))[0])
                keep = 0 if (s0 - scale) * (found - scale) < 0 else 1  # the end that still brackets it
                bracket = [bracket[keep], (found, log_excess)]
            at = drive_var + math.exp(log_excess)
        else:
            at = q[0] if scale < grid_scales.min() else 1e8
        chi = scale**2 * gaussian_moments(activation, at)[1]
        rates.append(0.5 * math.log(chi) if chi > 0 else -math.inf)
    return np.array(rates)


@functools.lru_cache(maxsize=256)  # every run of a scale sweep asks with the same drive variance
def mean_field_critical_scale(activation: str, drive_var: float, high: float = 16.0) -> float:
    """The scale at which the mean-field rate crosses 0 (chi = 1), to 1e-6 relative, by bisection on
    log scale; nan if the rate is still negative at `high`."""
    low = 1e-3
    if mean_field_rate(activation, high, drive_var) < 0:
        return math.nan
    while high / low > 1 + 1e-6:
        middle = math.sqrt(low * high)
        if mean_field_rate(activation, middle, drive_var) < 0:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def linear_rate(model: RecurrentNet) -> float:
    """ln of the spectral radius of the (scaled) recurrent matrix of a one-layer rnn."""
    eigenvalues = torch.linalg.eigvals(model.weight_hh_l0.detach().double().cpu())
    return math.log(eigenvalues.abs().max().item())


MAX_JACOBIAN_STATE = 1024  # a dense Jacobian of the step beyond this many state entries is not worth it


def affine_step_rate(model: StackedNet, inputs: Tensor, generator: torch.Generator) -> float:
    """ln rho(J) for a step that is affine in its state (J its constant Jacobian), else nan."""
    size = sum(model.block_sizes)
    if size > MAX_JACOBIAN_STATE:
        return math.nan
    x = inputs[0:1][0, :1].detach()

    def jacobian_at(state: Tensor, drive: Tensor) -> Tensor:
        with torch.enable_grad():
            return torch.autograd.functional.jacobian(lambda s: model.step(s, drive), state).reshape(size, size)

    origin = jacobian_at(torch.zeros(1, size, dtype=x.dtype, device=x.device), torch.zeros_like(x))
    elsewhere = jacobian_at(torch.randn(1, size, generator=generator, dtype=torch.float64).to(x), x)
    tolerance = 1e-6 * max(origin.abs().max().item(), 1e-30)
    if not torch.allclose(origin, elsewhere, rtol=0, atol=tolerance):
        return math.nan
    return math.log(torch.linalg.eigvals(origin.double().cpu()).abs().max().item())


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


def push_tangents(model: StackedNet, state: Tensor, drive: Tensor, tangents: Tensor,
                  analytic: bool = True) -> tuple[Tensor, Tensor]:
    """(the next state, J_t tangents) for tangents (k, batch, state): the cells' own JVP for built-in
    cells (all k at once, no graph), else the generic double-backward jvp, one tangent at a time
    (analytic=False forces it: the slow, obvious reference the tests hold the fast path to)."""
    if analytic and isinstance(model, RecurrentNet):
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

    def __init__(self, seq_len: int, k: int, batch: int, device: torch.device, interval: int | None = None):
        self.seq_len, self.skip, self.interval = seq_len, math.ceil(EDGE_FRACTION * seq_len), interval
        self.t, self.next_qr, self.last_qr = 0, 1, 0
        self.growth = torch.zeros(k, batch, dtype=torch.float64, device=device)

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
            self.growth += logs.double()
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


def first_tangents(batch: int, size: int, k: int, generator: torch.Generator, seed: int, like: Tensor) -> Tensor:
    """k orthonormal tangents per sample (k, batch, size): the first drawn from the run's generator as the
    largest exponent's always was, so theory_lyapunov's numbers do not depend on k; the others from seed."""
    first = torch.randn((1, batch, size), generator=generator, dtype=torch.float64)
    others = torch.randn((k - 1, batch, size), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return orthonormal(torch.cat([first, others]).to(like))[0]


def lyapunov_spectrum(model: StackedNet, inputs: Tensor, generator: torch.Generator, k: int = 1,
                      interval: int | None = None, seed: int = 0, analytic: bool = True) -> Tensor:
    """The k largest Lyapunov exponents of the forward trajectory from S_0 = 0, nats per step,
    sorted from the largest (Benettin et al. 1980, as in Engelken, Wolf & Abbott 2023): k tangent
    vectors pushed through each step's Jacobian and re-orthonormalised by a QR decomposition (see
    Growth for when), the logs of |R_ii| summed after the transient, per sample; the batch median of
    each index is reported. Returns a float64 tensor (k,). The QR is what costs (the tangents are k
    forward passes' worth of matmuls), so it runs only when due."""
    batch, size = inputs.shape[1], sum(model.block_sizes)
    if not 1 <= k <= size:
        raise ModelError(f"theory.spectrum_k={k}: this network's state has {size} entries; expected 1 to {size}")
    state = torch.zeros(batch, size, dtype=inputs.dtype, device=inputs.device)
    tangents = first_tangents(batch, size, k, generator, seed, state)
    growth = Growth(inputs.shape[0], k, batch, inputs.device, interval)
    drives = (drive for chunk in time_chunks(inputs) for drive in chunk_drives(model, chunk))
    for drive in drives:
        state, tangents = push_tangents(model, state, drive, tangents, analytic)
        tangents = growth.step(tangents)
    return growth.exponents()


class CarriedTangent:
    """The largest Lyapunov exponent of a built-in network's trajectory, carried along a recording's
    forward pass (harness.core.segments.record_profile(tangent=...)): that pass already computes each
    step and its Jacobian coefficients (segments.Linearised), so the exponent costs only the tangent's
    own work instead of a second pass over the sequence: per step its matmul, the cell's few products,
    an occasional renormalisation. The same trajectory, the same first tangent and the same transient
    as lyapunov_exponent, which it equals to rounding (tested)."""

    def __init__(self, model: RecurrentNet, seq_len: int, batch: int, generator: torch.Generator, like: Tensor):
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


def flossing_loss(model: RecurrentNet, inputs: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Gradient flossing's objective (Engelken 2023): the sum of the squares of the k largest Lyapunov
    exponents of the trajectory on `inputs`, batch means, differentiable in the parameters through the
    tangents' dynamics (the cells' JVPs, built with the graph) and the QR decompositions at every step.
    Its gradient pushes the exponents toward 0, where gradients neither vanish nor explode."""
    batch, size = inputs.shape[1], sum(model.block_sizes)
    state = torch.zeros(batch, size, dtype=inputs.dtype, device=inputs.device)
    tangents = orthonormal(torch.randn((k, batch, size), generator=generator, dtype=torch.float64).to(state))[0]
    skip = math.ceil(EDGE_FRACTION * inputs.shape[0])
    growth = torch.zeros(k, batch, dtype=inputs.dtype, device=inputs.device)
    for t, drive in enumerate(model.input_drive(inputs), start=1):
        state, tangents = model.step_jvp(state, drive, tangents)
        tangents, logs = orthonormal(tangents)
        if t > skip:
            growth = growth + logs
    exponents = growth.mean(dim=1) / max(inputs.shape[0] - skip, 1)
    return exponents.pow(2).sum()


def lyapunov_exponent(model: StackedNet, inputs: Tensor, generator: torch.Generator) -> float:
    """Largest Lyapunov exponent of the forward trajectory from S_0 = 0 (batch median), per step."""
    return float(lyapunov_spectrum(model, inputs, generator, k=1)[0])


def spectrum_summary(exponents: Tensor) -> dict[str, float]:
    """lyapunov_dimension (Kaplan-Yorke: j + S_j / |lambda_{j+1}| with S_j the largest non-negative
    partial sum; 0 when the first exponent is negative, k when every partial sum is >= 0),
    entropy_rate (the sum of the positive exponents) and spectrum_sum, from exponents sorted down."""
    values = exponents.double().tolist()
    sums = np.cumsum(values)
    if values[0] < 0:
        dimension = 0.0
    elif sums[-1] >= 0:
        dimension = float(len(values))
    else:
        j = int(np.nonzero(sums >= 0)[0].max()) + 1  # exponents 1..j keep the volume growing
        dimension = j + sums[j - 1] / abs(values[j])
    return {"lyapunov_dimension": dimension, "entropy_rate": float(sum(v for v in values if v > 0)),
            "spectrum_sum": float(sums[-1])}


def carries_lyapunov(model: StackedNet, run: RunSpec) -> bool:
    """Whether the run's recording carries the largest exponent's tangent (CarriedTangent): built-in
    cells, without a spectrum (whose k tangents and QR decompositions keep their own pass)."""
    return isinstance(model, RecurrentNet) and not run.theory.spectrum_k


def predictions(model: StackedNet, run: RunSpec, inputs: Tensor, drive_var: float,
                generator: torch.Generator, carried_lyapunov: float | None = None) -> dict[str, float | str]:
    """Every prediction that applies to this run, and why the others do not. carried_lyapunov: the
    largest exponent, where the recording carried it (see carries_lyapunov); else it is computed here."""
    notes = []
    linear = mean_field = critical = lyapunov = math.nan
    one_layer_rnn = run.cell.name == "rnn" and run.num_layers == 1
    if isinstance(model, LRUNet):  # linear and diagonal: both from its eigenvalues, for any width
        linear = lyapunov = model.linear_rate()
    elif isinstance(model, (IndRNNNet, MinimalNet)):
        rate = model.linear_rate()
        linear = math.nan if rate is None else rate
        if rate is None:
            notes.append(f"linear: needs a linear step (the {run.cell.name} with activation=identity)"
                         if run.cell.name == "indrnn" else "linear: the minimal cell's gate is not linear")
    elif isinstance(model, CellNet):
        linear = affine_step_rate(model, inputs, generator)
        if math.isnan(linear):
            notes.append(f"linear: needs a step affine in its state, with at most {MAX_JACOBIAN_STATE} state entries")
    elif run.activation == "identity" and one_layer_rnn:
        linear = linear_rate(model)
    else:
        notes.append("linear: needs a one-layer rnn with activation=identity")
    if one_layer_rnn and run.init.name in ("gaussian", "orthogonal"):
        mean_field = mean_field_rate(run.activation, run.scale, drive_var)
        critical = mean_field_critical_scale(run.activation, drive_var)
    else:
        notes.append("mean field: needs a one-layer rnn with init=gaussian or orthogonal")
    spectrum_k = run.theory.spectrum_k
    if spectrum_k:  # theory_lyapunov is its first exponent: one trajectory, transient and statistic
        spectrum = lyapunov_spectrum(model, inputs, generator, spectrum_k, seed=run.seed)
        lyapunov = float(spectrum[0])
    elif carried_lyapunov is not None:
        lyapunov = carried_lyapunov
    elif not isinstance(model, LRUNet):
        lyapunov = lyapunov_exponent(model, inputs, generator)
    return {
        "theory_linear": linear,
        "theory_mean_field": mean_field,
        "theory_critical_scale": critical,
        "theory_lyapunov": lyapunov,
        "theory_note": "; ".join(notes),
        **({"spectrum": spectrum.tolist(), **spectrum_summary(spectrum)} if spectrum_k else {}),
    }


def closed_form_profile(model: StackedNet, run: RunSpec, readout: Tensor | None) -> dict[str, "np.ndarray"]:
    """Closed-form log10 ||dL/dh_{T-k}|| for k = 0..T (indexed by t = T - k), where one exists: a
    one-layer lru or identity-activation indrnn on the probe, whose dL/dh_T is the readout c.

    theory_log10_norm        this run's exact law: ||dL/dh_{T-k}||^2 = sum_j |c_j|^2 g_j^(2k), with g_j
                             = scale |lambda_j| (lru) or |u_j| (indrnn);
    theory_ring_log10_norm   (lru) its expectation over the ring: for |lambda|^2 ~ U[a, b],
                             E|lambda|^(2k) = (b^(k+1) - a^(k+1)) / ((k+1)(b - a)); with a = 0, b = 1
                             the squared norm falls as 1/(k+1), a power law of exponent -1/2 in the norm.
    """
    if readout is None or run.num_layers != 1 or run.task.name != "probe":
        return {}
    if isinstance(model, LRUNet):
        gains = model.scale.item() * torch.exp(-torch.exp(model.nu_log_l0.detach().double().cpu()))
        weights = readout.double().cpu().view(-1, 2).pow(2).sum(1)  # |c_j|^2 = Re^2 + Im^2 (the state's layout)
    elif isinstance(model, IndRNNNet) and model.activation == "identity":
        gains = model.weight_hh_l0.detach().double().cpu().abs()
        weights = readout.double().cpu().pow(2)
    else:
        return {}
    seq_len = run.seq_len
    lag = torch.arange(seq_len, -1, -1, dtype=torch.float64)  # k at t = 0..T
    # log sum_j w_j g_j^(2k), stably (zero gains and zero weights are -inf terms)
    log_terms = weights.log().unsqueeze(0) + 2 * lag.unsqueeze(1) * gains.log().unsqueeze(0)
    out = {"theory_log10_norm": (0.5 * torch.logsumexp(log_terms, dim=1) / math.log(10)).numpy()}
    if isinstance(model, LRUNet):
        a, b = model.r_min**2, model.r_max**2
        expectation = (b ** (lag + 1) - a ** (lag + 1)) / ((lag + 1) * (b - a))
        log_ring = weights.sum().log() + 2 * lag * math.log(model.scale.item()) + expectation.log()
        out["theory_ring_log10_norm"] = (0.5 * log_ring / math.log(10)).numpy()
    return out
