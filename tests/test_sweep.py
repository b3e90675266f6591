"""Sweeps: the fast path composes as Hydra does and gives the basic path's runs; worker processes and
submitit give the same numbers; a failing run, a kill -9 and a reused folder are handled."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import OmegaConf

from harness.cli.paths import CONF_DIR
from harness.cli.sweep.chunks import in_process, parallelism
from harness.cli.sweep.jobs import Composer
from harness.core.errors import ConfigError
from tests.conftest import GRID, ROOT, assert_same_tables, cli_env, run_cli


def loader_and_master():
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    master = loader.load_configuration("config", overrides=["hydra.sweep.dir=/tmp/sweep"], run_mode=RunMode.MULTIRUN)
    return loader, master


JOBS = [
    ["cell=lstm", "scale=2.0"],
    ["experiment=quickstart", "cell=gru", "scale=0.5"],  # the experiment's values, then the job's
    ["cell.forget_bias=1.5", "cell=lstm"],  # a group's field set before the group is chosen
    ["remedy=clip", "train.clip_norm=2.0", "task=adding"],  # a value over what a group file set
    ["seq_len=7", "+hydra.job.env_set.HARNESS_X=1"],  # a hydra value: composed whole
]


@pytest.mark.parametrize("overrides", JOBS, ids=[" ".join(j) for j in JOBS])
def test_composer_gives_hydras_config(overrides):
    loader, master = loader_and_master()
    job = Composer(loader, master).job(3, overrides)
    hydra = loader.load_sweep_config(master, overrides)
    expected = OmegaConf.to_container(hydra, resolve=False, enum_to_str=True)
    expected_hydra = expected.pop("hydra")
    assert job.config == expected
    for key in ("overrides", "runtime", "sweep", "job_logging"):
        assert job.hydra[key] == expected_hydra[key], key
    assert {**job.hydra["job"], "num": None, "id": None} == {**expected_hydra["job"], "num": None, "id": None}
    assert job.hydra["job"]["num"] == 3 and job.subdir == "3" and job.overrides == expected_hydra["overrides"]["task"]


def test_composer_refuses_a_bad_value_before_any_run():
    loader, master = loader_and_master()
    with pytest.raises(ConfigError, match="seq_len=0: expected an integer >= 1"):
        Composer(loader, master).job(0, ["seq_len=0"])


@pytest.mark.slow
def test_fast_and_basic_paths_give_the_same_runs(tmp_path, reference):
    fast, result = reference
    assert "sweep: 8/8 runs done, 0 failed" in result.stderr  # the progress line's last state
    basic = tmp_path / "basic"
    run_cli(*GRID, "hydra/sweeper=basic", "hydra/launcher=basic", f"hydra.sweep.dir={basic}", cwd=tmp_path)
    assert_same_tables(fast, basic)
    for num in range(8):
        for name in ("config.yaml", "overrides.yaml"):
            assert OmegaConf.load(fast / str(num) / ".hydra" / name) == OmegaConf.load(
                basic / str(num) / ".hydra" / name
            )
        ours, theirs = (
            yaml.safe_load((path / str(num) / ".hydra" / "hydra.yaml").read_text())["hydra"] for path in (fast, basic)
        )
        assert ours["job"] == theirs["job"] and ours["overrides"]["task"] == theirs["overrides"]["task"]
        for choices in (ours["runtime"]["choices"], theirs["runtime"]["choices"]):
            del choices["hydra/sweeper"], choices["hydra/launcher"]
        assert ours["runtime"]["choices"] == theirs["runtime"]["choices"]
        assert (fast / str(num) / "harness.log").read_text().count("status ok") == 1


def read_every_table(root, stop, seen):
    """Read each run's files over and over while workers write them: a torn write would raise."""
    while not stop.is_set():
        for path in root.glob("*/profile.parquet"):
            pd.read_parquet(path)
            seen.add(path)
        for path in root.glob("*/meta.json"):
            json.loads(path.read_text())


