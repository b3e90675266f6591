"""Fits on synthetic profiles with known rates, noise and transients."""

import math

import numpy as np
import pytest
import torch

from harness.core.analysis import STABLE_TOLERANCE, fit_profile, fit_window, regime
from harness.lab.fits import fit_runs, headline
from harness.lab.tables import profile_frame


def synthetic(rate: float, seq_len: int = 200, noise: float = 0.0, transient: float = 0.0, seed: int = 0):
    """ln-norm profile: rate per step back, plus noise, plus a bump at both ends (the transients)."""
    rng = np.random.default_rng(seed)
    lag = np.arange(seq_len + 1)
    ln = rate * lag + noise * rng.standard_normal(len(lag))
    edge = np.exp(-lag / 3) - np.exp(-(seq_len - lag) / 3)  # up near the loss, down near h_0
    ln += transient * edge
    return lag, ln / math.log(10)


@pytest.mark.parametrize("gain", [0.5, 0.9, 0.999, 1.0, 1.05, 2.0])
def test_fit_recovers_a_geometric_profile(gain):
    lag, log10 = synthetic(math.log(gain), seq_len=100)
    fit = fit_profile(lag, log10)
    assert fit["rate"] == pytest.approx(math.log(gain), abs=1e-12)
    assert fit["gain_per_step"] == pytest.approx(gain)
    assert fit["log10_gain"] == pytest.approx(100 * math.log10(gain), abs=1e-9)
    if gain != 1.0:
        assert fit["half_life"] == pytest.approx(math.log(2) / abs(math.log(gain)))


@pytest.mark.parametrize("rate", [-0.3, -0.02, 0.05])
def test_fit_is_robust_to_noise_and_edge_transients(rate):
    lag, log10 = synthetic(rate, seq_len=300, noise=0.5, transient=20.0, seed=1)
    ln = log10 * math.log(10)
    naive = np.polyfit(lag, ln, 1)[0]  # least squares over every lag, transients included
    fit = fit_profile(lag, log10)
    assert abs(fit["rate"] - rate) < 0.005 < abs(naive - rate)


def test_fit_ignores_outliers():
    lag, log10 = synthetic(-0.1, seq_len=200)
    log10[[50, 90, 120]] += 30  # three wild points (a nan in another batch, say)
    assert fit_profile(lag, log10)["rate"] == pytest.approx(-0.1, abs=1e-9)


def test_window_rule():
    assert fit_window(100) == (10, 90)
    assert fit_window(2000) == (200, 1800)
    assert fit_window(20) == (2, 18)
    assert fit_window(2) == (1, 2)


def test_underflow_is_fitted_on_the_finite_part_and_flagged():
    lag, log10 = synthetic(-0.4, seq_len=200)
    log10[lag > 95] = -np.inf  # autograd in float32 underflows at 1e-38
    fit = fit_profile(lag[::-1], log10[::-1])  # order does not matter
    assert fit["rate"] == pytest.approx(-0.4) and fit["truncated"]
    assert fit["fit_points"] == 95 - 20 + 1
    assert not fit_profile(*synthetic(-0.4))["truncated"]


def test_regime_tolerance():
    assert regime(-2 * STABLE_TOLERANCE) == "vanishing"
    assert regime(0.5 * STABLE_TOLERANCE) == "stable"
    assert regime(2 * STABLE_TOLERANCE) == "exploding"
    assert regime(math.nan) == "undetermined"
    assert fit_profile(np.array([0, 1]), np.array([0.0, -np.inf]))["regime"] == "undetermined"


