"""Theory: quadrature against closed forms, the linear prediction, Lyapunov against the exact recorder."""

import math

import numpy as np
import pytest
import torch

from harness.core.analysis import fit_profile
from harness.core.recorders import record_log_norms
from harness.core.spec import RunSpec
from harness.core.theory import (
    gaussian_moments,
    jvp,
    linear_rate,
    lyapunov_exponent,
    mean_field_critical_scale,
    mean_field_curve,
    mean_field_fixed_point,
    mean_field_rate,
    predictions,
)
from tests.conftest import build, unroll


@pytest.mark.parametrize("scale", [0.3, 0.9, 1.0, 1.7, 3.0])
def test_identity_mean_field_is_ln_scale(scale):
    assert mean_field_rate("identity", scale, drive_var=0.7) == pytest.approx(math.log(scale), abs=1e-12)


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.2, 2.0, 3.0])
def test_relu_mean_field_with_zero_drive(scale):
    """chi = scale^2 P(u > 0) = scale^2 / 2 whatever q is."""
    assert mean_field_rate("relu", scale, drive_var=0.0) == pytest.approx(0.5 * math.log(scale**2 / 2), abs=1e-12)


def test_relu_critical_scale_is_root_two():
    assert mean_field_critical_scale("relu", 0.0) == pytest.approx(math.sqrt(2), rel=1e-6)


def test_gaussian_moments_against_closed_forms_and_monte_carlo():
    for q in (0.01, 0.5, 4.0, 100.0):
        second, slope = gaussian_moments("identity", q)
        assert second == pytest.approx(q, rel=1e-9) and slope == pytest.approx(1.0, abs=1e-12)
        # relu: E[relu(u)^2] = q / 2
        assert gaussian_moments("relu", q)[0] == pytest.approx(q / 2, rel=1e-9)
        # erf-gelu at q: a million-sample Monte Carlo, independent of the quadrature
        u = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * math.sqrt(q)
        mc = (torch.nn.functional.gelu(u) ** 2).mean().item()
        assert gaussian_moments("gelu", q)[0] == pytest.approx(mc, rel=5e-3)


def test_tanh_fixed_point_and_criticality():
    q = mean_field_fixed_point("tanh", 1.5, drive_var=0.5)
    assert q == pytest.approx(1.5**2 * gaussian_moments("tanh", q)[0] + 0.5, rel=1e-9)
    # With no drive, tanh is critical at scale 1 (chi = scale^2 tanh'(0)^2 at q* = 0).
    assert mean_field_critical_scale("tanh", 0.0) == pytest.approx(1.0, abs=1e-3)
    critical = mean_field_critical_scale("tanh", 1.0)
    assert mean_field_rate("tanh", critical, 1.0) == pytest.approx(0.0, abs=1e-5)
    assert mean_field_fixed_point("relu", 2.0, 1.0) == math.inf  # scale^2 / 2 > 1: the forward pass grows