@pytest.mark.slow
def test_worker_processes_give_the_same_tables_and_never_a_torn_file(tmp_path, reference):
    out, stop, seen = tmp_path / "joblib", threading.Event(), set()
    out.mkdir()
    reader = threading.Thread(target=read_every_table, args=(out, stop, seen))
    reader.start()
    try:
        run_cli(
            *GRID,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.chunks=3",
            f"hydra.sweep.dir={out}",
            cwd=tmp_path,
        )
    finally:
        stop.set()
        reader.join()
    assert_same_tables(reference[0], out)
    assert seen and not [p for p in out.rglob(".*.*") if p.is_file()]  # no temporary file left behind
    metas = [json.loads((out / str(num) / "meta.json").read_text()) for num in range(8)]
    assert {m["torch_threads"] for m in metas} == {max(1, (os.cpu_count() or 1) // 2)}
    assert sorted(p.name for p in (out / ".chunks").glob("*.json")) == ["0.json", "1.json", "2.json"]


@pytest.mark.slow
def test_submitit_local_sweep_runs(tmp_path, reference):
    out = tmp_path / "submitit"
    run_cli(*GRID, "hydra/launcher=submitit_local", "hydra.sweeper.chunks=2", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert_same_tables(reference[0], out)
    assert list((out / ".submitit").iterdir())  # submitit's own job records


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, launcher):
    out = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "scale=0.5,0.7,2",
        "seq_len=8",
        "hidden_size=4",
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={out}",
        cwd=tmp_path,
        check=False,
        env=cli_env(scale=0.7),
    )
    assert result.returncode == 1
    summary = pd.read_csv(out / "summary.csv")
    failed = summary[summary.status == "failed"]
    assert failed.scale.tolist() == [0.7] and failed.error.item() == "RuntimeError: injected fault at scale=0.7"
    assert (summary[summary.scale != 0.7].status == "ok").all() and len(summary) == 3
    assert f"failed: {failed.run_dir.item()} (RuntimeError: injected fault at scale=0.7)" in result.stdout
    assert "1 failed" in result.stderr
    assert "Traceback" in (out / str(failed.run_dir.item()) / "harness.log").read_text()


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_9_then_the_same_command_finishes_the_sweep(tmp_path, reference):
    """No sweep folder given: the rerun finds the interrupted one by its runs' hashes."""
    sweeps = tmp_path / "results" / "adhoc"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "harness", *GRID],
        cwd=tmp_path,
        env=cli_env(sleep=0.4),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(list(sweeps.glob("*/*/DONE"))) >= 3)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    (folder,) = sweeps.iterdir()
    finished = {p.parent.name: (p.parent / "meta.json").stat().st_mtime_ns for p in folder.glob("*/DONE")}
    assert 3 <= len(finished) < 8 and not (folder / "summary.csv").exists()

    result = run_cli(*GRID, cwd=tmp_path)
    assert f"resuming {folder.relative_to(tmp_path)}: {len(finished)} of 8 runs finished before" in result.stderr
    assert list(sweeps.iterdir()) == [folder]
    assert {name: (folder / name / "meta.json").stat().st_mtime_ns for name in finished} == finished
    invocations = json.loads((folder / "sweep.json").read_text())["invocations"]
    assert invocations[-1]["ran"] == 8 - len(finished) and invocations[-1]["kept"] == len(finished)
    assert_same_tables(reference[0], folder)

    # A third time: the sweep is finished, so a new folder is made and every run computed afresh.
    time.sleep(1.1)  # the folder name has whole seconds
    run_cli(*GRID, cwd=tmp_path)
    assert len(list(sweeps.iterdir())) == 2


def test_a_folder_holding_another_sweep_is_refused(tmp_path):
    out = tmp_path / "sweep"
    run_cli("-m", "scale=0.5,2", "seq_len=8", "hidden_size=4", f"hydra.sweep.dir={out}", cwd=tmp_path)
    before = (out / "0" / "meta.json").read_bytes()
    result = run_cli(
        "-m", "scale=1,3", "seq_len=8", "hidden_size=4", f"hydra.sweep.dir={out}", cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: hydra.sweep.dir={out}: holds another sweep (2 runs, not these 2); "
        "expected a new folder, or this sweep's own"
    )
    assert (out / "0" / "meta.json").read_bytes() == before


def test_parallelism_follows_the_launchers_settings():
    cores = os.cpu_count() or 1
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))

    def launcher(*overrides):
        return loader.load_configuration("config", list(overrides), run_mode=RunMode.MULTIRUN).hydra.launcher

    assert in_process(launcher()) and parallelism(launcher()) == (1, None)
    assert parallelism(launcher("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")) == (2, max(1, cores // 2))
    assert parallelism(launcher("hydra/launcher=joblib")) == (cores, 1)  # n_jobs=-1: every core
    assert parallelism(launcher("hydra/launcher=submitit_local")) == (cores, 1)
    assert parallelism(launcher("hydra/launcher=slurm")) == (16, 4)  # conf/hydra/launcher/slurm.yaml
    assert not in_process(launcher("hydra/launcher=slurm"))
    assert (ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml").exists()


@pytest.mark.slow
def test_a_run_alone_gives_the_numbers_it_gives_in_a_sweep(tmp_path, reference):
    """Determinism, the last of four: a configuration alone (here) gives the numbers it gives in a sweep
    (reference), in joblib chunks (test_worker_processes_...) and resumed (test_kill_9_... and
    tests/test_faults.py's interrupts)."""
    alone = tmp_path / "alone"
    run_cli("cell=gru", "scale=2", "seq_len=8", "hidden_size=4", "batch_size=3", f"hydra.run.dir={alone}", cwd=tmp_path)
    mine = pd.read_parquet(alone / "profile.parquet")
    theirs = pd.read_parquet(reference[0] / "profile.parquet")
    theirs = theirs[theirs.run_id == mine.run_id.iloc[0]]
    order = ["layer", "state", "t", "step"]
    pd.testing.assert_frame_equal(
        mine.sort_values(order).reset_index(drop=True), theirs.sort_values(order).reset_index(drop=True)
    )
