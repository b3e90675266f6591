"""Fits of a gradient-norm profile: how fast ||dL/dh_{T-k}|| changes per step back.

rate         least-squares slope of ln||dL/dh_{T-k}|| against the lag k, in nats per step
             (< 0 vanishing, > 0 exploding), over lags k >= 1 where the norm is finite: lag 0 is the
             loss's own step (for the lstm's c it is exactly 0, see harness.gradients).
gain_per_step  e^rate, the factor the norm changes by per step back.
half_life    steps for the norm to halve (vanishing) or double (exploding): ln 2 / |rate|.
regime       vanishing if rate < -STABLE_TOLERANCE, exploding if rate > STABLE_TOLERANCE, else stable.
log10_gain   end to end: log10 norm at the largest lag minus at lag 0.
"""
from __future__ import annotations

import math

import numpy as np

# 0.01 nats per step: a 1% change of the norm per step, or a factor e over 100 steps.
STABLE_TOLERANCE = 0.01


def regime(rate: float) -> str:
    if math.isnan(rate):
        return "undetermined"
    if rate < -STABLE_TOLERANCE:
        return "vanishing"
    return "exploding" if rate > STABLE_TOLERANCE else "stable"


def fit_profile(lag: np.ndarray, log10_norm: np.ndarray) -> dict[str, float | str]:
    """Fit one profile (a lag and a log10 norm per step back); see the module docstring."""
    lag, log10_norm = np.asarray(lag, dtype=float), np.asarray(log10_norm, dtype=float)
    order = np.argsort(lag)
    lag, log10_norm = lag[order], log10_norm[order]
    use = (lag >= 1) & np.isfinite(log10_norm)
    rate = math.nan
    if use.sum() >= 2:
        rate = float(np.polyfit(lag[use], log10_norm[use] * math.log(10), 1)[0])
    return {
        "rate": rate,
        "gain_per_step": math.exp(rate),
        "half_life": math.log(2) / abs(rate) if rate else math.inf,
        "regime": regime(rate),
        "log10_gain": float(log10_norm[-1] - log10_norm[0]) if len(lag) else math.nan,
    }
