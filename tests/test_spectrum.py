"""The Lyapunov spectrum (harness.core.theory.lyapunov_spectrum) against identities that do not use it:
a linear orthogonal rnn's exponents are all ln(scale); all of them sum to the mean ln|det J_t|
(Jacobians by torch.autograd.functional.jacobian); they are sorted and do not depend on the QR
interval; the cells' own JVPs give the generic double-backward's numbers; the first exponent is
the run's theory_lyapunov and the exact recorder's rate at large T (Oseledets)."""

import math

import numpy as np
import pytest
import torch

from harness.core.analysis import EDGE_FRACTION, fit_profile
from harness.core.errors import ConfigError, ModelError
from harness.core.spec import RunSpec
from harness.core.theory import lyapunov_exponent, lyapunov_spectrum, spectrum_summary
from harness.lab import run
from tests.conftest import build


def test_linear_orthogonal_rnn_has_every_exponent_ln_scale():
    for scale in (0.9, 1.2):
        model, batch = build("rnn", "identity", "orthogonal", scale, hidden_size=16, input_size=16, seq_len=200)
        exponents = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=16)
        assert exponents.shape == (16,)
        assert (exponents - math.log(scale)).abs().max() < 1e-6


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_all_exponents_sum_to_the_mean_log_determinant(cell):
    """Volume: with k = the state size, sum_i ln|R_ii| over a step is ln|det J_t| (one sample: the
    batch median is then the sample itself)."""
    model, batch = build(cell, scale=1.5, hidden_size=4, input_size=3, seq_len=60, batch_size=1)
    size = sum(model.block_sizes)
    exponents = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=size)
    state, logdets = model.initial_state(1), []
    for drive in model.input_drive(batch.inputs):
        jacobian = torch.autograd.functional.jacobian(lambda s: model.step(s, drive), state)[0, :, 0, :]
        logdets.append(torch.linalg.slogdet(jacobian).logabsdet.item())
        state = model.step(state, drive).detach()
    skip = math.ceil(EDGE_FRACTION * 60)
    assert exponents.sum().item() == pytest.approx(np.mean(logdets[skip:]), abs=1e-9)


def test_exponents_are_sorted_and_do_not_depend_on_the_qr_interval():
    model, batch = build("gru", scale=2.0, hidden_size=6, input_size=4, seq_len=90, batch_size=2)
    every = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=6, interval=1)
    assert (every[:-1] >= every[1:]).all()
    for interval in (3, 7, None):  # None: adaptive, what runs use
        other = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=6, interval=interval)
        assert torch.allclose(every, other, atol=1e-10), interval
    # One tangent, renormalised every step or when due (as theory_lyapunov is): the same exponent.
    one = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=1, interval=1)
    assert torch.allclose(
        one, lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=1), atol=1e-12
    )
    assert torch.allclose(one, every[:1], atol=1e-10)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_cells_jvps_give_the_generic_jvps_spectrum(cell):
    model, batch = build(cell, scale=1.3, hidden_size=5, input_size=3, seq_len=40, num_layers=2)
    k = sum(model.block_sizes)
    fast = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=k)
    slow = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(0), k=k, analytic=False)
    assert torch.allclose(fast, slow, atol=1e-10)


def test_the_first_exponent_is_the_largest_exponent_alone():
    model, batch = build("lstm", scale=1.0, hidden_size=6, input_size=4, seq_len=80)
    alone = lyapunov_exponent(model, batch.inputs, torch.Generator().manual_seed(3))
    spectrum = lyapunov_spectrum(model, batch.inputs, torch.Generator().manual_seed(3), k=12)
    assert spectrum[0].item() == pytest.approx(alone, abs=1e-12)


def test_a_spectrum_larger_than_the_state_is_refused():
    model, batch = build("rnn", hidden_size=4)
    with pytest.raises(ModelError, match="theory.spectrum_k=5: this network's state has 4 entries"):
        lyapunov_spectrum(model, batch.inputs, torch.Generator(), k=5)


