"""lru, indrnn and minimal: each recorder against autograd with retain_grad on an independent
implementation of the published equations; the closed forms (lru ring, indrnn |u|^k); the decay-law
classifier on closed forms and on noisy synthetic profiles."""

import importlib.util
import math

import numpy as np
import pytest
import torch

from harness.core.analysis import fit_profile
from harness.core.init import initialise
from harness.core.networks import build
from harness.core.recorders import record_log_norms
from harness.core.spec import RunSpec
from harness.core.tasks import probe
from harness.lab.run import record
from tests.conftest import ROOT

SIZES = dict(input_size=3, hidden_size=5, seq_len=15, batch_size=4)


def make(
    cell: str,
    num_layers: int = 1,
    scale: float = 0.9,
    activation: str = "tanh",
    init: str = "default",
    hidden_size: int = 5,
    **options,
):
    model = build(cell, activation, SIZES["input_size"], hidden_size, num_layers, options).double()
    initialise(model, init, scale, torch.Generator().manual_seed(0))
    return model


def unroll_reference(step, x, num_layers, width, dtype=torch.float64):
    """Per layer, the states h_0..h_T as coordinates of the joint state S_t: each step's new h feeds the
    layer above within the step, and a clone of it (retain_grad) is what the next step reads, so its
    .grad is dL/dh_t with the other blocks of S_t held fixed, as the recorders define it."""
    carried = [[torch.zeros(x.shape[1], width, dtype=dtype, requires_grad=True)] for _ in range(num_layers)]
    for t in range(x.shape[0]):
        inputs = x[t]
        for layer in range(num_layers):
            h, inputs = step(layer, inputs, carried[layer][-1])
            carried[layer].append(h.clone())
            carried[layer][-1].retain_grad()
    return carried


def lru_reference(model, x):
    """The lru in complex arithmetic (torch.complex128), from its parameters."""
    p = [
        {
            n: getattr(model, f"{n}_l{layer}").detach()
            for n in ("nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D")
        }
        for layer in range(model.num_layers)
    ]

    def step(layer, x_t, h):
        q = p[layer]
        lam = model.scale * torch.exp(-torch.exp(q["nu_log"]) + 1j * torch.exp(q["theta_log"]))
        b = (q["B_re"] + 1j * q["B_im"]) * torch.exp(q["gamma_log"]).unsqueeze(1)
        h = lam * h + x_t.to(torch.complex128) @ b.T
        return h, (h @ (q["C_re"] + 1j * q["C_im"]).T).real + q["D"] * x_t

    layers = unroll_reference(step, x, model.num_layers, model.hidden_size, torch.complex128)
    return layers, [torch.view_as_real(h).flatten(1) for h in layers[-1]]  # the state's real layout


def indrnn_reference(model, x):
    def step(layer, x_t, h):
        w, u, b = (getattr(model, f"{n}_l{layer}").detach() for n in ("weight_ih", "weight_hh", "bias_ih"))
        h = model.act(x_t @ w.T + u * h + b)
        return h, h

    layers = unroll_reference(step, x, model.num_layers, model.hidden_size)
    return layers, layers[-1]


def minimal_reference(model, x):
    def step(layer, x_t, h):
        wz, bz, w, v, b = (
            getattr(model, f"{n}_l{layer}").detach()
            for n in ("weight_ih", "bias_ih", "weight_hh", "weight_zh", "bias_hh")
        )
        z = model.act(x_t @ wz.T + bz)
        u = torch.sigmoid(h @ w.T + z @ v.T + b)
        h = u * h + (1 - u) * z
        return h, h

    layers = unroll_reference(step, x, model.num_layers, model.hidden_size)
    return layers, layers[-1]


REFERENCES = {"lru": lru_reference, "indrnn": indrnn_reference, "minimal": minimal_reference}