def test_fit_runs_per_layer_and_state_with_the_loss_gradient_as_reference():
    """A 2-layer lstm profile whose blocks decay at known, different rates."""
    seq_len, batch = 50, 3
    lag = torch.arange(seq_len, -1, -1, dtype=torch.float64)  # t = 0..T
    rates = torch.tensor([-0.1, -0.2, -0.3, -0.4], dtype=torch.float64)  # l0 h, l0 c, l1 h, l1 c
    offsets = torch.tensor([-1.0, -2.0, 0.0, 0.5], dtype=torch.float64)
    log_norms = (rates * lag[:, None] + offsets).unsqueeze(1).expand(-1, batch, -1).clone()
    log_norms[-1, :, 3] = -math.inf  # the lstm's c at the loss step
    frame = profile_frame(log_norms, "r1", {"cell": "lstm", "num_layers": 2, "scale": 1.0}, ("h", "c"))
    fits = fit_runs(frame).set_index(["layer", "state"])
    for part, (layer, state) in enumerate([(0, "h"), (0, "c"), (1, "h"), (1, "c")]):
        fit = fits.loc[(layer, state)]
        assert fit.rate == pytest.approx(rates[part].item())
        # End to end, against the loss's own gradient on the top h at lag 0 (ln = 0 there).
        expected = (rates[part] * seq_len + offsets[part]).item() / math.log(10)
        assert fit.log10_gain == pytest.approx(expected)
        assert fit.cell == "lstm" and fit.scale == 1.0
    assert len(headline(fit_runs(frame))) == 1 and headline(fit_runs(frame)).iloc[0].layer == 1


# ---------------------------------------------------------------------------------------------------
# the gradient horizon: the first lag 3 decades (a parameter) below lag 0, censored at seq_len
# ---------------------------------------------------------------------------------------------------


def test_horizon_of_written_profiles():
    from harness.core.analysis import horizon

    lag = np.arange(50.0)
    assert horizon(lag, -0.1 * lag) == (30.0, False)  # -3.0 at lag 30 exactly
    assert horizon(lag, -0.1 * lag, decades=1.5) == (15.0, False)
    assert horizon(lag, -0.01 * lag) == (49.0, True)  # never 3 decades down: censored at the last lag
    with_zero_at_0 = np.where(lag == 0, -np.inf, -0.2 * lag)  # a lower layer's state adjoint at the loss step
    assert horizon(lag, with_zero_at_0) == (16.0, False)  # from lag 1's -0.2: -3.2 first at lag 16
    assert math.isnan(horizon(lag, np.full(50, -np.inf))[0])


class LinearScalarCell(torch.nn.Module):
    """h_t = w h_{t-1} + x_t: dL_s/dh_{s-k} = w^k dL_s/dh_s exactly."""

    hidden_size = 1

    def __init__(self, w: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x, h):
        return self.w * h + x


@pytest.mark.parametrize("w, decades, expected", [(0.5, 3, 10), (0.9, 3, 66), (0.9, 1, 22), (0.99, 3, 80)])
def test_horizon_of_a_linear_scalar_rnn_is_the_closed_form(w, decades, expected):
    """|w|^k first falls `decades` below 1 at k = ceil(decades / -log10 |w|); censored at seq_len = 80."""
    import harness

    assert expected == min(math.ceil(decades / -math.log10(w)), 80)
    x = torch.randn(80, 2, 1, dtype=torch.float64)
    profile = harness.record(LinearScalarCell(w), x, sources=80)
    fit = profile.fit(horizon_decades=decades)
    assert fit["horizon"] == expected and fit["horizon_censored"] == (expected == 80)


def test_profile_fit_equals_the_fit_of_its_table_rows():
    """GradientProfile.fit takes the batch median from log_norms directly; the table's rows are the reference."""
    import harness

    torch.manual_seed(0)
    profile = harness.record(torch.nn.LSTM(3, 8, 2), torch.randn(40, 4, 3), sources=12)
    for layer in (0, 1):
        for state in ("h", "c"):
            rows = profile.block(layer, state)
            expected = fit_profile(rows.lag.to_numpy(), rows.log10_norm.to_numpy())
            actual = profile.fit(layer, state)
            for key, value in expected.items():
                assert actual[key] == value or (value != value and actual[key] != actual[key]), (key, layer, state)
