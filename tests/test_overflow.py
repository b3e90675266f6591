"""A network whose forward pass overflows is reported as diverged at its first non-finite step, never as
vanishing: no `zero` flag, no -inf rate, log10_gain or Lyapunov exponent (issue 27, item 2)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from harness.core.analysis import fit_profile
from harness.core.recorders import Overflow, status_flags
from harness.core.remedies import remedies_for
from harness.core.spec import RunSpec, describe
from harness.lab.build import build_run
from harness.lab.results import collect
from harness.lab.run import record, run

# A relu rnn at scale 10 grows about 4x per step: float32 overflows within ~70 steps, float64 within ~600.
OVERFLOWING = dict(
    cell="rnn",
    activation="relu",
    scale=10.0,
    hidden_size=16,
    input_size=16,
    batch_size=4,
    task="probe",
)
SEQ_LEN = {"float32": 120, "float64": 800}


def first_nonfinite_step(spec: RunSpec) -> int | None:
    """The first t whose state h_t is not finite in any sample, by torch.nn.RNN with the run's own weights
    and inputs: independent of the harness's cells and recorders."""
    setup = build_run(spec, remedies_for(spec))
    model, inputs = setup.model, setup.held_out.inputs
    reference = torch.nn.RNN(spec.input_size, spec.hidden_size, nonlinearity="relu").to(inputs.dtype)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(reference, name).copy_(getattr(model, name))
        outputs, _ = reference(inputs)  # h_1 .. h_T
    bad = (~torch.isfinite(outputs)).flatten(1).any(dim=1).nonzero()
    return int(bad[0]) + 1 if len(bad) else None


def top_h_fit(log_norms: torch.Tensor) -> dict:
    """The headline fit of a one-layer rnn's recording, as the tables compute it (batch median of log10)."""
    log10 = (log_norms[:, :, 0] / math.log(10)).numpy()
    with warnings.catch_warnings():  # an all-nan step (every sample overflowed) is nan: right
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanquantile(log10, 0.5, axis=1, method="nearest")
    return fit_profile(np.arange(len(median) - 1, -1, -1), median)


@pytest.mark.parametrize(
    "recorder, dtype", [("exact", "float32"), ("autograd", "float32"), ("exact", "float64"), ("autograd", "float64")]
)
def test_an_overflowing_network_is_diverged_at_its_first_nonfinite_step_not_vanishing(recorder, dtype):
    spec = RunSpec.from_columns({**OVERFLOWING, "seq_len": SEQ_LEN[dtype], "recorder": recorder, "dtype": dtype})
    expected = first_nonfinite_step(spec)
    assert expected is not None and expected < spec.seq_len  # the case this test is about
    recording = record(spec)
    assert "diverged" in recording.flags
    assert not {"zero", "underflow"} & set(recording.flags)  # a growing network's garbage is not a zero gradient
    assert recording.extras["diverged_at"] == expected
    ((_, log_norms),) = recording.profiles
    assert not torch.isneginf(log_norms).any()  # every sample overflowed: nothing measured, nothing -inf
    fit = top_h_fit(log_norms)
    for column in ("rate", "log10_gain", "power_exponent"):
        assert not (isinstance(fit[column], float) and math.isinf(fit[column])), column
    assert fit["regime"] != "vanishing"
    assert math.isnan(recording.extras["theory_lyapunov"])
    assert f"overflowed at step {expected}" in recording.extras["theory_note"]
    assert recording.extras["theory_mean_field"] != -math.inf


def test_a_network_that_stays_finite_is_unchanged():
    spec = RunSpec.from_columns({**OVERFLOWING, "scale": 1.0, "seq_len": 120, "recorder": "exact", "dtype": "float32"})
    assert first_nonfinite_step(spec) is None
    recording = record(spec)
    ((_, log_norms),) = recording.profiles
    assert "diverged" not in recording.flags and recording.extras["diverged_at"] is None
    assert not torch.isnan(log_norms).any()
    assert math.isfinite(recording.extras["theory_lyapunov"])
    assert "overflow" not in recording.extras["theory_note"]
    assert top_h_fit(log_norms)["regime"] == "vanishing"


def test_only_the_samples_that_stayed_finite_carry_gradient_flags():
    log_norms = torch.zeros(5, 3, 1, dtype=torch.float64)
    log_norms[:, 0] = -math.inf  # sample 0: a zero gradient (dead relus)
    log_norms[:, 2] = math.nan  # sample 2 overflowed in the forward pass: left out, not measured
    # Without knowing which samples overflowed, a diverged recording's zeros are not evidence of vanishing.
    assert status_flags(log_norms, states_finite=False, recorder="exact") == ["diverged", "nan"]
    # Knowing it, the samples that stayed finite keep their own flags.
    overflow = Overflow(torch.tensor([-1, -1, 7]))
    assert overflow.at == 7
    assert status_flags(log_norms, False, "exact", overflow) == ["diverged", "zero"]
    # Only the loss overflowed (no state did): every sample was measured, its zeros are its own.
    loss_only = Overflow(torch.tensor([-1, -1]))
    assert loss_only.at is None
    assert status_flags(log_norms[:, :2], False, "exact", loss_only) == ["diverged", "zero"]


def test_the_summary_has_diverged_at_as_a_nullable_integer(tmp_path):
    defaults = {key: default for key, default, _ in describe()}  # a run's whole config, as Hydra resolves it
    common = {**defaults, **OVERFLOWING, "seq_len": 60, "recorder": "exact", "dtype": "float32"}
    assert run({**common, "scale": 10.0}, tmp_path / "0") == "diverged"
    assert run({**common, "scale": 1.0}, tmp_path / "1") == "ok"
    _, summary, _ = collect(tmp_path)
    summary = summary.set_index("scale")
    assert summary.diverged_at.dtype == "Int64"
    expected = first_nonfinite_step(RunSpec.from_columns({**OVERFLOWING, "seq_len": 60, "scale": 10.0}))
    assert summary.diverged_at[10.0] == expected and summary.diverged_at.isna()[1.0]
    assert summary.status[10.0] == "diverged" and not np.isneginf(summary.log10_gain[10.0])
    assert math.isnan(summary.theory_lyapunov[10.0]) and "overflowed" in summary.theory_note[10.0]


@pytest.mark.parametrize("recorder", ["exact", "autograd"])
def test_harness_record_on_an_overflowing_model_says_diverged_and_fits_nothing(recorder):
    """The Python API on a user's nn.RNN: diverged at the first step torch's own forward is not finite,
    no zero flag, and a fit of NaN (nothing was measured), never a -inf gain."""
    import harness

    torch.manual_seed(0)
    model = torch.nn.RNN(4, 16, nonlinearity="relu")
    with torch.no_grad():
        model.weight_hh_l0.mul_(40)
    inputs = torch.randn(200, 3, 4)
    with torch.no_grad():
        states, _ = model(inputs)
    first = int((~torch.isfinite(states)).flatten(1).any(dim=1).nonzero()[0]) + 1  # output t is h_{t+1}
    profile = harness.record(model, inputs, recorder=recorder)
    assert "diverged" in profile.flags and "zero" not in profile.flags
    assert profile.diverged_at == first
    fit = profile.fit()
    assert math.isnan(fit["log10_gain"]) and math.isnan(fit["rate"]) and fit["regime"] != "vanishing"