@pytest.mark.parametrize("recorder", ["exact", "autograd"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", sorted(REFERENCES))
def test_recorders_equal_autograd_on_an_independent_implementation(cell, num_layers, recorder):
    model = make(cell, num_layers, scale=1.3)
    x = torch.randn(
        SIZES["seq_len"],
        SIZES["batch_size"],
        SIZES["input_size"],
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1),
    )
    readout = torch.randn(model.output_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    states = model(x, model.initial_state(SIZES["batch_size"]))
    measured = record_log_norms((model.top_hidden(states[-1]) @ readout).sum(), states, model.block_sizes, recorder)

    layers, top = REFERENCES[cell](model, x)
    (top[-1] @ readout).sum().backward()
    for layer, hs in enumerate(layers):
        # |complex| for the lru; a block nothing reads (a lower layer's h_T) has no gradient: 0
        expected = (
            torch.stack([torch.zeros(len(h)) if h.grad is None else h.grad.abs().pow(2).sum(1).sqrt() for h in hs])
            .double()
            .log()
        )
        torch.testing.assert_close(measured[:, :, layer], expected, rtol=0, atol=1e-9 * math.log(10))


def test_lru_hidden_4096_equals_its_closed_form_and_decays_as_a_power_law():
    """||dL/dh_{T-k}||^2 = sum_j |c_j|^2 |lambda_j|^(2k) with c = dL/dh_T (the probe's readout), at hidden
    4096, T = 200, float64; the fitted exponent is -1/2 within the sampling error of a ring of 4096."""
    columns = dict(
        cell="lru",
        activation="tanh",
        init="default",
        scale=1.0,
        seq_len=200,
        hidden_size=4096,
        input_size=8,
        num_layers=1,
        batch_size=2,
        seed=0,
        task="probe",
        recorder="exact",
        dtype="float64",
        device="cpu",
        **{"cell.r_min": 0.0, "cell.r_max": 1.0},
    )
    recording = record(RunSpec.from_columns(columns))
    ((_, log_norms),) = recording.profiles
    model = recording.model
    modulus = np.exp(-np.exp(model.nu_log_l0.detach().numpy()))
    # the probe's readout c = dL/dh_T, drawn as the run draws it: the seeded generator initialises the
    # model, then draws the inputs and the readout
    generator = torch.Generator().manual_seed(0)
    initialise(build("lru", "tanh", 8, 4096, 1, {}).double(), "default", 1.0, generator)
    c = probe(200, 2, generator, input_size=8, hidden_size=2 * 4096).readout.numpy()
    weights = c[0::2] ** 2 + c[1::2] ** 2  # the state is (Re h_1, Im h_1, Re h_2, ...)
    k = np.arange(200, -1, -1)[:, None]
    closed = 0.5 * np.log10((weights * modulus ** (2.0 * k)).sum(axis=1))
    measured = log_norms[:, :, 0].numpy() / math.log(10)
    assert np.abs(measured - closed[:, None]).max() < 1e-6

    lag = np.arange(200, -1, -1)
    fit = fit_profile(lag, np.median(measured, axis=1))
    # sampling error: the same fit on 40 independent rings of 4096 (closed form, no recorder)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(40):
        ring = np.sqrt(rng.uniform(0, 1, 4096))
        w = rng.normal(size=(2, 4096)) ** 2
        w = w.sum(0) / w.sum()
        draws.append(fit_profile(lag, 0.5 * np.log10((w * ring ** (2.0 * lag[:, None])).sum(axis=1)))["power_exponent"])
    spread = np.std(draws)
    assert fit["decay_law"] == "power"
    assert abs(fit["power_exponent"] + 0.5) < 3 * spread + 0.01, (fit["power_exponent"], spread)
    # the ring expectation recorded beside it in the profile table
    ring = recording.closed_form["theory_ring_log10_norm"]
    assert ring[-1] == pytest.approx(0, abs=1e-12) and ring[0] == pytest.approx(0.5 * math.log10(1 / 201), abs=1e-12)
    assert np.abs(recording.closed_form["theory_log10_norm"] - closed).max() < 1e-9


def test_lru_scale_multiplies_every_modulus_and_theory_comes_from_eigenvalues():
    model = make("lru", scale=1.2, hidden_size=64)
    base = np.exp(-np.exp(model.nu_log_l0.detach().numpy()))
    assert np.allclose(model.eigenvalues(0).abs().detach().numpy(), 1.2 * base, rtol=1e-12)
    assert model.linear_rate() == pytest.approx(math.log(1.2 * base.max()), rel=1e-12)


def test_indrnn_unit_gain_is_abs_u_to_the_k():
    model = make("indrnn", activation="identity", scale=1.0)
    x = torch.randn(30, 3, 3, dtype=torch.float64)
    readout = torch.randn(5, dtype=torch.float64)
    states = model(x, model.initial_state(3))
    log_norms = record_log_norms((states[-1] @ readout).sum(), states, model.block_sizes, "exact")[:, :, 0]
    u = model.weight_hh_l0.detach().numpy()
    k = np.arange(30, -1, -1)[:, None]
    expected = 0.5 * np.log((readout.numpy() ** 2 * np.abs(u) ** (2.0 * k)).sum(axis=1))
    assert np.abs(log_norms.numpy() - expected[:, None]).max() < 1e-9
    assert model.linear_rate() == pytest.approx(math.log(np.abs(u).max()))


@pytest.mark.parametrize("cell,init", [("lru", "gaussian"), ("indrnn", "orthogonal")])
def test_inits_a_cell_has_no_meaning_for_are_not_applicable(cell, init):
    from harness.core.errors import NotApplicable

    with pytest.raises(NotApplicable):
        make(cell, init=init)


def test_decay_law_on_closed_forms():
    lag = np.arange(0, 301, dtype=float)
    exponential = fit_profile(lag, lag * math.log10(0.9))  # a linear orthogonal rnn at scale 0.9: 0.9^k
    assert exponential["decay_law"] == "exponential" and exponential["rate"] == pytest.approx(math.log(0.9))
    ring = fit_profile(lag, 0.5 * np.log10(1 / (lag + 1)))  # the lru ring's expectation, r 0..1
    assert ring["decay_law"] == "power" and ring["power_exponent"] == pytest.approx(-0.5, abs=1e-12)
    assert fit_profile(lag, np.zeros_like(lag))["decay_law"] == "flat"
    assert fit_profile(lag[:5], lag[:5])["decay_law"] == "undetermined"


def test_decay_law_on_noisy_synthetic_profiles():
    spec = importlib.util.spec_from_file_location("decay_laws", ROOT / "benchmarks" / "decay_laws.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.confusion(per_law=60)
    for (noise, drawn), row in table.iterrows():
        assert row[drawn] >= 0.95 * row.sum(), (noise, drawn, row.to_dict())
