"""Drawing stored tables needs no model (issue 26, items 4 and 5): `import harness` loads no torch,
harness.plot and harness.collect are to run with torch blocked by an import hook, harness.plot names
the runs that need attention on the terminal as collect does, and a damaged row leaves the integer
columns integers (nullable Int64 where it leaves a gap) in every table."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.cli.collect import main as collect_main
from harness.cli.plot import main as plot_main
from harness.lab.results import boolean_columns, true_or_false
from tests.conftest import ROOT, cli_env

# `python -m MODULE ARGS...` (or `python -c CODE`) with every import of torch refused, as without torch,
# and of Hydra and OmegaConf, which composing a sweep needs and reading one does not (their import was
# ~0.13 s of harness.plot's start-up).
WITHOUT_TORCH = """
import runpy, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "hydra", "omegaconf"):
            raise ImportError(f"blocked: {name}")

sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
if sys.argv[0] == "-c":
    exec(sys.argv[1])
else:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""
INTEGERS = ["seq_len", "hidden_size", "input_size", "num_layers", "batch_size", "seed", "train.steps"]


def without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], cwd=ROOT, env=cli_env(), capture_output=True, text=True
    )


@pytest.fixture
def sweep(tmp_path):
    """A finished four-run sweep (tests/data/schema0_sweep: stored, so no model runs here)."""
    folder = tmp_path / "sweep"
    shutil.copytree(ROOT / "tests" / "data" / "schema0_sweep", folder)
    return folder


@pytest.fixture
def sweep_copy(tmp_path):
    """A second copy of the stored sweep, left undamaged."""
    folder = tmp_path / "intact"
    shutil.copytree(ROOT / "tests" / "data" / "schema0_sweep", folder)
    return folder


@pytest.fixture
def damaged(sweep):
    """sweep with run 1's profile truncated, run 2's meta.json garbage and a linked folder (skipped)."""
    profile = sweep / "1" / "profile.parquet"
    profile.write_bytes(profile.read_bytes()[:100])
    (sweep / "2" / "meta.json").write_text("{")
    (sweep / "link").symlink_to(sweep / "3", target_is_directory=True)
    return sweep


