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

The second half (after the rnn's) does the same for gated cells, minimal, gru and lstm: the state's
fixed point, then the gradient's growth with the correlation that reusing W at every step gives the
backward fields (docs/theory.md, "Gated cells: mean field"). It names no cell: each cell's network
passes its wide-limit step (minimal_units, gru_units, lstm_units) and its gate biases.

numpy only, no torch (each activation and its derivative written out: NUMPY_ACTIVATIONS, tested
against torch's activations and autograd).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# -- the activations, in numpy: (act, act') by name ----------------------------------------------------
#
# Written out rather than taken from harness.core.protocol.ACTIVATIONS (torch) so that the mean field, and
# the phase figure that draws it, need no torch (harness.plot runs without it). Each matches the torch
# activation of the same name and its autograd derivative (tests/test_gated_meanfield.py checks both):
# at a kink the derivative is autograd's one-sided choice (relu'(0) = 0, leaky_relu'(0) = 0.01), which
# the trapezoid grids never meet (an even number of nodes leaves none at 0).


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # no overflow in exp for large |u|


def _erf(x: np.ndarray) -> np.ndarray:
    """erf elementwise to 1e-15 (numpy has none; math.erf one value at a time is slower here). For
    |x| < 2.5 the series erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1 3 5 ... (2n+1)), whose terms
    are all positive (no cancellation), 45 terms; beyond, 1 - erfc(x) from erfc's continued fraction
    exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))), 40 levels (tested)."""
    x = np.asarray(x, dtype=float)
    a = np.abs(x)
    result = np.empty_like(a)
    inner = a < 2.5
    near, far = a[inner], a[~inner]
    two_near2 = 2.0 * near * near
    term, total = near.copy(), near.copy()
    for n in range(1, 45):
        term *= two_near2 / (2 * n + 1)
        total += term
    result[inner] = 2.0 / math.sqrt(math.pi) * np.exp(-near * near) * total
    fraction = np.zeros_like(far)
    for k in range(40, 0, -1):
        fraction = (k / 2) / (far + fraction)
    result[~inner] = 1.0 - np.exp(-far * far) / math.sqrt(math.pi) / (far + fraction)
    return np.copysign(result, x)


def _normal_cdf(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(u / math.sqrt(2.0)))


def _gelu(u: np.ndarray) -> np.ndarray:
    return u * _normal_cdf(u)


def _gelu_slope(u: np.ndarray) -> np.ndarray:
    return _normal_cdf(u) + u * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)


LEAKY_SLOPE = 0.01  # torch's default negative slope (harness.core.protocol.ACTIVATIONS)

# name -> (act, act') on float64 arrays
NUMPY_ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "tanh": (np.tanh, lambda u: 1.0 - np.tanh(u) ** 2),
    "relu": (lambda u: np.maximum(u, 0.0), lambda u: (u > 0).astype(float)),
    "sigmoid": (_sigmoid, lambda u: _sigmoid(u) * (1.0 - _sigmoid(u))),
    "identity": (lambda u: u, np.ones_like),
    "leaky_relu": (lambda u: np.where(u > 0, u, LEAKY_SLOPE * u), lambda u: np.where(u > 0, 1.0, LEAKY_SLOPE)),
    "gelu": (_gelu, _gelu_slope),
    "softsign": (lambda u: u / (1.0 + np.abs(u)), lambda u: 1.0 / (1.0 + np.abs(u)) ** 2),
}


def numpy_activation(name: str) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """(act, act') of an activation by name; a ValueError naming the covered ones for any other (a user's
    activation has no mean field here: harness.core.protocol.ACTIVATIONS would need its numpy twin)."""
    try:
        return NUMPY_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"mean field: activation {name!r} has no numpy form here; covered: {', '.join(NUMPY_ACTIVATIONS)}"
        ) from None


