"""Recorders against torch.autograd on the unrolled graph, against each other, and against closed forms."""

import math

import pytest
import torch

from harness.core.cells import CELLS
from harness.core.recorders import flush_denormals, record_log_norms, status_flags
from harness.core.spec import RunSpec
from harness.lab.run import record
from tests.conftest import build, unroll


def true_log_norms(model, batch):
    """ln||dL/d block|| from torch.autograd.grad(loss, [S_0 .. S_T]) on the same graph."""
    states, loss = unroll(model, batch)
    grads = torch.autograd.grad(loss, states)
    return torch.stack([torch.linalg.vector_norm(g.view(g.shape[0], model.num_parts, -1), dim=-1) for g in grads]).log()


def recorded(model, batch, recorder):
    states, loss = unroll(model, batch)
    return record_log_norms(loss, states, model.block_sizes, recorder)


def assert_same_norms(log_a, log_b, rel):
    """Equal norms: relative error below rel where finite, identical where one is 0 (-inf)."""
    assert torch.equal(torch.isneginf(log_a), torch.isneginf(log_b))
    finite = torch.isfinite(log_a)
    assert ((log_a[finite] - log_b[finite]).exp() - 1).abs().max().item() < rel


CASES = [(cell, layers, scale) for cell in sorted(CELLS) for layers in (1, 2) for scale in (0.5, 1.0, 2.5)]


@pytest.mark.parametrize("cell,num_layers,scale", CASES)
def test_autograd_recorder_equals_autograd_grad(cell, num_layers, scale):
    model, batch = build(cell, init="gaussian", scale=scale, num_layers=num_layers, seq_len=30)
    assert_same_norms(recorded(model, batch, "autograd"), true_log_norms(model, batch), rel=1e-12)


@pytest.mark.parametrize("cell,num_layers,scale", CASES)
def test_exact_recorder_equals_autograd_in_float64(cell, num_layers, scale):
    model, batch = build(
        cell, init="gaussian", scale=scale, num_layers=num_layers, seq_len=60, hidden_size=16, batch_size=5
    )
    exact = recorded(model, batch, "exact")
    assert_same_norms(exact, recorded(model, batch, "autograd"), rel=1e-6)
    assert_same_norms(exact, true_log_norms(model, batch), rel=1e-6)


def test_lstm_cell_gradient_at_the_loss_step_is_zero():
    """The state is the pair (h_t, c_t): dL/dc_T holds h_T fixed, and the loss reads only h_T."""
    model, batch = build("lstm")
    log_norms = recorded(model, batch, "exact")
    assert torch.isneginf(log_norms[-1, :, 1]).all() and torch.isfinite(log_norms[:-1]).all()


@pytest.mark.parametrize("recorder", ["exact", "autograd"])
@pytest.mark.parametrize("w", [0.9, 1.1, -0.9])
def test_linear_scalar_rnn_gain_is_abs_w_to_the_k(recorder, w):
    model, batch = build(
        "rnn", activation="identity", init="identity", scale=abs(w), hidden_size=1, seq_len=40, dtype=torch.float32
    )
    with torch.no_grad():
        model.weight_hh_l0.fill_(w)
    log_norms = recorded(model, batch, recorder)[:, :, 0]  # (T+1, batch)
    lag = torch.arange(40, -1, -1, dtype=torch.float64).unsqueeze(1)
    gain = (log_norms - log_norms[-1]).exp()
    torch.testing.assert_close(gain, (abs(w) ** lag).expand_as(gain), rtol=2e-6, atol=0)


@pytest.mark.parametrize("cell,scale,beyond", [("gru", 0.5, "below"), ("rnn", 3.0, "above")])
def test_exact_is_finite_far_outside_float32_range(cell, scale, beyond):
    columns = dict(
        cell=cell,
        activation="tanh",
        init="gaussian",
        scale=scale,
        seq_len=2000,
        hidden_size=32,
        input_size=32,
        num_layers=1,
        batch_size=4,
        seed=0,
        task="probe",
        recorder="exact",
        dtype="float32",
        device="cpu",
    )
    recording = record(RunSpec.from_columns(columns))
    ((_, log_norms),) = recording.profiles
    assert torch.isfinite(log_norms).all() and recording.flags == []
    log10_first = log_norms[0].median().item() / math.log(10)
    float32_decades = math.log10(torch.finfo(torch.float32).max)  # 38.5
    assert log10_first < -2 * float32_decades if beyond == "below" else log10_first > 2 * float32_decades


