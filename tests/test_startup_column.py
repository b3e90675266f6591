"""startup_s in the summary: a run's one-time start-up is a column of its own beside wall_time_s, and a
sweep written before runs recorded it still reads, its startup_s missing."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.lab import run as run_module
from harness.lab.results import collect
from tests.conftest import ROOT
from tests.test_results import compose_config

PAUSE = 0.4  # what a fresh process pays once before its first run: imports, thread pools, a device's context


def test_wall_time_is_the_runs_own_and_start_up_has_its_own_column(tmp_path: Path, monkeypatch):
    """The first run of a kind in the process pays the start-up (here PAUSE, on its first recording: the
    small copy's), the next of that kind pays none, a run of another cell its own once; wall_time_s is
    each run's own time, and the summary holds what each run's meta.json says, as floats."""
    monkeypatch.setattr(run_module, "STARTED", set())
    recorded = run_module.record
    calls = []

    def first_call_starts_up(spec, *args, **kwargs):
        if not calls:
            time.sleep(PAUSE)
        calls.append(spec.seq_len)
        return recorded(spec, *args, **kwargs)

    monkeypatch.setattr(run_module, "record", first_call_starts_up)
    for n, overrides in enumerate([("seed=0",), ("seed=1",), ("seed=0", "cell=gru")]):
        config = compose_config("seq_len=12", "hidden_size=4", "batch_size=3", *overrides)
        assert run_module.run(config, tmp_path / str(n)) == "ok"
    assert calls == [4, 12, 12, 4, 12]  # a small copy (seq_len 4) before the first run of each kind only
    first, second, gru = metas = [json.loads((tmp_path / str(n) / "meta.json").read_text()) for n in range(3)]
    assert first["startup_s"] >= PAUSE > first["wall_time_s"]  # the start-up is not the run's own time
    assert second["startup_s"] == 0.0 and gru["startup_s"] > 0.0
    _, summary, _ = collect(tmp_path)
    summary = summary.sort_values("run_dir")
    assert summary.startup_s.tolist() == [meta["startup_s"] for meta in metas]
    assert summary.wall_time_s.tolist() == [meta["wall_time_s"] for meta in metas]
    assert summary.startup_s.dtype == "float64"
    assert pd.read_parquet(tmp_path / "summary.parquet").startup_s.dtype == "float64"
    assert pd.read_csv(tmp_path / "summary.csv").startup_s.tolist() == pytest.approx(summary.startup_s.tolist())


def test_a_sweep_written_before_startup_s_reads_with_it_missing(tmp_path: Path):
    """tests/data/schema0_sweep's meta.json files have wall_time_s but no startup_s: NaN, as a float column."""
    old = tmp_path / "old"
    shutil.copytree(ROOT / "tests" / "data" / "schema0_sweep", old)
    assert not any("startup_s" in json.loads(meta.read_text()) for meta in old.glob("*/meta.json"))
    (old / "summary.parquet").unlink()
    _, summary, _ = collect(old)
    assert summary.status.tolist() == ["ok"] * 4 and summary.wall_time_s.notna().all()
    assert summary.startup_s.dtype == "float64" and summary.startup_s.isna().all()
    assert pd.read_parquet(old / "summary.parquet").startup_s.isna().all()
