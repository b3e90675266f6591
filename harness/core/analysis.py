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
"""
from __future__ import annotations

import math

import numpy as np

# 0.01 nats per step: the norm changes by under 1% per step, a factor e at most over 100 steps.
STABLE_TOLERANCE = 0.01
EDGE_FRACTION = 0.1  # of the lags, left out at each end of the window
MAX_FIT_POINTS = 256  # Theil-Sen is quadratic in the points; long profiles are thinned evenly

FIT_COLUMNS = ["rate", "gain_per_step", "half_life", "regime", "log10_gain", "fit_lag_min", "fit_lag_max",
               "fit_points", "truncated"]


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


def fit_profile(lag: np.ndarray, log10_norm: np.ndarray, log10_reference: float | None = None) -> dict:
    """Fit one profile (a log10 norm per lag); log10_reference defaults to the profile's lag 0."""
    lag, log10_norm = np.asarray(lag, dtype=float), np.asarray(log10_norm, dtype=float)
    order = np.argsort(lag)
    lag, log10_norm = lag[order], log10_norm[order]
    first, last = fit_window(int(lag[-1]))
    window = (lag >= first) & (lag <= last)
    use = window & np.isfinite(log10_norm)
    rate = theil_sen(lag[use], log10_norm[use] * math.log(10)) if use.sum() >= 2 else math.nan
    reference = log10_norm[0] if log10_reference is None else log10_reference
    return {
        "rate": rate,
        "gain_per_step": math.exp(rate),
        "half_life": math.log(2) / abs(rate) if rate else math.inf,
        "regime": regime(rate),
        "log10_gain": float(log10_norm[-1] - reference),
        "fit_lag_min": first,
        "fit_lag_max": last,
        "fit_points": int(use.sum()),
        "truncated": bool(use.sum() < window.sum()),
    }