@pytest.mark.parametrize("init", ["orthogonal", "identity"])
def test_linear_gain_over_k_steps_is_exactly_scale_to_the_k(init):
    model, batch = build("rnn", activation="identity", init=init, scale=0.8, hidden_size=16, seq_len=60)
    states, loss = unroll(model, batch)
    log_norms = record_log_norms(loss, states, model.block_sizes, "exact")[:, :, 0]
    lag = torch.arange(60, -1, -1, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(log_norms - log_norms[-1], lag * math.log(0.8) * torch.ones_like(log_norms))
    assert linear_rate(model) == pytest.approx(math.log(0.8), abs=1e-12)


def test_linear_rate_is_the_asymptotic_rate_of_a_gaussian_linear_rnn():
    model, batch = build(
        "rnn", activation="identity", init="gaussian", scale=1.0, hidden_size=24, seq_len=600, batch_size=4, seed=3
    )
    states, loss = unroll(model, batch)
    log10 = (record_log_norms(loss, states, model.block_sizes, "exact")[:, :, 0] / math.log(10)).median(dim=1).values
    fit = fit_profile(np.arange(600, -1, -1), log10.numpy())
    assert fit["rate"] == pytest.approx(linear_rate(model), abs=0.01)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_jvp_equals_forward_mode_autograd(cell):
    import torch.autograd.forward_ad as fwAD

    model, batch = build(cell, scale=1.7, num_layers=2)
    state = torch.randn(3, model.num_parts * model.hidden_size, dtype=torch.float64)
    tangent = torch.randn_like(state)
    drive = model.input_drive(batch.inputs)[0].detach()
    new, pushed = jvp(lambda s: model.step(s, drive), state, tangent)
    with torch.no_grad(), fwAD.dual_level():
        dual = model.step(fwAD.make_dual(state, tangent), drive)
        expected_new, expected_pushed = fwAD.unpack_dual(dual)
    torch.testing.assert_close(new, expected_new, rtol=0, atol=0)
    torch.testing.assert_close(pushed, expected_pushed, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell,scale", [("rnn", 0.8), ("rnn", 2.5), ("lstm", 1.0), ("gru", 2.0)])
def test_lyapunov_exponent_equals_the_exact_recorders_rate(cell, scale):
    model, batch = build(cell, init="gaussian", scale=scale, hidden_size=32, input_size=32, seq_len=400, batch_size=8)
    states, loss = unroll(model, batch)
    log10 = (record_log_norms(loss, states, model.block_sizes, "exact")[:, :, 0] / math.log(10)).median(dim=1).values
    rate = fit_profile(np.arange(400, -1, -1), log10.numpy())["rate"]
    exponent = lyapunov_exponent(model, batch.inputs, torch.Generator().manual_seed(1))
    assert exponent == pytest.approx(rate, abs=0.02)


def test_predictions_say_where_they_do_not_apply():
    model, batch = build("lstm", init="orthogonal")
    run = RunSpec.from_columns(
        {"cell": "lstm", "num_layers": 1, "activation": "tanh", "init": "orthogonal", "scale": 1.0}
    )
    out = predictions(model, run, batch.inputs, 1.0, torch.Generator().manual_seed(0))
    assert math.isnan(out["theory_mean_field"]) and math.isnan(out["theory_linear"])
    assert math.isfinite(out["theory_lyapunov"])
    assert "mean field: the lstm's is derived for init=gaussian" in out["theory_note"], out["theory_note"]
    assert "linear: needs" in out["theory_note"]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity", "leaky_relu", "gelu", "softsign"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_cells_own_jvp_equals_the_autograd_jacobian(cell, activation, num_layers):
    """RecurrentNet.step_jvp (the written-out JVPs the Lyapunov exponent uses) against J v with J the
    full Jacobian of one step by torch.autograd.functional.jacobian, sample by sample."""
    model, batch = build(cell, activation=activation, init="gaussian", scale=1.3, num_layers=num_layers)
    state = torch.randn(3, sum(model.block_sizes), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    tangent = torch.randn(state.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    drive = model.input_drive(batch.inputs)[0]
    new, pushed = model.step_jvp(state, drive, tangent)
    torch.testing.assert_close(new, model.step(state, drive), rtol=0, atol=0)
    for b in range(3):
        jacobian = torch.autograd.functional.jacobian(lambda s: model.step(s[None], drive[b : b + 1])[0], state[b])
        torch.testing.assert_close(pushed[b], jacobian @ tangent[b], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity", "leaky_relu", "gelu", "softsign"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_cells_own_vjp_equals_the_autograd_jacobian_transposed(cell, activation, num_layers):
    """RecurrentNet.pull_cotangent (the written-out backward step the exact recorder runs) against
    u^T J with J the full Jacobian of one step by torch.autograd.functional.jacobian, sample by sample;
    from coefficients computed for several steps at once (step_coefficients), as the recorder does."""
    model, batch = build(cell, activation=activation, init="gaussian", scale=1.3, num_layers=num_layers)
    generator = torch.Generator().manual_seed(4)
    states = [torch.randn(3, sum(model.block_sizes), dtype=torch.float64, generator=generator) for _ in range(2)]
    cotangent = torch.randn(states[0].shape, dtype=torch.float64, generator=generator)
    drives = model.input_drive(batch.inputs)[:2]
    steps = [model.linearised_step(state, drive) for state, drive in zip(states, drives)]
    for (new, _), state, drive, coefficients in zip(
        steps, states, drives, model.step_coefficients([i for _, i in steps])
    ):
        torch.testing.assert_close(new, model.step(state, drive), rtol=0, atol=0)
        pulled = model.pull_cotangent(coefficients, cotangent)
        for b in range(3):
            jacobian = torch.autograd.functional.jacobian(lambda s: model.step(s[None], drive[b : b + 1])[0], state[b])
            torch.testing.assert_close(pulled[b], cotangent[b] @ jacobian, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "activation,drive_var", [("tanh", 0.0), ("tanh", 1.3), ("relu", 0.4), ("sigmoid", 0.3), ("gelu", 2.0)]
)
def test_the_dense_mean_field_curve_is_the_rate_at_every_scale(activation, drive_var):
    """The phase figure's curve, solved backwards on a grid of q, against one bisection per scale
    (from far below to far above the critical scale, where relu's q is unbounded)."""
    scales = np.linspace(0.1, 3.0, 12)
    expected = [mean_field_rate(activation, float(s), drive_var) for s in scales]
    assert mean_field_curve(activation, scales, drive_var) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("cell", ["rnn", "gru", "minimal", "indrnn", "lru"])
def test_the_input_drive_is_what_each_cell_adds_to_its_state(cell):
    """torch's equations put b_ih + b_hh in every pre-activation; the minimal's z and the indrnn read
    x W_ih^T + b_ih; the lru has no such drive (NaN). Computed here from the parameters by name."""
    from harness.lab.session import input_drive_stats

    model, batch = build(cell, init="default" if cell in ("indrnn", "lru") else "gaussian", hidden_size=5)
    inputs = batch.inputs
    variance, spread = input_drive_stats(model, inputs)
    if cell == "lru":
        assert math.isnan(variance) and math.isnan(spread)
        return
    bias = model.bias_ih_l0 + (model.bias_hh_l0 if cell in ("rnn", "gru") else 0)
    per_unit = (inputs.double() @ model.weight_ih_l0.double().t() + bias.double()).pow(2).mean(dim=(0, 1))
    assert variance == pytest.approx(per_unit.mean().item(), rel=1e-12)
    assert spread == pytest.approx((per_unit.std() / per_unit.mean()).item(), rel=1e-12)
