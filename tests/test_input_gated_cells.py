"""mingru, minlstm and selective (harness.core.zoo.input_gated, harness.core.zoo.selective): each recorder
against autograd with retain_grad on an independent implementation of the published equations, and
against the per-sample closed form ||r ⊙ Π scale a_j|| and the Lyapunov exponent from the factors, both
computed here from those equations (numpy products, not the cells' logs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.core.errors import ConfigError, NotApplicable
from harness.core.init import initialise
from harness.core.networks import build
from harness.core.recorders import record_log_norms
from harness.core.spec import RunSpec, config_columns
from harness.lab.run import record
from tests.test_modern_cells import unroll_reference

CELLS = ("mingru", "minlstm", "selective")
INPUT, HIDDEN, STATE = 3, 5, 4  # the selective's state_size: its h is HIDDEN x STATE per layer


def make(cell: str, num_layers: int = 1, scale: float = 1.0, input_size: int = INPUT, hidden_size: int = HIDDEN):
    options = {"state_size": STATE} if cell == "selective" else {}
    model = build(cell, "tanh", input_size, hidden_size, num_layers, options).double()
    initialise(model, "default", scale, torch.Generator().manual_seed(0))
    return model


def sigmoid(u):
    return 1 / (1 + torch.exp(-u))


def reference_step(model, cell: str):
    """(layer, x_t, h) -> (h_t, what the layer above reads, the factor a_t times scale), from the published
    equations and the parameters' documented row layout."""
    scale, hidden = model.scale.item(), model.hidden_size

    def param(name, layer):
        return getattr(model, f"{name}_l{layer}").detach()

    def mingru(layer, x, h):
        w, b = param("weight_ih", layer), param("bias_ih", layer)
        z = sigmoid(x @ w[:hidden].T + b[:hidden])
        candidate = x @ w[hidden:].T + b[hidden:]
        h = scale * (1 - z) * h + z * candidate
        return h, h, scale * (1 - z)

    def minlstm(layer, x, h):
        w, b = param("weight_ih", layer), param("bias_ih", layer)
        f = sigmoid(x @ w[:hidden].T + b[:hidden])
        i = sigmoid(x @ w[hidden : 2 * hidden].T + b[hidden : 2 * hidden])
        candidate = x @ w[2 * hidden :].T + b[2 * hidden :]
        h = scale * f / (f + i) * h + i / (f + i) * candidate
        return h, h, scale * f / (f + i)

    def selective(layer, x, h):
        w, n = param("weight_ih", layer), model.state_size
        w_dt, w_u, w_b, w_c = w[:hidden], w[hidden : 2 * hidden], w[2 * hidden : 2 * hidden + n], w[2 * hidden + n :]
        dt = torch.log1p(torch.exp(x @ w_dt.T + param("dt_bias", layer)))  # softplus, (batch, hidden)
        u, b, c = x @ w_u.T, x @ w_b.T, x @ w_c.T
        a = -torch.exp(param("A_log", layer))  # (hidden, N)
        keep = scale * torch.exp(dt[:, :, None] * a[None])  # (batch, hidden, N)
        state = keep * h.reshape(-1, hidden, n) + dt[:, :, None] * u[:, :, None] * b[:, None, :]
        y = torch.einsum("bdn,bn->bd", state, c)
        return state.reshape(len(x), -1), y, keep.reshape(len(x), -1)

    return {"mingru": mingru, "minlstm": minlstm, "selective": selective}[cell]


def reference(model, cell: str, x):
    """Per layer the states h_0..h_T (retain_grad), the top layer's, and per layer the factors (T, batch, width)."""
    step, factors = reference_step(model, cell), [[] for _ in range(model.num_layers)]

    def recorded(layer, x_t, h):
        new, out, factor = step(layer, x_t, h)
        factors[layer].append(factor.detach())
        return new, out

    layers = unroll_reference(recorded, x, model.num_layers, model.block_sizes[0])
    return layers, layers[-1], [torch.stack(f).numpy() for f in factors]


