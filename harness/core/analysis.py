"""Fits of gradient-norm profiles: how fast ||dL/dh_{T-k}|| changes per step back.

For one profile (a run's layer and state at one training step), with T = seq_len:

window       lags k in [ceil(0.1 T), T - ceil(0.1 T)], and never lag 0. This leaves out the transient
             near the loss (the first Jacobians see the readout's direction, not the typical one; the
             lstm's c is exactly 0 at lag 0) and near h_0 = 0 (the state has not reached its
             stationary spread yet). Below T = 3 the window is every lag >= 1.
rate         the Theil-Sen slope (median of pairwise slopes, robust to noise and outliers) of
             ln||dL/dh_{T-k}|| against k over the window's finite points, in nats per step:
             < 0 vanishing, > 0 exploding. Points where the norm is 0 or inf (autograd underflow or
             overflow) are left out and the fit is flagged `truncated`.
gain_per_step  e^rate, the factor the norm changes by per step back.
half_life    steps for the norm to halve (vanishing) or double (exploding): ln 2 / |rate|.
regime       vanishing if rate < -STABLE_TOLERANCE, exploding if rate > STABLE_TOLERANCE, else stable;
             undetermined when fewer than 2 finite points remain.
log10_gain   end to end: log10 of ||dL/ds_0|| / ||dL/dh_T||, this state at t = 0 against the gradient
             the loss puts on the top layer's h_T (for the rnn and gru the profile's own lag 0).
             NaN where an end was not measured: a recording whose forward pass overflowed has nan rows
             (harness.core.recorders.leave_out_overflow), never the -inf of a zero read through inf.
decay_law    which law the profile follows over the window: exponential (ln-norm = a + r k) or power
             (ln-norm = a + p ln(k+1), how linear recurrent units near the unit circle forget), chosen by
             held-out extrapolation: both are fitted (Theil-Sen) on the nearer two thirds of the window's
             lags and the law whose prediction of the farther third has the smaller median absolute
             residual wins. `flat` when both fits over the whole window change the norm by less than a
             factor FLAT_FACTOR end to end; `undetermined` with fewer than MIN_LAW_POINTS finite points.
             A power-law profile's `rate` is only the window's average exponential slope (it depends on
             the window); read power_exponent there.
horizon      how far back the gradient reaches: the first lag k at which the profile has fallen
             horizon_decades (default HORIZON_DECADES = 3) decades below its value at lag 0, or, where
             that is exactly zero by construction (the state adjoint of a lower layer's h or of an lstm's
             c at the loss step itself), at the first lag where it is not. When it never does within the
             sequence it is censored: horizon = seq_len and horizon_censored = true (the reach is at
             least that); nan when no lag is finite. Read it on the dependency view
             (record(..., sources=N)), where lag 0 is each loss step's own output; on the adjoint view
             it is measured from dL/dh_T.
power_exponent  p, the log-log slope of the norm against k + 1 over the window (Theil-Sen), for every
             profile; -0.5 for an lru with the ring 0..1 (theory.closed_form_profile).
"""

from __future__ import annotations

import math

import numpy as np

# 0.01 nats per step: the norm changes by under 1% per step, a factor e at most over 100 steps.
STABLE_TOLERANCE = 0.01
EDGE_FRACTION = 0.1  # of the lags, left out at each end of the window
MAX_FIT_POINTS = 256  # Theil-Sen is quadratic in the points; long profiles are thinned evenly
FLAT_FACTOR = 1.25  # a profile that changes by less than this factor across its window is flat
MIN_LAW_POINTS = 8  # enough points to hold a third out and still fit two parameters on the rest
DECAY_LAWS = ("exponential", "power", "flat", "undetermined")
HORIZON_DECADES = 3.0  # a gradient 1000x below the loss step's own is, for learning, out of reach

FIT_COLUMNS = [
    "rate",
    "gain_per_step",
    "half_life",
    "regime",
    "decay_law",
    "power_exponent",
    "log10_gain",
    "fit_lag_min",
    "fit_lag_max",
    "fit_points",
    "truncated",
    "horizon",
    "horizon_censored",
]


def regime(rate: float) -> str:
    if math.isnan(rate):
        return "undetermined"
    if rate < -STABLE_TOLERANCE:
        return "vanishing"
    return "exploding" if rate > STABLE_TOLERANCE else "stable"