def gaussian_grid(q: float) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes u and weights (summing to 1) for u ~ N(0, q): gaussian_moments' grid.

    A symmetric grid in u over 12 standard deviations, fine enough for both the Gaussian and the
    activation's own features near 0 (spacing min(sqrt(q), 1) / 64). An even number of nodes leaves
    none at 0, so a relu's jump there splits the weight exactly in half.
    """
    # q* = 0 (no drive, subcritical) is read as its limit q -> 0+: a relu's slope there averages to
    # 1/2 over any perturbation, not relu'(0) = 0.
    spread = max(math.sqrt(q), 1e-9)
    half_width = 12 * spread
    # At most 20,000 nodes: only for q > 1e4, where the state is far out on the activation and its
    # shape near 0 no longer matters, does the spacing grow past 1/64.
    spacing = max(min(spread, 1.0) / 64, half_width / 10_000)
    u = np.linspace(-half_width, half_width, 2 * math.ceil(half_width / spacing))
    weights = np.exp(-0.5 * (u / spread) ** 2)
    weights[[0, -1]] *= 0.5  # trapezoid ends
    return u, weights / weights.sum()


def gaussian_moments(activation: str, q: float) -> tuple[float, float]:
    """(E[act(u)^2], E[act'(u)^2]) for u ~ N(0, q), act and act' from NUMPY_ACTIVATIONS.

    On gaussian_grid's trapezoid rule, with the discrete Gaussian weights normalised to sum 1.
    Gauss-Hermite, the textbook choice, puts its nodes on the Gaussian's scale and misses features
    narrower than that: with 100 nodes it is 2% off for E[tanh'^2] at q = 10 already (0.01 nats per
    step in the rate).
    """
    act, slope = numpy_activation(activation)
    u, weights = gaussian_grid(q)
    return float(weights @ act(u) ** 2), float(weights @ slope(u) ** 2)


def _fixed_point(
    step: Callable[[float], float],
    high: float,
    *,
    grow: float = 2.0,
    limit: float = 1e12,
    iterations: int = 200,
    rtol: float = 1e-14,
    floor: float = 1e-300,
) -> float:
    """The q >= 0 with step(q) = q, step increasing with step(0) >= 0 and step(q) < q far out, by bisection:
    high is multiplied by `grow` until it is past the fixed point (inf once it exceeds `limit`), then the
    bracket is halved at most `iterations` times, stopping once it is within rtol * max(high, floor) (floor:
    a fixed point at 0 would otherwise ask for a bracket of width 0). The defaults are the gated cells'."""
    low = 0.0
    while step(high) > high:
        low, high = high, grow * high
        if high > limit:
            return math.inf
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if step(middle) > middle:
            low = middle
        else:
            high = middle
        if high - low <= rtol * max(high, floor):
            break
    return 0.5 * (low + high)


def mean_field_fixed_point(activation: str, scale: float, drive_var: float) -> float:
    """The largest q with q = scale^2 E[act(u)^2] + drive_var, u ~ N(0, q); inf if q grows without bound.

    The map is increasing in q, so its fixed point is bracketed and found by bisection (plain
    iteration crawls near the critical scale).
    """

    def step(q: float) -> float:
        return scale**2 * gaussian_moments(activation, q)[0] + drive_var

    # Coarser than the gated cells' settings (each step is a moment on up to 20,000 nodes), and kept:
    # the rnn's tested rates and critical scales were found with them.
    return _fixed_point(step, max(drive_var, 1.0), grow=4.0, limit=1e8, iterations=100, rtol=1e-10, floor=1e-12)


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


# -- gated cells: minimal (Chen, Pennington & Schoenholz 2018), gru and lstm (Gilboa et al. 2019) --
#
# The same wide-limit argument, for cells whose step keeps part of the old state through a sigmoid
# gate (docs/theory.md, "Gated cells", has the derivation). Forward: every pre-activation of a unit
# (each gate block's and the candidate's) is x_t W_ih^T (variance input_var, fresh every step: the
# probe's i.i.d. inputs) plus a row of W h_{t-1} (variance scale^2 Q, Q = E[h^2] over units) plus the
# unit's bias, and these are independent Gaussians from block to block, step to step and of the unit's
# own state; the state's second moments then settle at a fixed point (Q; for the lstm also E[c^2]).
# Backward: a unit's gradient obeys y' = F_y y + F_x m (its own memory: the gate that keeps the state)
# and every weight block B adds a Gaussian field m_B = W_B^T (p_B y + q_B m) mixing all units. Because
# the same W_B acts at every step, the fields at different steps are correlated wherever the coefficients
# p_B, q_B have a nonzero mean (the gru's and lstm's candidate slope does): a per-step average of the
# Jacobian (the factorised chi) misses that, by ~0.1 nats per step for the gru and lstm at scale 1. The
# gain is solved with the correlation included, in the stationary frame where every second moment grows
# by Lambda^2 per step: the fields' spectrum is fixed by the equal-time moments, which are fixed by it.
# Units may come in classes (chrono init gives each its own gate bias): each class has its own memory,
# the fields are shared. rate = ln Lambda, the growth per step of the gradient's root mean square.

MAX_UNIT_CLASSES = 12  # per-unit gate biases (chrono) are grouped into at most this many classes
NODE_SPACING = 0.5  # trapezoid nodes' spacing in a pre-activation u (the integrands are analytic in u)
NODE_WIDTH = 7.0  # ... over +-7 standard deviations
LSTM_MAX_NODES = 97  # the lstm's 4-d rule: at most this many a side (coarser than 0.5 past sd 3.4: scale ~8)


def normal_nodes(
    mean: float, var: float, spacing: float = NODE_SPACING, most: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes and weights (summing to 1) for u ~ N(mean, var): spacing at most `spacing` in u and
    at most half a standard deviation, over +-NODE_WIDTH standard deviations, and at most `most` nodes. For
    the sigmoid and tanh (analytic in a strip of half-width pi/2 about the real axis) the rule's error is
    ~exp(-pi^2 / spacing), 1e-8 at 0.5 (tested against a grid of half the spacing)."""
    sd = math.sqrt(max(var, 0.0))
    if sd == 0.0:
        return np.array([float(mean)]), np.array([1.0])
    count = max(math.ceil(2 * NODE_WIDTH * sd / spacing), math.ceil(4 * NODE_WIDTH))
    count = (count if most is None else min(count, most - 1)) + 1
    z = np.linspace(-NODE_WIDTH, NODE_WIDTH, count)
    weights = np.exp(-0.5 * z * z)
    weights[[0, -1]] *= 0.5
    return mean + sd * z, weights / weights.sum()


def activation_mean_and_square(activation: str, q: float) -> tuple[float, float]:
    """(E[act(u)], E[act(u)^2]) for u ~ N(0, q), on gaussian_moments' grid (fine enough for kinks)."""
    act, _ = numpy_activation(activation)
    u, weights = gaussian_grid(q)
    y = act(u)
    return float(weights @ y), float(weights @ y**2)


@dataclass(frozen=True)
class Block:
    """One recurrent weight block B (W_B, scaled by `scale`) of a class of units: the coefficients p, q
    of its source p y + q m (y: the unit's memory of the gradient, m: the field arriving at it), as means
    (P, Q), second moments (pp, pq, qq) and joint moments with the memory's factors (Fyp = E[F_y p], ...),
    all over one step's local variables."""

    P: float
    Q: float
    pp: float
    pq: float
    qq: float
    Fyp: float
    Fyq: float
    Fxp: float
    Fxq: float


@dataclass(frozen=True)
class UnitClass:
    """A class of units (a share `weight` of them, with the same gate biases): the moments of one step's
    memory factors (y' = F_y y + F_x m) and its weight blocks."""

    weight: float
    Fy: float
    Fx: float
    FyFy: float
    FxFy: float
    FxFx: float
    blocks: tuple[Block, ...]


def _theta_nodes(panels: int = 48, order: int = 12, smallest: float = 1e-14) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of (1/pi) int_0^pi f(theta) d theta: Gauss-Legendre panels on ln theta, so that a
    spectrum's peaks at theta = 0 of every width down to `smallest` (a memory gate near 1) are resolved;
    [0, smallest] is taken as its left node's value times its width."""
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(math.log(smallest), math.log(math.pi), panels + 1)
    half = 0.5 * np.diff(edges)
    logs = (edges[:-1, None] + half[:, None] * (x[None, :] + 1)).ravel()
    theta = np.exp(logs)
    weights = (half[:, None] * w[None, :]).ravel() * theta / math.pi
    weights[0] += smallest / math.pi
    return theta, weights


THETA, THETA_WEIGHTS = _theta_nodes()


def _unknowns(
    count: int, index: int, square: tuple[float, float], of_yy: float, of_ym: float, of_c0: float
) -> np.ndarray:
    """Coefficients over the unknowns (c0, then E[y m] of each of `count` classes) of of_yy E[y^2] + of_ym
    E[y m] + of_c0 c0 for class `index`, whose E[y^2] = square[0] c0 + square[1] E[y m]."""
    row = np.zeros(count + 1)
    row[0] = of_c0 + of_yy * square[0]
    row[1 + index] = of_ym + of_yy * square[1]
    return row


def field_matrix(classes: Sequence[UnitClass], scale: float, gain: float) -> np.ndarray | None:
    """The linear map that the equal-time moments (c0 = E[m^2], and E[y m] per class) make of themselves
    through one round of the fields' spectrum, at trial gain Lambda = `gain`; None where no stationary
    solution exists at that gain (a memory or the fields' feedback growing faster than Lambda^2).

    In units where every moment is divided by Lambda^(2 steps), with z = e^{i theta}, a = E[F_y]/Lambda and
    e = E[F_x]/Lambda per class: a unit's memory is the causal filter y = e z / (1 - a z) m + noise, so
    source B is w_B = G_B(z) m + noise with G_B = Q + P e z / (1 - a z), and the noise (the coefficients'
    deviations from their means, uncorrelated across steps) has the spectrum N_B = P^2 s_eta / |1 - a z|^2
    + s_zeta + 2 P k Re[z / (1 - a z)] (s_eta, s_zeta, k: its equal-time (co)variances, linear in the
    unknowns). The fields are the weights' images of the sources, so S_m = s (sum_B N_B) / (1 - s sum_B
    |G_B|^2), s = scale^2 / Lambda^2 (averaged over classes), and c0 = <S_m>, E[y m] = <S_m e Re[z/(1-az)]>.
    E[y^2] per class is eliminated by its own equal-time equation."""
    count = len(classes)
    st = scale**2 / gain**2
    cos, half_sine = np.cos(THETA), np.sin(0.5 * THETA)
    denominator = np.ones_like(THETA)
    numerator = np.zeros((count + 1, len(THETA)))
    memory_filters = []
    for index, unit in enumerate(classes):
        room = gain**2 - unit.FyFy
        if room <= 0:
            return None
        a, e = unit.Fy / gain, unit.Fx / gain
        resolvent = 1.0 / ((1.0 - a) ** 2 + 4.0 * a * half_sine**2)  # 1 / |1 - a z|^2, no cancellation at a ~ 1
        real_part = (cos - a) * resolvent  # Re[z / (1 - a z)]
        memory_filters.append(e * real_part)
        square = (unit.FxFx / room, 2.0 * unit.FxFy / room)  # E[y^2] = square[0] c0 + square[1] E[y m]
        linear = functools.partial(_unknowns, count, index, square)
        eta = linear(
            (unit.FyFy - unit.Fy**2) / gain**2,
            2.0 * (unit.FxFy - unit.Fx * unit.Fy) / gain**2,
            (unit.FxFx - unit.Fx**2) / gain**2,
        )
        for b in unit.blocks:
            kappa = linear(
                (b.Fyp - unit.Fy * b.P) / gain,
                (b.Fyq - unit.Fy * b.Q + b.Fxp - unit.Fx * b.P) / gain,
                (b.Fxq - unit.Fx * b.Q) / gain,
            )
            zeta = linear(b.pp - b.P**2, 2.0 * (b.pq - b.P * b.Q), b.qq - b.Q**2)
            share = st * unit.weight
            denominator -= share * (b.Q**2 + 2.0 * b.Q * b.P * e * real_part + (b.P * e) ** 2 * resolvent)
            numerator += share * (
                np.outer(eta, b.P**2 * resolvent) + zeta[:, None] + np.outer(kappa, 2.0 * b.P * real_part)
            )
    if denominator.min() <= 0:
        return None
    spectra = numerator / denominator
    matrix = np.empty((count + 1, count + 1))
    matrix[0] = spectra @ THETA_WEIGHTS
    for index, memory_filter in enumerate(memory_filters):
        matrix[1 + index] = (spectra * memory_filter) @ THETA_WEIGHTS
    return matrix


def _feedback(classes: Sequence[UnitClass], scale: float, gain: float) -> float:
    """The largest real eigenvalue of field_matrix (inf where it has no stationary solution)."""
    matrix = field_matrix(classes, scale, gain)
    if matrix is None:
        return math.inf
    values = np.linalg.eigvals(matrix)
    return float(values.real.max())


def backward_gain(classes: Sequence[UnitClass], scale: float) -> float:
    """Lambda, the wide-limit growth per step back of the gradient's root mean square: the largest gain at
    which field_matrix has the eigenvalue 1 (it falls as the gain grows), by bisection on ln Lambda; the
    slowest class's own memory sqrt(max E[F_y^2]) where the fields cannot reach it (scale 0)."""
    floor = math.sqrt(max(unit.FyFy for unit in classes))
    high = max(floor, 1e-3) * 2.0
    while _feedback(classes, scale, high) >= 1.0:
        high *= 2.0
        if high > 1e12:
            return math.inf
    low = floor * (1.0 + 1e-13) if floor > 0 else high * 1e-12
    if _feedback(classes, scale, low) < 1.0:
        return low
    for _ in range(200):
        middle = math.sqrt(low * high)
        if _feedback(classes, scale, middle) >= 1.0:
            low = middle
        else:
            high = middle
        if high / low - 1.0 < 1e-13:
            break
    return math.sqrt(low * high)


def factorised_gain(classes: Sequence[UnitClass], scale: float) -> float:
    """Lambda from the per-step (factorised) mean-square map: every step's Jacobian averaged on its own,
    the fields at different steps taken as uncorrelated (as in a per-step chi). For comparison only: it
    misses the correlation that reusing W at every step gives the fields."""

    def excess(gain: float) -> float:  # 1 - (field variance per unit field variance, at gain)
        total = 0.0
        for unit in classes:
            room = gain**2 - unit.FyFy
            if room <= 0:
                return -math.inf
            total += unit.weight * sum(b.pp * unit.FxFx / room + b.qq for b in unit.blocks)
        return 1.0 - scale**2 / gain**2 * total

    low = math.sqrt(max(unit.FyFy for unit in classes)) * (1 + 1e-13)
    high = max(low, 1e-3) * 2
    while excess(high) < 0:
        high *= 2
    if excess(low) >= 0:
        return low
    for _ in range(200):
        middle = math.sqrt(low * high)
        if excess(middle) < 0:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def _gate_moments(bias: float, var: float) -> dict[str, float]:
    """Moments of a sigmoid gate s = sigmoid(a), a ~ N(bias, var): E[s], E[s^2], E[(1-s)^2], E[s(1-s)],
    E[s'], E[s'^2], E[s s'] (s' = s(1-s))."""
    a, w = normal_nodes(bias, var)
    s = _sigmoid(a)
    slope = s * (1 - s)
    return {
        "s": w @ s,
        "ss": w @ s**2,
        "rr": w @ (1 - s) ** 2,
        "sr": w @ (s * (1 - s)),
        "d": w @ slope,
        "dd": w @ slope**2,
        "sd": w @ (s * slope),
    }


def _tanh_square(var: float) -> float:
    """E[tanh(u)^2], u ~ N(0, var)."""
    u, w = normal_nodes(0.0, var)
    return float(w @ np.tanh(u) ** 2)


# Each gated cell: (scale, input_var, per-class biases) -> (the fixed point's Q, the classes' moments).
# `biases` is a sequence of (weight, gate biases) with the cell's gate order: minimal (b_u,), gru (b_r,
# b_z), lstm (b_i, b_f, b_o); the candidate's bias is 0 (init=gaussian zeroes every bias; forget_bias and
# chrono move gate biases only).
Biases = tuple[tuple[float, tuple[float, ...]], ...]


def minimal_units(activation: str, scale: float, input_var: float, biases: Biases) -> tuple[float, list[UnitClass]]:
    """minimal: z = act(x W_z^T), u = sigmoid(W h + V z + b), h' = u h + (1 - u) z; V ~ N(0, 1/N) unscaled:
    minimal_field with z's moments at input variance input_var."""
    z_mean, z_square = activation_mean_and_square(activation, input_var)
    return minimal_field(scale, z_mean, z_square, biases)


def minimal_field(
    scale: float, z_mean: float, z_square: float, biases: Biases, v_var: float = 1.0
) -> tuple[float, list[UnitClass]]:
    """The minimal with input z of mean z_mean and mean square z_square (i.i.d. over steps) and V's entries
    of variance v_var / N. Forward: E[h] = E[z] and per class Q_k = (E[(1-u)^2] E[z^2] + 2 E[u(1-u)]
    E[z]^2) / (1 - E[u^2]), the gate's variance q = scale^2 Q + v_var E[z^2], Q the classes' mean.
    Backward: F_y = F_x = u and one block, W, with p = q = (h - z) u' (V z does not depend on h); its mean
    is (E[h] - E[z]) E[u'] = 0, so the gain is the factorised chi^2 = E[u^2] + scale^2 E[(h-z)^2] E[u'^2]."""

    def per_class(total: float) -> list[tuple[dict, float]]:
        var = scale**2 * total + v_var * z_square
        out = []
        for _, (bias,) in biases:
            g = _gate_moments(bias, var)
            out.append((g, (g["rr"] * z_square + 2 * g["sr"] * z_mean**2) / (1 - g["ss"])))
        return out

    def step(total: float) -> float:
        return sum(weight * q for (weight, _), (_, q) in zip(biases, per_class(total)))

    total = _fixed_point(step, max(z_square, 1e-12) * 4)
    classes = []
    for (weight, _), (g, q) in zip(biases, per_class(total)):
        pp = (q + z_square - 2 * z_mean**2) * g["dd"]  # E[(h - z)^2] E[u'^2]
        block = Block(P=0.0, Q=0.0, pp=pp, pq=pp, qq=pp, Fyp=0.0, Fyq=0.0, Fxp=0.0, Fxq=0.0)
        classes.append(UnitClass(weight, g["s"], g["s"], g["ss"], g["ss"], g["ss"], (block,)))
    return total, classes


def _gru_candidate(reset_bias: float, var: float, input_var: float, recurrent_var: float) -> dict[str, float]:
    """Moments of the gru's candidate n = tanh(pre), pre = x_n + r y_n (torch puts b_hn, here 0, inside the
    reset gate's product), r = sigmoid(a_r), a_r ~ N(reset_bias, var), x_n ~ N(0, input_var), y_n = (W_n h)
    ~ N(0, recurrent_var), all independent: given a_r, pre ~ N(0, V), V = input_var + r^2 recurrent_var, and
    y_n given pre has mean r recurrent_var pre / V and variance recurrent_var input_var / V."""
    a, wa = normal_nodes(reset_bias, var)
    r = _sigmoid(a)
    reset_slope = r * (1 - r)
    spread = np.maximum(input_var + r * r * recurrent_var, 1e-300)
    zeta, wz = normal_nodes(0.0, 1.0, spacing=min(NODE_SPACING / math.sqrt(spread.max()), NODE_SPACING))
    pre = np.sqrt(spread)[:, None] * zeta[None, :]
    n = np.tanh(pre)
    slope = 1 - n * n
    y_mean = (r * recurrent_var / spread)[:, None] * pre
    y_var = (recurrent_var * input_var / spread)[:, None]
    weights = wa[:, None] * wz[None, :]
    return {
        "nn": float(np.sum(weights * n * n)),  # E[n^2]
        "n1": float(np.sum(weights * slope * r[:, None])),  # E[n' r]
        "n2": float(np.sum(weights * (slope * r[:, None]) ** 2)),  # E[(n' r)^2]
        "r1": float(np.sum(weights * slope * y_mean * reset_slope[:, None])),  # E[n' y_n r']
        "r2": float(np.sum(weights * slope**2 * (y_var + y_mean**2) * reset_slope[:, None] ** 2)),  # E[(n' y_n r')^2]
    }


def gru_units(activation: str, scale: float, input_var: float, biases: Biases) -> tuple[float, list[UnitClass]]:
    """gru (torch's): r, z = sigmoid(x W_{r,z}^T + h W_{r,z}^T + b), n = tanh(x W_n^T + r (h W_n^T)),
    h' = (1 - z) n + z h. Forward: every pre-activation has variance q = input_var + scale^2 Q, and per class
    Q_k = E[(1-z)^2] E[n^2] / (1 - E[z^2]) (E[n] = 0). Backward: F_y = F_x = z and three blocks, p = q = k_B:
    k_z = (h - n) z' (mean 0, E[k_z^2] = (Q_k + E[n^2]) E[z'^2]), k_n = (1 - z) n' r (mean E[1-z] E[n' r] > 0:
    the fields are correlated across steps), k_r = (1 - z) n' y_n r' (mean 0 for tanh)."""

    def per_class(total: float) -> list[tuple[dict, dict, float]]:
        var = input_var + scale**2 * total
        out = []
        for _, (reset_bias, update_bias) in biases:
            candidate = _gru_candidate(reset_bias, var, input_var, scale**2 * total)
            z = _gate_moments(update_bias, var)
            out.append((candidate, z, z["rr"] * candidate["nn"] / (1 - z["ss"])))
        return out

    def step(total: float) -> float:
        return sum(weight * q for (weight, _), (_, _, q) in zip(biases, per_class(total)))

    total = _fixed_point(step, 1.0)
    classes = []
    for (weight, _), (n, z, q) in zip(biases, per_class(total)):
        blocks = []
        for mean, square, joint in (  # E[k_B], E[k_B^2], E[z k_B]: z's factors apart from n's
            (0.0, (q + n["nn"]) * z["dd"], 0.0),  # W_z: E[h - n] = 0
            ((1 - z["s"]) * n["r1"], z["rr"] * n["r2"], z["sr"] * n["r1"]),  # W_r
            ((1 - z["s"]) * n["n1"], z["rr"] * n["n2"], z["sr"] * n["n1"]),  # W_n
        ):
            blocks.append(Block(mean, mean, square, square, square, joint, joint, joint, joint))
        classes.append(UnitClass(weight, z["s"], z["s"], z["ss"], z["ss"], z["ss"], tuple(blocks)))
    return total, classes


def _lstm_cell_moments(cell_var: float, forget_bias: float, input_bias: float, var: float) -> dict[str, float]:
    """One step's joint moments over c ~ N(0, cell_var) (the old cell state, taken Gaussian), a_f, a_i, a_g
    (independent, variance var; a_g's mean 0) with c' = f c + i g, f = sigmoid(a_f), i = sigmoid(a_i),
    g = tanh(a_g), A = tanh(c'), D = A' = 1 - A^2, and k_f = c f', k_i = g i', k_g = i g'. Keys name the
    integrand: e.g. "f D" = E[f D], "kf2 DD" = E[k_f^2 D^2]. The i, g nodes are summed first for each
    old-state node (a 4-d trapezoid rule, one old-state node at a time)."""
    c, wc = normal_nodes(0.0, cell_var, most=LSTM_MAX_NODES)
    af, wf = normal_nodes(forget_bias, var, most=LSTM_MAX_NODES)
    ai, wi = normal_nodes(input_bias, var, most=LSTM_MAX_NODES)
    ag, wg = normal_nodes(0.0, var, most=LSTM_MAX_NODES)
    f, i, g = _sigmoid(af), _sigmoid(ai), np.tanh(ag)
    forget_slope = f * (1 - f)
    y = i[:, None] * g[None, :]
    pair = wi[:, None] * wg[None, :]
    ki = g[None, :] * (i * (1 - i))[:, None]
    kg = i[:, None] * (1 - g * g)[None, :]
    inner_weights = {"1": pair, "ki": pair * ki, "ki2": pair * ki**2, "kg": pair * kg, "kg2": pair * kg**2}
    psi_names = ("D", "DD", "A", "AA", "AD")
    # inner[(psi, phi)][c, f] = sum over (i, g) of weights * phi * psi(f c + y)
    inner = {(p, k): np.empty((len(c), len(f))) for p in psi_names for k in inner_weights}
    for index, old in enumerate(c):
        A = np.tanh((old * f)[:, None, None] + y[None, :, :])
        D = 1 - A * A
        psis = {"D": D, "DD": D * D, "A": A, "AA": A * A, "AD": A * D}
        for p, values in psis.items():
            flat = values.reshape(len(f), -1)
            for k, weights in inner_weights.items():
                inner[(p, k)][index] = flat @ weights.ravel()
    outer = {  # functions of (c, a_f), as (c, f) arrays
        "1": np.ones((len(c), len(f))),
        "f": np.broadcast_to(f, (len(c), len(f))),
        "ff": np.broadcast_to(f * f, (len(c), len(f))),
        "kf": c[:, None] * forget_slope[None, :],
        "kf2": (c[:, None] * forget_slope[None, :]) ** 2,
        "f kf": c[:, None] * (f * forget_slope)[None, :],
    }
    cf = wc[:, None] * wf[None, :]
    out: dict[str, float] = {}
    for name, values in outer.items():
        for p in ("1",) + psi_names:
            for k in inner_weights:
                if p == "1":  # the psi-free moments factorise
                    out[f"{name} {k} 1"] = float(np.sum(cf * values)) * float(np.sum(inner_weights[k]))
                else:
                    out[f"{name} {k} {p}"] = float(np.sum(cf * values * inner[(p, k)]))
    return out


def lstm_units(activation: str, scale: float, input_var: float, biases: Biases) -> tuple[float, list[UnitClass]]:
    """lstm (torch's): i, f, o = sigmoid(.), g = tanh(.), c' = f c + i g, h' = o tanh(c'). Forward: q =
    input_var + scale^2 Q as for the gru; per class E[c^2] = E[i^2] E[g^2] / (1 - E[f^2]) and Q_k = E[o^2]
    E[tanh(c)^2], c taken Gaussian. Backward, on the joint state (h, c): with delta = dL/dc' + o tanh'(c')
    dL/dh', dL/dc = f delta is the memory (F_y = f, F_x = f o tanh'(c')) and dL/dh = sum_B W_B^T(...) the
    fields: blocks f, i, g with p = k_B (k_f = c f', k_i = g i', k_g = i g'), q = k_B o tanh'(c'), and o with
    p = 0, q = tanh(c') o'. k_g's mean E[i] E[g'] > 0 correlates the fields across steps. dL/dh grows by
    the same Lambda as the joint state."""

    def per_class(total: float) -> list[tuple[dict, dict, dict, float, float]]:
        var = input_var + scale**2 * total
        g_square = _tanh_square(var)
        out = []
        for _, (input_bias, forget_bias, output_bias) in biases:
            gi, gf, go = (_gate_moments(b, var) for b in (input_bias, forget_bias, output_bias))
            cell_var = gi["ss"] * g_square / (1 - gf["ss"])
            out.append((gi, gf, go, cell_var, go["ss"] * _tanh_square(cell_var)))
        return out

    def step(total: float) -> float:
        return sum(weight * values[-1] for (weight, _), values in zip(biases, per_class(total)))

    total = _fixed_point(step, 1.0)
    var = input_var + scale**2 * total
    classes = []
    for (weight, (input_bias, forget_bias, _)), (_, _, go, cell_var, _) in zip(biases, per_class(total)):
        m = _lstm_cell_moments(cell_var, forget_bias, input_bias, var)
        o, oo, od, odd, osd = go["s"], go["ss"], go["d"], go["dd"], go["sd"]
        blocks = []
        # Each of W_f, W_i, W_g by where its k, k^2 and f k live: (function of (c, a_f), of (a_i, a_g)).
        for k, k2, fk in (
            (("kf", "1"), ("kf2", "1"), ("f kf", "1")),
            (("1", "ki"), ("1", "ki2"), ("f", "ki")),
            (("1", "kg"), ("1", "kg2"), ("f", "kg")),
        ):
            blocks.append(
                Block(
                    P=m[f"{k[0]} {k[1]} 1"],
                    Q=o * m[f"{k[0]} {k[1]} D"],
                    pp=m[f"{k2[0]} {k2[1]} 1"],
                    pq=o * m[f"{k2[0]} {k2[1]} D"],
                    qq=oo * m[f"{k2[0]} {k2[1]} DD"],
                    Fyp=m[f"{fk[0]} {fk[1]} 1"],
                    Fyq=o * m[f"{fk[0]} {fk[1]} D"],
                    Fxp=o * m[f"{fk[0]} {fk[1]} D"],
                    Fxq=oo * m[f"{fk[0]} {fk[1]} DD"],
                )
            )
        blocks.append(  # W_o: p = 0, q = tanh(c') o'
            Block(
                P=0.0,
                Q=od * m["1 1 A"],
                pp=0.0,
                pq=0.0,
                qq=odd * m["1 1 AA"],
                Fyp=0.0,
                Fyq=od * m["f 1 A"],
                Fxp=0.0,
                Fxq=osd * m["f 1 AD"],
            )
        )
        classes.append(
            UnitClass(
                weight,
                Fy=m["f 1 1"],
                Fx=o * m["f 1 D"],
                FyFy=m["ff 1 1"],
                FxFy=o * m["ff 1 D"],
                FxFx=oo * m["ff 1 DD"],
                blocks=tuple(blocks),
            )
        )
    return total, classes


# A gated cell's wide-limit step: (activation, scale, input_var, biases) -> (Q, its classes' moments).
Units = Callable[[str, float, float, Biases], tuple[float, list[UnitClass]]]


def unit_classes(per_unit: np.ndarray, keep: int, most: int = MAX_UNIT_CLASSES) -> Biases:
    """Per-unit gate biases (units x gates, in the cell's Biases order) as classes (share, biases): the
    distinct rows where there are at most `most`, else `most` equal shares of the units sorted by the bias
    of the gate that keeps the state (column `keep`), each at its members' mean biases."""
    rows = np.round(np.asarray(per_unit, dtype=float), 12)
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    if len(distinct) <= most:
        return tuple((count / len(rows), tuple(float(b) for b in row)) for row, count in zip(distinct, counts))
    order = np.argsort(rows[:, keep], kind="stable")
    return tuple(
        (len(part) / len(rows), tuple(float(b) for b in rows[part].mean(axis=0)))
        for part in np.array_split(order, most)
    )


def chrono_biases(tmax: int, most: int = MAX_UNIT_CLASSES) -> tuple[np.ndarray, float]:
    """Chrono init's b = ln(1 + U (tmax - 2)), U ~ U[0, 1] (harness.core.init.chrono) in expectation:
    `most` equal shares of U at their mean b, and E[b^2]."""
    u = (np.arange(most * 1000) + 0.5) / (most * 1000)
    b = np.log1p(u * (tmax - 2))
    return b.reshape(most, -1).mean(axis=1), float(np.mean(b**2))


def gated_rate(units: Units, activation: str, scale: float, input_var: float, biases: Biases) -> float:
    """The wide-limit rate ln Lambda (nats per step back) of a one-layer gated cell at Gaussian init."""
    _, classes = units(activation, scale, input_var, biases)
    return math.log(backward_gain(classes, scale))


def gated_factorised_rate(units: Units, activation: str, scale: float, input_var: float, biases: Biases) -> float:
    """The same from the per-step factorised chi (factorised_gain): for comparison."""
    _, classes = units(activation, scale, input_var, biases)
    return math.log(factorised_gain(classes, scale))


def _log_root(function: Callable[[float], float], low: float, high: float, rtol: float) -> float:
    """x in [low, high] with function(x) = 0, function(low) < 0 < function(high): regula falsi (Illinois)
    on ln x, a few evaluations for a smooth function."""
    a, b = math.log(low), math.log(high)
    fa, fb = function(low), function(high)
    side = 0
    for _ in range(100):
        x = (a * fb - b * fa) / (fb - fa)
        fx = function(math.exp(x))
        if fx < 0:
            a, fa = x, fx
            if side == -1:
                fb /= 2
            side = -1
        else:
            b, fb = x, fx
            if side == 1:
                fa /= 2
            side = 1
        if b - a < rtol or fx == 0:
            break
    return math.exp(0.5 * (a + b)) if fx != 0 else math.exp(x)


def _critical_scale(rate: Callable[[float], float], high: float) -> float:
    """The scale at which rate crosses 0, to 1e-6 relative: bracketed by doubling or halving from scale 1
    (a wide scale costs the most), then regula falsi; nan if it is still negative at `high` or already
    positive at 1e-3."""
    low, upper = 1.0, 1.0
    if rate(1.0) < 0:
        while rate(upper) < 0:
            low, upper = upper, 2 * upper
            if upper > high:
                return math.nan
    else:
        while rate(low) >= 0:
            low, upper = low / 2, low
            if low < 1e-3:
                return math.nan
    return _log_root(rate, low, upper, rtol=1e-6)


@functools.lru_cache(maxsize=256)
def gated_critical_scale(units: Units, activation: str, input_var: float, biases: Biases, high: float = 16.0) -> float:
    """The scale at which the gated rate crosses 0 (Lambda = 1): _critical_scale of gated_rate."""
    return _critical_scale(lambda s: gated_rate(units, activation, s, input_var, biases), high)


@functools.lru_cache(maxsize=256)
def gated_factorised_critical_scale(
    units: Units, activation: str, input_var: float, biases: Biases, high: float = 16.0
) -> float:
    """The same for the factorised chi (for comparison)."""
    return _critical_scale(lambda s: gated_factorised_rate(units, activation, s, input_var, biases), high)


def gated_mean_field(
    units: Units, activation: str, scale: float, input_var: float, biases: Biases
) -> tuple[float, float]:
    """(rate, critical scale) of a one-layer gated cell (what its network's mean_field answers)."""
    input_var = max(float(input_var), 0.0)
    return (
        gated_rate(units, activation, scale, input_var, biases),
        gated_critical_scale(units, activation, input_var, biases),
    )


def gated_mean_field_curve(
    units: Units, activation: str, scales: np.ndarray, input_var: float, biases: Biases
) -> np.ndarray:
    """The gated rate at many scales (the phase figure's dense curve; one solve per scale)."""
    input_var = max(float(input_var), 0.0)
    return np.array([gated_rate(units, activation, float(s), input_var, biases) for s in np.asarray(scales, float)])