def test_autograd_underflow_and_overflow_are_flagged_not_raised():
    base = dict(
        activation="tanh",
        init="gaussian",
        seq_len=600,
        hidden_size=32,
        input_size=32,
        num_layers=1,
        batch_size=4,
        seed=0,
        task="probe",
        dtype="float32",
        device="cpu",
        cell="rnn",
    )
    for scale, expect in [(0.25, "underflow"), (3.0, "overflow")]:
        recording = record(RunSpec.from_columns({**base, "scale": scale, "recorder": "autograd"}))
        ((_, log_norms),) = recording.profiles
        assert expect in recording.flags  # an overflow also turns into nan where inf meets 0 in the backward
        assert (torch.isneginf if expect == "underflow" else torch.isposinf)(log_norms).any()
        exact_recording = record(RunSpec.from_columns({**base, "scale": scale, "recorder": "exact"}))
        ((_, exact),) = exact_recording.profiles
        assert exact_recording.flags == [] and torch.isfinite(exact).all()
        # Where autograd is in range, both agree.
        in_range = torch.isfinite(log_norms) & (log_norms.abs() < 80)
        assert ((log_norms[in_range] - exact[in_range]).abs() < 1e-3).all()


def test_status_flags_for_forward_divergence_and_nan():
    log_norms = torch.zeros(5, 2, 1)
    assert status_flags(log_norms, states_finite=True, recorder="exact") == []
    log_norms[1, 0, 0] = float("nan")
    assert status_flags(log_norms, states_finite=False, recorder="exact") == ["diverged", "nan"]


def test_flush_denormals_is_scoped():
    denormal = 1e-41  # below float32's smallest normal, 1.18e-38
    with flush_denormals():
        assert torch.tensor([denormal]).item() == 0.0
    assert torch.tensor([denormal]).item() != 0.0


def test_flush_denormals_leaves_the_callers_own_setting_on():
    """A caller who flushes denormals keeps flushing after a recording (it was switched off)."""
    denormal = 1e-41
    torch.set_flush_denormal(True)
    try:
        with flush_denormals():
            pass
        assert (torch.tensor([denormal]) * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)


FLUSH_PROBE = """
import sys, torch
from harness.core.recorders import flush_denormals, flush_denormals_everywhere
if sys.argv[1] == "everywhere":
    flush_denormals_everywhere()
torch.set_num_threads(2)
torch.ones(10**6).sum()  # torch's worker threads start here
with flush_denormals():
    product = torch.full((10**6,), 1e-20) * 1e-22  # 1e-42: a float32 denormal, computed by 2 threads
print((product != 0).float().mean().item())
"""


@pytest.mark.parametrize("mode,unflushed", [("everywhere", 0.0), ("scoped", None)])
def test_flush_reaches_torch_worker_threads(mode, unflushed):
    """Only a flush set before torch's thread pool starts reaches its workers (where 2 threads run)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FLUSH_PROBE, mode], capture_output=True, text=True, check=True)
    fraction = float(out.stdout)
    if unflushed is not None:
        assert fraction == unflushed
    else:  # the calling thread's share is flushed; a worker's share, if there is one, is not
        assert fraction < 1.0


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_probe_puts_the_unit_readout_on_every_sample(cell):
    """dL/dh_T = r for each sample (the batch is summed, and |r| = 1), so every sample's lag-0 norm is 1."""
    model, batch = build(cell, batch_size=5)
    log_norms = recorded(model, batch, "autograd")
    torch.testing.assert_close(log_norms[-1, :, 0], torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------------
# the exact recorder below the squaring floor (issue 27, item 1)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [1, 8])
@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e-20), (torch.float64, 1e-160)])
@pytest.mark.parametrize("path", ["written out", "hooks"])
def test_exact_recorder_keeps_gradients_whose_squares_underflow(hidden, dtype, scale, path):
    """An identity-activation rnn with W_hh = scale * Q (Q orthogonal) multiplies the gradient's norm by
    exactly `scale` per step back: log10 gain k log10(scale) at every lag k. Its entries are ~scale^k
    times the carried unit vector's, whose squares underflow: the norm must still be right."""
    from harness.core.cells import RecurrentNet
    from harness.core.init import initialise
    from harness.core.segments import record_profile

    seq_len, batch = 8, 3
    generator = torch.Generator().manual_seed(0)
    model = RecurrentNet("rnn", "identity", 4, hidden, 1).to(dtype)
    initialise(model, "orthogonal", scale, generator)
    x = torch.randn(seq_len, batch, 4, generator=generator).to(dtype)
    readout = torch.randn(hidden, generator=generator).to(dtype)
    loss = lambda outputs: (outputs[-1] @ readout).sum()
    with flush_denormals():  # as the command line records: denormals are zero
        if path == "written out":
            log_norms, _, _ = record_profile(model, x, loss, True, "exact", seq_len)
        else:
            states = model(x, model.initial_state(batch))
            log_norms = record_log_norms(loss(model.top_hidden(states[-1]).unsqueeze(0)), states, (hidden,), "exact")
    gain = (log_norms - log_norms[-1]) / math.log(10)  # (T+1, batch, 1); row T - k is lag k
    lags = torch.arange(seq_len, -1, -1, dtype=torch.float64).view(-1, 1, 1)
    expected = lags * math.log10(scale)
    assert torch.isfinite(log_norms).all(), f"{path}: {log_norms[:, 0, 0].tolist()}"
    assert (gain - expected).abs().max() < 1e-4 * seq_len * abs(math.log10(scale)), gain[:, 0, 0].tolist()