def test_importing_the_package_loads_no_torch_and_every_public_name_is_there():
    code = (
        "import sys, harness; print('torch' in sys.modules); "
        "print(harness.ConfigError.__module__, sorted(set(harness.__all__) - set(dir(harness))))"
    )
    result = without_torch("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "harness.core.errors", "[]"]

    import importlib

    import harness

    for name in harness.__all__:  # each resolves to its module's own object
        assert getattr(harness, name) is not None
    assert harness.record is importlib.import_module("harness.lab.api").record
    assert harness.GradientProfile is importlib.import_module("harness.lab.profile").GradientProfile
    assert harness.loggers is importlib.import_module("harness.lab.loggers")
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        harness.nothing  # noqa: B018


def test_plot_and_collect_run_with_torch_blocked(sweep):
    collected = without_torch("harness.collect", str(sweep))
    assert collected.returncode == 0, collected.stderr
    drawn = without_torch("harness.plot", str(sweep))
    assert drawn.returncode == 0, drawn.stderr
    assert (sweep / "figures" / "profiles.png").exists()


def test_plot_names_the_runs_that_need_attention_on_the_terminal(damaged, capsys):
    assert collect_main([str(damaged)]) == 1
    capsys.readouterr()
    assert plot_main([str(damaged)]) == 0
    out = capsys.readouterr().out
    assert "3 runs need attention (2 damaged, 1 skipped):" in out
    assert f"  damaged: {damaged / '1'} (ArrowInvalid: " in out
    assert f"  damaged: {damaged / '2'} (JSONDecodeError: " in out
    assert f"  skipped: {damaged / 'link'} (a symbolic link: not read)" in out
    # A filter names the runs it keeps (2, an lstm) and those whose settings are unknown (the link), not
    # the others (1, an rnn).
    assert plot_main([str(damaged), "--where", "cell=lstm", "--out", str(damaged.parent / "lstm")]) == 0
    out = capsys.readouterr().out
    assert "2 runs need attention (1 damaged, 1 skipped)" in out and f"damaged: {damaged / '2'}" in out
    assert f"damaged: {damaged / '1'}" not in out


def test_plot_of_a_finished_sweep_names_nothing(sweep, capsys):
    assert plot_main([str(sweep)]) == 0
    assert "need attention" not in capsys.readouterr().out


def test_integer_columns_stay_integers_whatever_rows_are_damaged(damaged, tmp_path):
    assert collect_main([str(damaged)]) == 1
    summary = pd.read_parquet(damaged / "summary.parquet")
    assert summary.status.tolist().count("damaged") == 2
    for column in [*INTEGERS, "fit_points", "fit_lag_min", "fit_lag_max"]:
        assert str(summary[column].dtype) == "Int64", column  # a gap where a row has no value
        # Settings: the link has none (the damaged rows keep theirs); fits: no damaged row has one either.
        assert summary[column].isna().sum() == (1 if column in INTEGERS else 3), column
    assert summary.seq_len.dropna().tolist() == [6, 6, 6, 6]
    csv = pd.read_csv(damaged / "summary.csv", dtype=str, keep_default_na=False)
    assert sorted(csv.seq_len) == ["", "6", "6", "6", "6"] and "3" in set(csv.hidden_size)  # never 6.0
    fits = pd.read_parquet(damaged / "fits.parquet")
    for column in ["seq_len", "hidden_size", "step", "layer", "fit_points"]:
        assert pd.api.types.is_integer_dtype(fits[column]), column
    profile = pd.read_parquet(damaged / "profile.parquet")
    for column in ["seq_len", "hidden_size", "step", "t"]:
        assert pd.api.types.is_integer_dtype(profile[column]), column

    # A summary stored with floats (written before this): the runs plot writes elsewhere have integers.
    summary.astype({c: "float64" for c in INTEGERS}).to_parquet(damaged / "summary.parquet", index=False)
    assert plot_main([str(damaged), "--where", "scale=0.5,1,2", "--out", str(tmp_path / "out")]) == 0
    plotted = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    for column in INTEGERS:
        assert pd.api.types.is_integer_dtype(plotted[column]), column


def test_true_or_false_columns_stay_masks_whatever_rows_are_damaged(damaged, sweep_copy):
    """The fit's flags have no value for the damaged and skipped rows; held as objects (True, False and
    NaN) they were no mask (summary[summary.horizon_censored] raised). Nullable booleans: the intact
    runs' values, gaps where there is none, in collect's table and in the one plot writes."""
    assert collect_main([str(sweep_copy)]) == 0
    assert collect_main([str(damaged)]) == 1
    assert plot_main([str(damaged), "--out", str(damaged.parent / "plotted")]) == 0
    intact = pd.read_parquet(sweep_copy / "summary.parquet").set_index("run_dir")
    for folder in (damaged, damaged.parent / "plotted"):
        summary = pd.read_parquet(folder / "summary.parquet")
        for column in ("truncated", "horizon_censored"):
            assert str(summary[column].dtype) == "boolean", column
            read = summary.set_index("run_dir")[column]
            assert read[read.notna()].to_dict() == intact[column].drop(["1", "2"]).to_dict(), column
            assert sorted(read[read.isna()].index) == ["1", "2", "link"], column
        censored = summary[summary.horizon_censored].run_dir.tolist()
        assert censored == [run for run in intact.index[intact.horizon_censored] if run not in ("1", "2")]


def test_a_column_of_true_or_false_held_as_missing_numbers_elsewhere_stays_true_or_false():
    """Joined with a table that holds it as missing numbers (an untrained sweep's solved), a true/false
    column is 0.0, 1.0 and NaN, or objects, by the tables' order; either way it is boolean again."""
    untrained, trained = pd.DataFrame({"solved": [np.nan, np.nan]}), pd.DataFrame({"solved": [True, False]})
    for frames, expected in (
        ([untrained, trained], [None, None, True, False]),
        ([trained, untrained], [True, False, None, None]),
    ):
        joined = true_or_false(pd.concat(frames, ignore_index=True), boolean_columns(*frames))
        assert str(joined.solved.dtype) == "boolean"
        assert [None if value is pd.NA else value for value in joined.solved] == expected
    assert str(true_or_false(untrained.copy()).solved.dtype) == "float64"  # no true or false value: left as it is


def test_plot_keeps_true_or_false_columns_and_filters_on_them(damaged, tmp_path, capsys):
    """A summary stored before collect kept true/false columns boolean (objects: True, False, NaN):
    the tables plot writes hold them as booleans, and --where takes true, false, 1 or 0 for them (a
    gap is kept by neither); any other word is refused in one line."""
    assert collect_main([str(damaged)]) == 1
    stored = pd.read_parquet(damaged / "summary.parquet").astype({"truncated": object})
    stored.loc[stored.run_dir == "3", "truncated"] = True  # runs 0 and 3 are read: one of each
    stored.to_parquet(damaged / "summary.parquet", index=False)
    assert pd.read_parquet(damaged / "summary.parquet").truncated.tolist()[:4] == [False, None, None, True]
    capsys.readouterr()
    assert plot_main([str(damaged), "--out", str(tmp_path / "all")]) == 0
    assert str(pd.read_parquet(tmp_path / "all" / "summary.parquet").truncated.dtype) == "boolean"
    for words, runs in (
        (("false", "False", "0"), ["0"]),
        (("true", "TRUE", "1"), ["3"]),
        (("true,false",), ["0", "3"]),
    ):
        for word in words:
            out = tmp_path / word.replace(",", "_")
            assert plot_main([str(damaged), "--where", f"truncated={word}", "--out", str(out)]) == 0
            kept = pd.read_parquet(out / "summary.parquet")
            assert sorted(kept.run_dir[kept.status == "ok"]) == runs, word
    capsys.readouterr()
    assert plot_main([str(damaged), "--where", "truncated=maybe", "--out", str(tmp_path / "no")]) == 2
    assert "--where truncated=maybe: truncated is true or false; maybe is neither (expected true, false, 1 or 0)" in (
        capsys.readouterr().err
    )


def test_a_damaged_run_keeps_its_settings_and_the_report_its_swept_axes(damaged, sweep_copy):
    """A damaged row had no settings at all: the report then counted every setting as swept (its NaN a
    second value) and held nothing fixed. A run whose profile is damaged keeps meta.json's settings; one
    whose meta.json is damaged, Hydra's record of them; a row with none (the link) sweeps nothing."""
    assert collect_main([str(sweep_copy)]) == 0
    assert collect_main([str(damaged)]) == 1
    summary = pd.read_parquet(damaged / "summary.parquet").set_index("run_dir")
    intact = pd.read_parquet(sweep_copy / "summary.parquet").set_index("run_dir")
    for run in ("1", "2"):
        assert summary.status[run] == "damaged"
        assert summary.loc[run, ["cell", "scale", "seq_len", "hidden_size"]].tolist() == (
            intact.loc[run, ["cell", "scale", "seq_len", "hidden_size"]].tolist()
        ), run

    def settings(folder):
        text = (folder / "report.html").read_text()
        return [line for line in text.splitlines() if "<b>Swept:</b>" in line or "<b>Held fixed:</b>" in line]

    assert settings(damaged) == settings(sweep_copy)
    assert settings(damaged)[0] == "<p><b>Swept:</b> scale (2 values), cell (2 values)</p>"


def test_a_sweep_without_damage_keeps_plain_int64(sweep):
    assert collect_main([str(sweep)]) == 0
    summary = pd.read_parquet(sweep / "summary.parquet")
    assert all(summary[c].dtype == "int64" for c in INTEGERS)
