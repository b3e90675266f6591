"""The gated cells' mean field (harness.core.meanfield: minimal, gru, lstm): its expectations against Monte
Carlo of the same wide-limit variables, its backward gain against a closed form and against a simulated
backward pass that meets its assumptions exactly, the critical points, where it says it does not apply,
and (slow) against the exact recorder at hidden 1024."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from harness.core import meanfield as mf
from harness.core.analysis import fit_profile
from harness.core.init import initialise
from harness.core.networks import build
from harness.core.protocol import ACTIVATIONS
from harness.core.recorders import record_log_norms
from harness.core.tasks import probe

sigmoid = torch.sigmoid


def normal(generator: torch.Generator, mean: float, var: float, count: int = 2_000_000) -> torch.Tensor:
    return mean + math.sqrt(var) * torch.randn(count, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("bias, var", [(0.0, 0.3), (1.0, 2.0), (-2.0, 9.0), (3.0, 40.0)])
def test_gate_moments_against_monte_carlo_and_a_finer_grid(bias, var):
    g = mf._gate_moments(bias, var)
    s = sigmoid(normal(torch.Generator().manual_seed(0), bias, var))
    slope = s * (1 - s)
    for key, sample in (("s", s), ("ss", s * s), ("rr", (1 - s) ** 2), ("sr", s * (1 - s)), ("dd", slope**2)):
        assert g[key] == pytest.approx(sample.mean().item(), rel=3e-3, abs=1e-5), key
    # the trapezoid rule: half the spacing changes nothing that matters
    u, w = mf.normal_nodes(bias, var, spacing=0.25)
    fine = 1 / (1 + np.exp(-u))
    assert g["ss"] == pytest.approx(float(w @ fine**2), rel=1e-9)
    assert g["dd"] == pytest.approx(float(w @ (fine * (1 - fine)) ** 2), rel=1e-8)


def test_gru_candidate_moments_against_monte_carlo():
    """pre = x_n + r y_n with r = sigmoid(a_r): the conditional-Gaussian reduction against sampling."""
    generator = torch.Generator().manual_seed(1)
    var, input_var, recurrent_var = 1.7, 1.0, 0.7
    moments = mf._gru_candidate(0.0, var, input_var, recurrent_var)
    r = sigmoid(normal(generator, 0.0, var))
    x, y = normal(generator, 0.0, input_var), normal(generator, 0.0, recurrent_var)
    n = torch.tanh(x + r * y)
    slope = 1 - n * n
    samples = {
        "nn": n * n,
        "n1": slope * r,
        "n2": (slope * r) ** 2,
        "r2": (slope * y * r * (1 - r)) ** 2,
    }
    for key, sample in samples.items():
        assert moments[key] == pytest.approx(sample.mean().item(), rel=3e-3), key
    assert moments["r1"] == pytest.approx(0.0, abs=1e-12)  # tanh' even, y odd given pre
    assert abs((slope * y * r * (1 - r)).mean().item()) < 1e-3


def test_lstm_step_moments_against_monte_carlo():
    """The 4-d rule over (c, a_f, a_i, a_g) against sampling the same independent variables."""
    generator = torch.Generator().manual_seed(2)
    cell_var, forget_bias, input_bias, var = 0.6, 1.0, -0.5, 1.4
    m = mf._lstm_cell_moments(cell_var, forget_bias, input_bias, var)
    c = normal(generator, 0.0, cell_var)
    f, i = sigmoid(normal(generator, forget_bias, var)), sigmoid(normal(generator, input_bias, var))
    g = torch.tanh(normal(generator, 0.0, var))
    A = torch.tanh(f * c + i * g)
    D = 1 - A * A
    kf, ki, kg = c * f * (1 - f), g * i * (1 - i), i * (1 - g * g)
    samples = {
        "f 1 D": f * D,
        "ff 1 DD": (f * D) ** 2,
        "kf2 1 DD": (kf * D) ** 2,
        "f kf 1 D": f * kf * D,
        "1 ki2 D": ki**2 * D,
        "1 kg DD": kg * D * D,
        "f kg D": f * kg * D,
        "1 1 AA": A * A,
        "f 1 AD": f * A * D,
        "1 kg 1": kg,
    }
    for key, sample in samples.items():
        assert m[key] == pytest.approx(sample.mean().item(), rel=4e-3, abs=2e-4), key


def closed_form_one_block(unit: mf.UnitClass, scale: float) -> float:
    """Lambda of a homogeneous cell with y' = D (y + m) and sources p = q = k (the gru's and minimal's
    form), from the stationary two-time equations solved with a geometric ansatz for the fields'
    correlation C(tau) ~ omega^tau (derived separately from field_matrix's spectral form):
    1 = E[D^2]/L^2 + alpha + 2 A omega / (1 - r omega), r = E[D]/L, alpha = s^2 sum E[k^2]/L^2,
    beta = s^2 sum E[k]^2/L^2, A = s^2 sum E[k] E[D k]/L^3, omega the root in (-1, 1) of
    r omega^2 - (1 + r^2 - beta) omega + r = 0. The largest root L, by scanning down and bisecting."""

    def residual(gain: float) -> float | None:
        r = unit.Fy / gain
        alpha = scale**2 * sum(b.pp for b in unit.blocks) / gain**2
        beta = scale**2 * sum(b.P**2 for b in unit.blocks) / gain**2
        coupling = scale**2 * sum(b.P * b.Fyp for b in unit.blocks) / gain**3
        middle = 1 + r * r - beta
        if middle * middle - 4 * r * r < 0:
            return None
        omega = (middle - math.sqrt(middle * middle - 4 * r * r)) / (2 * r)
        return 1 - unit.FyFy / gain**2 - alpha - 2 * coupling * omega / (1 - r * omega)

    gains = np.geomspace(50, 1e-2, 4000)
    for high, low in zip(gains[:-1], gains[1:]):
        a, b = residual(high), residual(low)
        if a is None or b is None:
            break
        if a > 0 >= b:
            for _ in range(100):
                mid = math.sqrt(high * low)
                if residual(mid) > 0:
                    high = mid
                else:
                    low = mid
            return math.sqrt(high * low)
    raise AssertionError("no root")


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 3.5])
def test_the_spectral_gain_equals_the_closed_form_for_one_class(scale):
    _, classes = mf.gru_units("tanh", scale, 1.0, ((1.0, (0.0, 0.0)),))
    assert mf.backward_gain(classes, scale) == pytest.approx(closed_form_one_block(classes[0], scale), rel=1e-9)


def test_without_mean_coefficients_the_gain_is_the_factorised_chi():
    """The minimal's coefficient (h - z) u' has mean 0: Lambda^2 = E[u^2] + scale^2 E[(h - z)^2] E[u'^2]."""
    for scale in (0.5, 2.0, 6.0):
        _, (unit,) = mf.minimal_units("tanh", scale, 1.0, ((1.0, (0.5,)),))
        chi = unit.FyFy + scale**2 * unit.blocks[0].pp
        assert mf.backward_gain([unit], scale) ** 2 == pytest.approx(chi, rel=1e-10)
        assert mf.factorised_gain([unit], scale) ** 2 == pytest.approx(chi, rel=1e-10)


def table_class(rows: list[list[float]], weight: float) -> mf.UnitClass:
    """A class whose step draws (F_y, F_x, p, q) uniformly from `rows`: its exact moments."""
    fy, fx, p, q = np.array(rows, dtype=float).T
    block = mf.Block(
        P=p.mean(),
        Q=q.mean(),
        pp=(p * p).mean(),
        pq=(p * q).mean(),
        qq=(q * q).mean(),
        Fyp=(fy * p).mean(),
        Fyq=(fy * q).mean(),
        Fxp=(fx * p).mean(),
        Fxq=(fx * q).mean(),
    )
    return mf.UnitClass(weight, fy.mean(), fx.mean(), (fy * fy).mean(), (fx * fy).mean(), (fx * fx).mean(), (block,))


def simulated_rate(tables: list[list[list[float]]], scale: float, units: int = 2000, steps: int = 160) -> float:
    """A backward pass that meets the theory's assumptions exactly: every unit's local factors drawn afresh
    each step from its class's table, independent of W, and one W ~ N(0, scale^2 / N) used at every step:
    y' = F_y y + F_x m, m' = (p y + q m) W. The slope of ln rms(m) after 40 steps."""
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(units, units, generator=generator, dtype=torch.float64) * scale / math.sqrt(units)
    share = units // len(tables)
    y = torch.zeros(4, units, dtype=torch.float64)
    m = torch.randn(4, units, generator=generator, dtype=torch.float64)
    logs, total = [], 0.0
    for _ in range(steps):
        local = torch.cat(
            [
                torch.tensor(table, dtype=torch.float64)[torch.randint(len(table), (4, share), generator=generator)]
                for table in tables
            ],
            dim=1,
        )
        fy, fx, p, q = local.unbind(-1)
        y, m = fy * y + fx * m, (p * y + q * m) @ w
        norm = m.pow(2).mean().sqrt()
        y, m, total = y / norm, m / norm, total + math.log(norm)
        logs.append(total)
    return float(np.polyfit(np.arange(40, steps), logs[40:], 1)[0])


ONE = [[[0.2, 0.2, 0.9, 0.9], [0.5, 0.5, 0.4, 0.4], [0.8, 0.8, 0.3, 0.3], [0.6, 0.6, -0.2, -0.2]]]  # y' = D (y + m)
TWO = [  # two classes of units, F_x != F_y and p != q (the lstm's form)
    [[0.9, 0.5, 0.3, 0.6], [0.7, 0.2, -0.1, 0.4]],
    [[0.3, 0.1, 0.5, 0.2], [0.5, 0.4, 0.2, -0.3]],
]


@pytest.mark.parametrize("tables, scale", [(ONE, 1.0), (ONE, 2.0), (TWO, 1.0), (TWO, 2.0)])
def test_the_gain_is_a_simulated_backward_pass_that_reuses_w(tables, scale):
    """The fields' correlation across steps is what reusing W gives: the theory follows the simulation to
    0.005 nats per step (measured 0.001-0.002), the factorised chi misses it by 0.05-0.13."""
    classes = [table_class(table, 1 / len(tables)) for table in tables]
    simulated = simulated_rate(tables, scale)
    assert math.log(mf.backward_gain(classes, scale)) == pytest.approx(simulated, abs=0.005)
    assert abs(math.log(mf.factorised_gain(classes, scale)) - simulated) > 0.04


def test_splitting_a_class_changes_nothing():
    _, (unit,) = mf.lstm_units("tanh", 1.5, 1.0, ((1.0, (0.0, 1.0, 0.0)),))
    halves = [mf.UnitClass(0.5, *[getattr(unit, k) for k in ("Fy", "Fx", "FyFy", "FxFy", "FxFx", "blocks")])] * 2
    assert mf.backward_gain(halves, 1.5) == pytest.approx(mf.backward_gain([unit], 1.5), rel=1e-10)


def test_the_minimal_reproduces_chen_et_als_critical_point():
    """Chen, Pennington & Schoenholz 2018's critical minimalRNN, sigma_w = 6.88, sigma_v = 1.39 on inputs of
    mean square R = 0.46, mu_b = 0, with q* = 16 (as a public implementation of the paper quotes them):
    the gain is 1 there (to 0.2% in sigma_w) and the gate's variance is q* = 16."""
    biases = ((1.0, (0.0,)),)

    def gain(sigma_w: float) -> float:
        _, classes = mf.minimal_field(sigma_w, 0.0, 0.46, biases, v_var=1.39**2)
        return mf.backward_gain(classes, sigma_w)

    low, high = 1.0, 20.0
    for _ in range(60):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if gain(middle) < 1 else (low, middle)
    assert low == pytest.approx(6.88, rel=2e-3)
    total, _ = mf.minimal_field(low, 0.0, 0.46, biases, v_var=1.39**2)
    assert low**2 * total + 1.39**2 * 0.46 == pytest.approx(16.0, rel=2e-3)


@pytest.mark.parametrize("cell, forget_bias", [("minimal", 0.0), ("gru", 0.0), ("lstm", 0.0), ("lstm", 3.0)])
def test_at_the_critical_scale_the_rate_is_zero(cell, forget_bias):
    model, _ = built(cell, 1.0, forget_bias=forget_bias)
    rate, critical = model.mean_field("gaussian", 1.0, 1.0 + forget_bias**2 / 4)
    assert math.isfinite(rate) and 0.3 < critical < 16
    at = model.mean_field("gaussian", critical, 1.0 + forget_bias**2 / 4)[0]
    assert at == pytest.approx(0.0, abs=1e-6)
    # a forget bias moves the lstm's critical scale down (b_f = 3: below 1)
    if cell == "lstm":
        assert (critical < 1) == (forget_bias == 3.0)


def built(cell: str, scale: float, hidden: int = 16, forget_bias: float = 0.0, chrono: int | None = None, **kw):
    generator = torch.Generator().manual_seed(0)
    model = build(cell, kw.get("activation", "tanh"), hidden, hidden, kw.get("num_layers", 1), {}).double()
    initialise(model, kw.get("init", "gaussian"), scale, generator, forget_bias, chrono)
    return model, generator


def test_the_network_reads_its_own_gate_biases():
    """forget_bias and chrono reach the theory through the biases the network holds; the drive variance
    the run records holds their squares, which come off; the curve from the settings alone agrees."""
    model, _ = built("lstm", 2.0, forget_bias=1.0)
    units, input_var, biases = model.gated_field(1.25)
    assert units is mf.lstm_units and input_var == pytest.approx(1.0) and biases == ((1.0, (0.0, 1.0, 0.0)),)
    rate = model.mean_field("gaussian", 2.0, 1.25)[0]
    curve = model.mean_field_curve("gaussian", np.array([2.0]), 1.25, forget_bias=1.0)
    assert curve[0] == pytest.approx(rate, abs=1e-12)
    chrono, _ = built("gru", 1.0, hidden=64, chrono=50)
    _, _, classes = chrono.gated_field(1.0)
    assert len(classes) == mf.MAX_UNIT_CLASSES and sum(share for share, _ in classes) == pytest.approx(1.0)
    keep = [b[1] for _, b in classes]
    assert keep == sorted(keep) and 0 <= keep[0] and keep[-1] <= math.log(49)
    # the expected classes of the same setting give nearly the same rate
    actual = chrono.mean_field("gaussian", 1.0, 1.0)[0]
    expected = chrono.mean_field_curve("gaussian", np.array([1.0]), 1.0, chrono_tmax=50)
    assert expected[0] == pytest.approx(actual, abs=2e-3)


@pytest.mark.parametrize(
    "cell, settings, note",
    [
        ("lstm", {"init": "orthogonal"}, "derived for init=gaussian"),
        ("gru", {"activation": "relu"}, "covers activation=tanh"),
        ("lstm", {"num_layers": 2}, "derived for one layer"),
        ("minimal", {"init": "orthogonal"}, "derived for init=gaussian"),
    ],
)
def test_where_it_does_not_apply_it_says_why(cell, settings, note):
    model, _ = built(cell, 1.0, **settings)
    field = model.mean_field(settings.get("init", "gaussian"), 1.0, 1.0)
    assert isinstance(field, str) and field.startswith("mean field: ") and note in field


def test_the_minimal_needs_its_drive_variance_and_the_default_init_is_not_derived():
    model, _ = built("minimal", 1.0)
    assert "needs the input drive variance" in model.mean_field("gaussian", 1.0, math.nan)
    default, _ = built("lstm", 1.0, init="default")  # torch's default: random candidate biases
    assert "candidate's bias 0" in default.mean_field("gaussian", 1.0, 1.0)
    relu, _ = built("minimal", 1.0, activation="relu")  # the minimal takes any activation
    assert len(relu.mean_field("gaussian", 1.0, 1.0)) == 2


def measured_rate(model, generator, hidden: int, seq_len: int = 300, batch: int = 8) -> tuple[float, float]:
    """(the exact recorder's rate of the batch median, as a run fits it; the run's input_drive_var)."""
    inputs = probe(seq_len, batch, generator, input_size=hidden, hidden_size=hidden)
    bias = model.bias_ih_l0 if model.cell_name == "minimal" else model.bias_ih_l0 + model.bias_hh_l0
    with torch.no_grad():
        drive_var = float(torch.nn.functional.linear(inputs.inputs, model.weight_ih_l0, bias).pow(2).mean())
    states = model(inputs.inputs, model.initial_state(batch))
    loss = inputs.loss(model.top_hidden(states[-1]).unsqueeze(0))
    log10 = (record_log_norms(loss, states, model.block_sizes, "exact")[:, :, 0] / math.log(10)).median(dim=1).values
    return fit_profile(np.arange(seq_len, -1, -1), log10.numpy())["rate"], drive_var


@pytest.mark.slow
@pytest.mark.parametrize(
    "cell, scale, forget_bias, chrono",
    [
        ("minimal", 1.0, 0.0, None),
        ("minimal", 2.0, 0.0, None),
        ("gru", 1.0, 0.0, None),
        ("gru", 2.0, 0.0, None),
        ("gru", 2.0, 0.0, 300),
        ("lstm", 1.0, 0.0, None),
        ("lstm", 2.0, 1.0, None),
        ("lstm", 0.5, 3.0, None),
        ("lstm", 2.0, 0.0, 300),
    ],
)
def test_mean_field_is_the_measured_rate_at_hidden_1024(cell, scale, forget_bias, chrono):
    """Where the gates' recurrent drive does not persist (benchmarks/gated_meanfield.py's `persist` below
    ~0.6, or the memory is chrono's), hidden 1024, float64, seq_len 300: within 0.02 nats per step."""
    model, generator = built(cell, scale, hidden=1024, forget_bias=forget_bias, chrono=chrono)
    measured, drive_var = measured_rate(model, generator, 1024)
    rate, _ = model.mean_field("gaussian", scale, drive_var)
    assert measured == pytest.approx(rate, abs=0.02)


# -- numpy activations (the mean field needs no torch) and the phase figure's gated curves --------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_the_numpy_activations_and_slopes_are_torchs(name):
    """Each numpy (act, act') the mean field integrates is torch's activation and its autograd derivative,
    over the range its grids reach (to 12 sd at q = 1e4: |u| up to 1200) and at the kink 0."""
    u = torch.cat([torch.linspace(-40, 40, 8001, dtype=torch.float64), torch.tensor([0.0, -1e-300, 1200.0, -1200.0])])
    u.requires_grad_()
    y = ACTIVATIONS[name](u)
    (slope,) = torch.autograd.grad(y.sum(), u)
    act, act_slope = mf.numpy_activation(name)
    x = u.detach().numpy()
    np.testing.assert_allclose(act(x), y.detach().numpy(), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(act_slope(x), slope.numpy(), rtol=1e-14, atol=1e-14)


def test_every_activation_has_its_numpy_form_and_another_is_refused():
    assert set(mf.NUMPY_ACTIVATIONS) == set(ACTIVATIONS)
    with pytest.raises(ValueError, match="activation 'swish' has no numpy form here; covered: tanh"):
        mf.gaussian_moments("swish", 1.0)
    x = np.linspace(-30, 30, 60001)
    assert np.abs(mf._erf(x) - np.array([math.erf(v) for v in x])).max() < 2e-15


def phase_summary() -> pd.DataFrame:
    """Runs of the rnn, gru and an lstm with forget_bias 2 at five scales, as the phase figure reads them:
    the theory's values finite, the critical scale each cell's, computed here from harness.core.meanfield."""
    rows = []
    for cell, forget_bias in (("rnn", 0.0), ("gru", 0.0), ("lstm", 2.0)):
        for scale in (0.5, 1.0, 2.0, 3.0, 5.0):
            rows.append(
                {
                    "run_id": f"{cell}-{scale}",
                    "cell": cell,
                    "cell.forget_bias": forget_bias,
                    "cell.chrono_tmax": pd.NA,
                    "activation": "tanh",
                    "init": "gaussian",
                    "scale": scale,
                    "seq_len": 100,
                    "num_layers": 1,
                    "seed": 0,
                    "recorder": "exact",
                    "rate": math.log(scale) - 0.5,
                    # the lstm's drive holds its biases' mean square (forget_bias^2 / 4) beyond the input's 1.0
                    "input_drive_var": 1.0 + forget_bias**2 / 4,
                    "theory_linear": math.nan,
                    "theory_mean_field": -0.1,
                    "theory_critical_scale": critical_scale(cell),
                    "theory_lyapunov": math.nan,
                }
            )
    frame = pd.DataFrame(rows)
    frame["cell.chrono_tmax"] = frame["cell.chrono_tmax"].astype("Int64")
    return frame


GATED_SETTINGS = {  # the units, the input variance and the gate-bias classes of phase_summary's gated cells
    "gru": (mf.gru_units, 1.0, ((1.0, (0.0, 0.0)),)),
    "lstm": (mf.lstm_units, 1.0, ((1.0, (0.0, 2.0, 0.0)),)),
}


def critical_scale(cell: str) -> float:
    if cell == "rnn":
        return mf.mean_field_critical_scale("tanh", 1.0)
    units, input_var, biases = GATED_SETTINGS[cell]
    return mf.gated_critical_scale(units, "tanh", input_var, biases)


def test_the_phase_figure_draws_each_cells_own_curve_and_critical_scale(tmp_path, monkeypatch):
    """Each line's dashed curve is its own cell's mean field (the gru's and the lstm's gated ones, at the
    lstm's forget bias; harness.lab.theory_curves asks each network), with a dotted vertical line at its
    critical scale, in its colour, named by cell; the curves are computed here from harness.core.meanfield."""
    import matplotlib.pyplot as plt

    from harness.lab import theory_curves
    from harness.lab.figures import phase
    from harness.lab.figures.style import CELL_COLOURS

    monkeypatch.setattr(theory_curves, "POINTS", 6)  # what is drawn, not how finely
    summary = phase_summary()
    curves = theory_curves.mean_field_curves(summary)
    assert sorted(curves.cell.unique()) == ["gru", "lstm", "rnn"]
    (page,) = phase.draw_phase(summary, curves, tmp_path)
    ax = page.figure.axes[0]
    caption = page.caption
    for cell in ("rnn", "gru", "lstm"):
        colour = CELL_COLOURS[cell]
        mine = [line for line in ax.lines if line.get_color() == colour]
        (curve,) = [line for line in mine if line.get_linestyle() == "--"]
        (critical,) = [line for line in mine if line.get_linestyle() == ":"]
        x, y = curve.get_xdata(), curve.get_ydata()
        assert x[0] == 0.5 and x[-1] == 5.0 and len(x) == 6
        if cell == "rnn":
            expected_curve = mf.mean_field_curve("tanh", x, 1.0)
        else:
            units, input_var, biases = GATED_SETTINGS[cell]
            expected_curve = mf.gated_mean_field_curve(units, "tanh", x, input_var, biases)
        assert y == pytest.approx(expected_curve, abs=1e-12), cell
        assert critical.get_xdata()[0] == pytest.approx(critical_scale(cell), rel=1e-12), cell
        assert f"{critical_scale(cell):.2f} ({cell})" in caption.replace("\n", " "), caption
    # three distinct critical lines: the vanilla rnn's curve is no longer drawn for the gated cells
    assert len({line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":"}) == 3
    plt.close(page.figure)
    (bare,) = phase.draw_phase(summary, None, tmp_path)  # no stored curves: the marks and gaps, no dashed line
    assert not [line for line in bare.figure.axes[0].lines if line.get_linestyle() == "--"]
    plt.close(bare.figure)


def test_curves_are_stored_only_where_the_network_says_the_mean_field_applies():
    """An orthogonal gru (not derived) and a two-layer rnn get no curve; a line whose drive is more than
    1% from every stored one finds none."""
    from harness.lab import theory_curves

    summary = phase_summary()
    assert theory_curves.mean_field_curves(summary.assign(init="orthogonal", cell="gru")).empty
    assert theory_curves.mean_field_curves(summary.assign(num_layers=2, cell="rnn")).empty
    rnn = summary[summary.cell == "rnn"]
    curves = theory_curves.mean_field_curves(rnn)
    assert theory_curves.line_curve(curves, rnn) is not None
    assert theory_curves.line_curve(curves, rnn.assign(input_drive_var=1.05)) is None
