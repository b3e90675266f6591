"""Mean-field theory of a wide one-layer rnn's gradients (Poole et al. 2016; Schoenholz et al. 2017;
Chen, Pennington & Schoenholz 2018), for any elementwise activation.

The pre-activation variance settles at the fixed point
    q* = scale^2 E[act(sqrt(q*) z)^2] + sigma_d^2,     z ~ N(0, 1),
where sigma_d^2 is the input drive variance the run records, and a gradient's squared norm changes by
chi = scale^2 E[act'(sqrt(q*) z)^2] per step, so rate = ln(chi) / 2. Expectations by a fine trapezoid
rule (see gaussian_moments for why not Gauss-Hermite). It assumes wide layers, every unit seeing the
same drive variance (a wide input), and gradients independent of the forward weights (untied), which
is close for tanh and less so for relu. critical_scale solves chi = 1. A cell offers it through its
network's mean_field (harness.core.protocol); harness.core.theory reports it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from harness.core.protocol import ACTIVATIONS


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
                found = math.sqrt(
                    math.exp(log_excess) / gaussian_moments(activation, drive_var + math.exp(log_excess))[0]
                )
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