def inputs(seq_len: int, batch: int, input_size: int = INPUT, seed: int = 1):
    return torch.randn(seq_len, batch, input_size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def measured_log_norms(model, x, readout, recorder):
    states = model(x, model.initial_state(x.shape[1]))
    return record_log_norms((model.top_hidden(states[-1]) @ readout).sum(), states, model.block_sizes, recorder)


@pytest.mark.parametrize("recorder", ["exact", "autograd"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_recorders_equal_autograd_on_an_independent_implementation(cell, num_layers, recorder):
    model = make(cell, num_layers, scale=1.1)
    x = inputs(15, 4)
    readout = torch.randn(model.output_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    measured = measured_log_norms(model, x, readout, recorder)
    layers, top, _ = reference(model, cell, x)
    (top[-1] @ readout).sum().backward()
    for layer, hs in enumerate(layers):
        expected = torch.stack([torch.zeros(len(h)) if h.grad is None else h.grad.norm(dim=1) for h in hs]).log()
        torch.testing.assert_close(measured[:, :, layer], expected, rtol=0, atol=1e-9 * math.log(10))


def closed_form(factors: np.ndarray, readout: np.ndarray) -> np.ndarray:
    """log10 ||r ⊙ Π_{j > t} a_j|| per t = 0..T and sample: products of the factors, latest first."""
    suffix = np.cumprod(factors[::-1], axis=0)[::-1]  # suffix[t] = a_{t+1} ... a_T, the state after step t+1 on
    products = np.concatenate([suffix, np.ones((1, *factors.shape[1:]))])
    return 0.5 * np.log10((readout**2 * products**2).sum(axis=-1))


@pytest.mark.parametrize("recorder", ["exact", "autograd"])
@pytest.mark.parametrize("scale", [1.0, 1.3])
@pytest.mark.parametrize("cell", CELLS)
def test_each_sample_is_its_closed_form(cell, scale, recorder):
    """Per sample and lag, in float64: the recorders, the closed form computed here and the cell's own
    (closed_form_profile, the table's batch median) agree; scale multiplies every factor."""
    model = make(cell, scale=scale, hidden_size=8)
    x = inputs(120, 6)
    readout = torch.randn(model.output_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    readout /= readout.norm()
    measured = measured_log_norms(model, x, readout, recorder)[:, :, 0].numpy() / math.log(10)
    _, _, (factors,) = reference(model, cell, x)
    expected = closed_form(factors, readout.numpy())
    assert np.abs(measured - expected).max() < 1e-9
    own = model.closed_form_profile(readout, 120, x)["theory_log10_norm"]
    assert np.abs(own - np.quantile(expected, 0.5, axis=1, method="nearest")).max() < 1e-9


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_lyapunov_exponent_from_the_factors(cell, num_layers):
    """The largest over channels and layers of the time average of ln(scale a_t), batch median (lower,
    as torch's and the Lyapunov exponent's), from the reference's own factors."""
    model = make(cell, num_layers, scale=0.9)
    x = inputs(50, 5)
    _, _, factors = reference(model, cell, x)
    per_sample = np.max([np.log(f).mean(axis=0).max(axis=-1) for f in factors], axis=0)
    assert model.linear_rate(x) == pytest.approx(np.sort(per_sample)[(len(per_sample) - 1) // 2], abs=1e-12)
    assert isinstance(model.linear_rate(), str) and model.linear_rate().startswith("linear: ")


def test_selective_starts_as_mamba_does():
    model = make("selective", hidden_size=4000)
    dt = torch.nn.functional.softplus(model.dt_bias_l0.detach())
    assert 0.001 <= dt.min() and dt.max() <= 0.1
    assert np.log(dt.numpy()).std() == pytest.approx((math.log(100)) / math.sqrt(12), rel=0.05)  # log-uniform
    a = -torch.exp(model.A_log_l0.detach())
    assert torch.allclose(a, -torch.arange(1, STATE + 1, dtype=torch.float64).expand(4000, STATE), rtol=1e-15)
    assert model.block_sizes == (4000 * STATE,) and model.output_size == 4000 * STATE


def columns(cell: str, **overrides):
    config = dict(
        cell=cell,
        seq_len=60,
        hidden_size=6,
        input_size=3,
        batch_size=4,
        dtype="float64",
        **({"cell.state_size": 3} if cell == "selective" else {}),
    )
    return {**config, **overrides}


@pytest.mark.parametrize("cell", CELLS)
def test_a_run_records_its_closed_form_and_the_exponent(cell):
    recording = record(RunSpec.from_columns(columns(cell)))
    ((_, log_norms),) = recording.profiles
    median = np.quantile(log_norms[:, :, 0].numpy() / math.log(10), 0.5, axis=1, method="nearest")
    assert np.abs(recording.closed_form["theory_log10_norm"] - median).max() < 1e-9
    extras = recording.extras
    assert extras["theory_lyapunov"] == extras["theory_linear"] < 0
    assert "linear:" not in extras["theory_note"]


@pytest.mark.parametrize("cell", CELLS)
def test_what_does_not_apply(cell):
    with pytest.raises(NotApplicable, match="expected init=default"):
        initialise(build(cell, "tanh", 3, 4, 1, {}), "orthogonal", 1.0, torch.Generator())
    with pytest.raises(NotApplicable, match="no activation to replace"):
        build(cell, "relu", 3, 4, 1, {})
    if cell != "selective":
        with pytest.raises(NotApplicable, match="apply to the selective only"):
            build(cell, "tanh", 3, 4, 1, {"state_size": 8})
        with pytest.raises(ConfigError, match="applies to cell=selective only"):
            config_columns(
                {"cell": {"name": cell, "state_size": 8}, "seq_len": 10}, explicit=["cell.state_size"]
            )  # fmt: skip
    else:
        with pytest.raises(ConfigError, match="expected dt_min <= dt_max"):
            config_columns({"cell": {"name": cell, "dt_min": 0.5, "dt_max": 0.1}})