def fit_window(seq_len: int) -> tuple[int, int]:
    """The lags [first, last] a profile of seq_len steps is fitted on (see the module docstring)."""
    if seq_len < 3:
        return 1, max(seq_len, 1)
    edge = math.ceil(EDGE_FRACTION * seq_len)
    return max(edge, 1), seq_len - edge


def theil_sen(x: np.ndarray, y: np.ndarray) -> float:
    """Median of the slopes between all pairs of points (Sen 1968)."""
    if len(x) > MAX_FIT_POINTS:
        keep = np.linspace(0, len(x) - 1, MAX_FIT_POINTS).round().astype(int)
        x, y = x[keep], y[keep]
    i, j = np.triu_indices(len(x), k=1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def held_out_residual(x: np.ndarray, y: np.ndarray, near: np.ndarray) -> float:
    """Fit y = a + b x (Theil-Sen slope, median intercept) on the `near` points; the median absolute
    residual of its prediction on the others."""
    slope = theil_sen(x[near], y[near])
    intercept = float(np.median(y[near] - slope * x[near]))
    return float(np.median(np.abs(y[~near] - (intercept + slope * x[~near]))))


def decay_law(lag: np.ndarray, ln_norm: np.ndarray) -> tuple[str, float]:
    """(decay_law, power_exponent) of a profile's finite window points (see the module docstring)."""
    if len(lag) < MIN_LAW_POINTS:
        return "undetermined", math.nan
    log_lag = np.log1p(lag)
    rate, power = theil_sen(lag, ln_norm), theil_sen(log_lag, ln_norm)
    change = max(abs(rate) * np.ptp(lag), abs(power) * np.ptp(log_lag))
    if change < math.log(FLAT_FACTOR):
        return "flat", power
    near = lag <= lag.min() + 2 / 3 * np.ptp(lag)
    exponential = held_out_residual(lag, ln_norm, near)
    return ("exponential" if exponential <= held_out_residual(log_lag, ln_norm, near) else "power"), power


def horizon(lag: np.ndarray, log10_norm: np.ndarray, decades: float = HORIZON_DECADES) -> tuple[float, bool]:
    """(horizon, censored) of a profile sorted by lag from 0 (see the module docstring)."""
    finite = np.flatnonzero(np.isfinite(log10_norm))
    if not len(finite):
        return math.nan, False
    first = finite[0]
    with np.errstate(invalid="ignore"):  # nan (no source reaches the lag) is never below
        below = first + np.flatnonzero(log10_norm[first:] <= log10_norm[first] - decades)
    return (float(lag[below[0]]), False) if len(below) else (float(lag[-1]), True)


def fit_profile(
    lag: np.ndarray,
    log10_norm: np.ndarray,
    log10_reference: float | None = None,
    horizon_decades: float = HORIZON_DECADES,
) -> dict:
    """Fit one profile (a log10 norm per lag); log10_reference defaults to the profile's lag 0."""
    lag, log10_norm = np.asarray(lag, dtype=float), np.asarray(log10_norm, dtype=float)
    order = np.argsort(lag)
    lag, log10_norm = lag[order], log10_norm[order]
    first, last = fit_window(int(lag[-1]))
    window = (lag >= first) & (lag <= last)
    use = window & np.isfinite(log10_norm)
    rate = theil_sen(lag[use], log10_norm[use] * math.log(10)) if use.sum() >= 2 else math.nan
    law, power = decay_law(lag[use], log10_norm[use] * math.log(10))
    reference = log10_norm[0] if log10_reference is None else log10_reference
    with np.errstate(invalid="ignore"):  # inf - inf (a run that overflowed at both ends) is nan: data
        log10_gain = float(log10_norm[-1] - reference)
    reach, censored = horizon(lag, log10_norm, horizon_decades)
    return {
        "rate": rate,
        "gain_per_step": math.exp(rate),
        "half_life": math.log(2) / abs(rate) if rate else math.inf,
        "regime": regime(rate),
        "decay_law": law,
        "power_exponent": power,
        "log10_gain": log10_gain,
        "fit_lag_min": first,
        "fit_lag_max": last,
        "fit_points": int(use.sum()),
        "truncated": bool(use.sum() < window.sum()),
        "horizon": reach,
        "horizon_censored": censored,
    }
