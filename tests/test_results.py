"""Run folders and tables: schema, quantiles, atomic writes, failures recorded without stopping others."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from harness.cli.paths import CONF_DIR
from harness.core.runfolder import DONE
from harness.core.spec import VALIDATORS, config_columns, flat_config
from harness.lab import run as run_module
from harness.lab.results import collect
from harness.lab.tables import profile_frame, write_parquet


def test_profile_frame_rows_and_quantiles():
    log_norms = torch.randn(6, 9, 4, dtype=torch.float64)  # (T+1, batch, layers*states)
    log_norms[2, :5, 1] = -math.inf
    frame = profile_frame(log_norms, "abc", {"cell": "lstm", "num_layers": 2}, ("h", "c"))
    assert len(frame) == 6 * 4
    row = frame[(frame.layer == 1) & (frame.state == "c") & (frame.t == 4)].iloc[0]
    expected = np.sort(log_norms[4, :, 3].numpy() / math.log(10))
    assert row.log10_norm == expected[4] and row.log10_norm_q10 == expected[1]  # nearest rank of 9
    assert row.lag == 1 and row.step == 0 and row.run_id == "abc"
    assert frame[(frame.layer == 0) & (frame.state == "c") & (frame.t == 2)].log10_norm.item() == -math.inf


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "table.parquet"
    write_parquet(pd.DataFrame({"a": [1]}), path)
    with pytest.raises(Exception):  # noqa: B017  whatever pyarrow raises, the old table stays
        write_parquet(pd.DataFrame({"a": [object()]}), path)  # pyarrow cannot store it
    assert pd.read_parquet(path).a.tolist() == [1] and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def compose_config(*overrides):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_every_config_key_has_a_validator():
    for cell in ("rnn", "lstm", "gru"):
        columns = flat_config(compose_config(f"cell={cell}"))
        assert set(columns) <= set(VALIDATORS), set(columns) - set(VALIDATORS)


def test_failing_run_is_recorded_and_others_still_collect(tmp_path, monkeypatch):
    good = tmp_path / "0"
    run_module.run(compose_config("seq_len=5", "hidden_size=3"), good)

    def broken(columns, progress=False):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(run_module, "record", broken)
    bad = tmp_path / "1"
    status = run_module.run(compose_config("seq_len=5", "hidden_size=3", "scale=2"), bad)
    assert status == "failed" and (bad / DONE).exists()
    assert json.loads((bad / "meta.json").read_text())["error"] == "RuntimeError: out of memory, say"
    for folder in (good, bad):
        (folder / ".hydra").mkdir()  # as Hydra leaves it
    profile, summary, _ = collect(tmp_path)
    assert summary.status.tolist() == ["ok", "failed"] and set(profile.scale) == {1.0}


def test_config_columns_normalise_numbers():
    columns = config_columns(compose_config("scale=2", "cell=lstm"))
    assert columns["scale"] == 2.0 and isinstance(columns["scale"], float)
    assert columns["cell"] == "lstm" and columns["cell.forget_bias"] == 0.0


def test_results_of_the_first_schema_still_load(tmp_path):
    """tests/data/schema0_sweep was written before the typed run specification (other run ids, no
    cell._target_ column): plot and collect still read it. (It also predates folder markers: its
    .harness was added as docs/sweeps.md says to, so that its tables may be rewritten.)"""
    import shutil

    from harness.cli.plot import main as plot_main
    from tests.conftest import ROOT

    old = tmp_path / "old"
    shutil.copytree(ROOT / "tests" / "data" / "schema0_sweep", old)
    assert plot_main([str(old)]) == 0
    assert {p.name for p in (old / "figures").glob("*.png")} == {"profiles.png", "heatmap.png", "phase.png"}
    (old / "summary.parquet").unlink()
    _, summary, _ = collect(old)
    assert summary.status.tolist() == ["ok"] * 4 and set(summary.cell) == {"rnn", "lstm"}


def test_profiles_saved_from_python_are_plotted_like_cli_runs(tmp_path):
    import harness
    from harness.cli.plot import main as plot_main

    torch.manual_seed(0)
    for module in (torch.nn.LSTM(3, 6), torch.nn.GRU(3, 6)):
        harness.record(module, torch.randn(12, 4, 3)).save(tmp_path / type(module).__name__)
    assert plot_main([str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(summary.cell) == ["gru", "lstm"] and (summary.status == "ok").all()
    assert summary.rate.notna().all() and (tmp_path / "figures" / "profiles.png").exists()


def test_derived_summary_columns_against_closed_forms(tmp_path):
    """A 1-unit linear rnn's gain per step is exactly |w|: rate_init is ln(scale) at step 0, rate is the
    trained weight's ln|w| at the last recording, and each gap is rate minus its prediction (linear
    theory is ln|w| of the initial weight), so a column taken from the wrong step or of the wrong
    sign fails here."""
    import math

    from hydra import compose, initialize_config_dir

    from harness.cli.paths import CONF_DIR
    from harness.lab import run as run_module

    settings = [
        "activation=identity",
        "init=orthogonal",
        "hidden_size=1",
        "task=adding",
        "seq_len=12",
        "batch_size=8",
        "train.steps=6",
        "train.record_every=3",
        "train.lr=0.05",
        "dtype=float64",
        "scale=0.8",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=settings)
    run_module.run(cfg, tmp_path / "0")
    _, summary, _ = collect(tmp_path)
    row = summary.iloc[0]
    assert row.rate_init == pytest.approx(math.log(0.8), abs=1e-9)
    assert row.theory_linear == pytest.approx(math.log(0.8), abs=1e-9)
    profile = pd.read_parquet(tmp_path / "0" / "profile.parquet")
    last = profile[profile.step == profile.step.max()].set_index("lag").log10_norm
    trained = (last[10] - last[0]) / 10 * math.log(10)  # ln|w| of the trained weight, read off the profile
    assert row.rate == pytest.approx(trained, abs=1e-9) and abs(row.rate - row.rate_init) > 1e-3
    assert row.gain_per_step == pytest.approx(math.exp(trained)) and row.half_life == pytest.approx(
        math.log(2) / abs(trained)
    )
    for name in ("linear", "mean_field", "lyapunov"):
        assert row[f"gap_{name}"] == pytest.approx(row.rate - row[f"theory_{name}"], nan_ok=True)
    assert row.gap_linear == pytest.approx(trained - math.log(0.8), abs=1e-9)


def test_results_are_made_as_the_umask_says(tmp_path):
    """Written through a temporary file (0600 by mkstemp's default), results still get 0666 less the
    umask, as any file the process makes: a cluster group's umask 002 gives group-writable tables."""
    import os

    from harness.core.runfolder import write_text

    for mask, mode in [(0o002, 0o664), (0o077, 0o600)]:
        previous = os.umask(mask)
        try:
            write_text("x", tmp_path / f"{mask}.txt")
        finally:
            os.umask(previous)
        assert (tmp_path / f"{mask}.txt").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize(
    "scale, regime, law",
    [(0.8, "vanishing", "exponential"), (1.0, "stable", "flat"), (1.25, "exploding", "exponential")],
)
def test_gain_regime_and_law_columns_against_a_linear_scalar_rnn(tmp_path, scale, regime, law):
    """A 1-unit identity rnn's gain over k steps is exactly |w|^k: log10_gain is T log10(scale), the
    rate ln(scale) decides the regime, the profile is a straight line in k (exponential; flat at 1)
    and its log-log slope is 0 only where nothing changes."""
    import math

    from hydra import compose, initialize_config_dir

    from harness.cli.paths import CONF_DIR
    from harness.lab import run as run_module

    seq_len = 40
    settings = [
        "activation=identity",
        "init=orthogonal",
        "hidden_size=1",
        "input_size=1",
        f"seq_len={seq_len}",
        "batch_size=4",
        "dtype=float64",
        f"scale={scale}",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=settings)
    run_module.run(cfg, tmp_path / "0")
    _, summary, _ = collect(tmp_path)
    row = summary.iloc[0]
    assert row.log10_gain == pytest.approx(seq_len * math.log10(scale), abs=1e-9)
    assert row.rate == pytest.approx(math.log(scale), abs=1e-9)
    assert (row.regime, row.decay_law) == (regime, law)
    assert (row.power_exponent == pytest.approx(0, abs=1e-12)) == (scale == 1.0)


def test_decay_law_and_power_exponent_of_a_power_law():
    """||dL/dh_{T-k}|| = (k + 1)^-1/2 (an lru with its ring 0..1, in expectation): a power law of
    exponent -1/2, whatever the window."""
    from harness.core.analysis import fit_profile

    lag = np.arange(0, 401)
    fit = fit_profile(lag, -0.5 * np.log10(lag + 1))
    assert fit["decay_law"] == "power" and fit["power_exponent"] == pytest.approx(-0.5, abs=1e-12)
    assert fit["log10_gain"] == pytest.approx(-0.5 * np.log10(401), abs=1e-12)
