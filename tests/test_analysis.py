"""The per-run fit on synthetic profiles with known rates."""
import math

import numpy as np
import pytest

from harness.analysis import STABLE_TOLERANCE, fit_profile, regime


@pytest.mark.parametrize("gain", [0.5, 0.9, 0.999, 1.0, 1.05, 2.0])
def test_fit_recovers_a_geometric_profile(gain):
    lag = np.arange(0, 101)
    fit = fit_profile(lag, lag * math.log10(gain))
    assert fit["rate"] == pytest.approx(math.log(gain), abs=1e-12)
    assert fit["gain_per_step"] == pytest.approx(gain)
    assert fit["log10_gain"] == pytest.approx(100 * math.log10(gain), abs=1e-9)
    if gain != 1.0:
        assert fit["half_life"] == pytest.approx(math.log(2) / abs(math.log(gain)))


def test_fit_skips_the_loss_step_and_non_finite_points():
    lag = np.arange(0, 50)
    log10 = lag * math.log10(0.8)
    log10[0] = 3.0  # the loss's own step, not on the line
    log10[40:] = -np.inf  # underflow
    fit = fit_profile(lag[::-1], log10[::-1])  # order does not matter
    assert fit["rate"] == pytest.approx(math.log(0.8))


def test_regime_tolerance():
    assert regime(-2 * STABLE_TOLERANCE) == "vanishing"
    assert regime(0.5 * STABLE_TOLERANCE) == "stable"
    assert regime(2 * STABLE_TOLERANCE) == "exploding"
    assert regime(math.nan) == "undetermined"
    assert fit_profile(np.array([0, 1]), np.array([0.0, -np.inf]))["regime"] == "undetermined"