def test_kaplan_yorke_dimension_entropy_and_sum():
    summary = spectrum_summary(torch.tensor([0.5, 0.1, -0.4, -1.0]))
    assert summary["lyapunov_dimension"] == pytest.approx(3 + 0.2 / 1.0)  # S_3 = 0.2 >= 0, lambda_4 = -1
    assert summary["entropy_rate"] == pytest.approx(0.6) and summary["spectrum_sum"] == pytest.approx(-0.8)
    assert spectrum_summary(torch.tensor([-0.1, -0.2]))["lyapunov_dimension"] == 0.0
    assert spectrum_summary(torch.tensor([0.3, 0.2]))["lyapunov_dimension"] == 2.0  # capped at k
    assert spectrum_summary(torch.tensor([0.3, -0.6]))["lyapunov_dimension"] == pytest.approx(1.5)


COLUMNS = dict(
    cell="rnn",
    activation="tanh",
    init="gaussian",
    seq_len=2000,
    hidden_size=16,
    input_size=16,
    num_layers=1,
    batch_size=4,
    seed=0,
    task="probe",
    dtype="float64",
    device="cpu",
    recorder="exact",
)


@pytest.mark.parametrize("cell,scale", [("rnn", 1.5), ("rnn", 2.5), ("gru", 2.5), ("lstm", 1.5)])
def test_a_run_writes_its_spectrum_and_the_first_exponent_is_theory_lyapunov_and_the_rate(cell, scale):
    """Oseledets: the probe's gradient, pushed back over many steps, grows at the top exponent (its
    rate is fitted on the middle lags of the profile; the exponent is the forward trajectory's).
    Measured gaps at T = 2000: at most 0.003 nats per step; the test allows 0.01."""
    recording = run.record(RunSpec.from_columns({**COLUMNS, "cell": cell, "scale": scale, "theory.spectrum_k": 8}))
    extras = recording.extras
    assert len(extras["spectrum"]) == 8 and extras["theory_lyapunov"] == extras["spectrum"][0]
    ((_, log_norms),) = recording.profiles
    median = log_norms[:, :, 0].median(dim=1).values.numpy() / math.log(10)
    fit = fit_profile(np.arange(len(median))[::-1].copy(), median)
    assert fit["rate"] == pytest.approx(extras["spectrum"][0], abs=0.01)
    assert set(extras) >= {"lyapunov_dimension", "entropy_rate", "spectrum_sum"}


def test_spectrum_k_beyond_the_state_is_refused_before_the_run():
    from harness.core.spec import check_run

    with pytest.raises(ConfigError, match=r"theory.spectrum_k=33: the lstm's state has 32 entries"):
        check_run(RunSpec.from_columns({**COLUMNS, "cell": "lstm", "scale": 1.0, "theory.spectrum_k": 33}))


# ---------------------------------------------------------------------------------------------------
# theory follows the recorded trajectory: a user cell's own initial state (issue 27, item 3)
# ---------------------------------------------------------------------------------------------------


class AutonomousTanh(torch.nn.Module):
    """h_t = tanh(W h_{t-1}), W ~ N(0, g^2/N), from a random h_0 of its own; no input. From h_0 = 0 it
    would sit on the unstable fixed point (exponent ~ ln g); from its own h_0 it is on the chaotic
    attractor, whose largest exponent is much smaller."""

    def __init__(self, g: float, n: int = 256):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(n, n, generator=generator, dtype=torch.float64) * g / math.sqrt(n))
        self.register_buffer("h0", torch.randn(1, n, generator=generator, dtype=torch.float64))

    def initial_state(self, batch_size):
        return self.h0.expand(batch_size, -1).clone()

    def forward(self, x_t, h):
        return torch.tanh(h @ self.w.T)


@pytest.mark.parametrize("g", [1.5, 2.0])
def test_lyapunov_theory_starts_from_the_cell_s_own_initial_state(g):
    import harness
    from harness.core.cells import CellNet
    from harness.core.lyapunov import lyapunov_exponent

    cell = AutonomousTanh(g)
    x = torch.zeros(600, 4, 1, dtype=torch.float64)
    theory = lyapunov_exponent(CellNet([cell], 1), x, torch.Generator().manual_seed(0))
    measured = harness.record(cell, x).fit()["rate"]  # the recording starts from the cell's own h_0
    assert abs(theory - measured) < 0.03, f"g={g}: theory {theory:.3f}, recorded rate {measured:.3f}"
    assert theory < 0.5 * math.log(g), "the zero state's exponent (~ln g) is not the trajectory's"
