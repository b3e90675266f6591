"""Faults lose nothing: a run that crashes in native code, Ctrl-C and SIGTERM, a second sweep into a
locked folder, damaged run folders and tables, symbolic links placed in a sweep folder, chunk files."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from harness.cli.plot import main as plot_main
from harness.cli.sweep import check_folders, choose_sweep_dir
from harness.cli.sweep.chunks import read_chunk, write_chunks
from harness.cli.sweep.jobs import Job
from harness.cli.sweep.lock import Lock
from harness.cli.sweep.supervise import run_jobs
from harness.core.errors import ConfigError
from harness.core.folders import claim
from harness.core.runfolder import write_done
from harness.lab.results import collect
from tests.conftest import GRID, assert_same_tables, cli_env, run_cli
from tests.test_sweep import loader_and_master, wait_for

CRASH = [
    "-m",
    "cell._target_=crashing_cell.CrashingCell",
    "+cell.kwargs.crash_at_hidden=4",
    "hidden_size=3,4,5",
    "seq_len=8",
    "input_size=4",
    "batch_size=2",
]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_native_crash_fails_its_run_and_the_sweep_goes_on(tmp_path, launcher):
    """tests/faults/crashing_cell.py sends SIGSEGV to its own process at hidden_size=4."""
    out = tmp_path / "sweep"
    result = run_cli(
        *CRASH, f"hydra/launcher={launcher}", f"hydra.sweep.dir={out}", cwd=tmp_path, check=False, env=cli_env(sleep=0)
    )  # puts tests/faults, where the cell is, on the path
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    summary = pd.read_csv(out / "summary.csv").set_index("hidden_size")
    assert summary.status.to_dict() == {3: "ok", 4: "failed", 5: "ok"}
    assert summary.error[4] == "killed by SIGSEGV (a crash in native code)"
    assert "failed: 1 (killed by SIGSEGV (a crash in native code))" in result.stdout
    assert "killed by SIGSEGV" in (out / "1" / "harness.log").read_text()


def as_from_a_shell() -> None:
    """The sweep's signals as an interactive shell starts a command: a suite started in the background
    (`make test &`, as some CI runners do) runs with SIGINT ignored, and the sweep would inherit that."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupt_leaves_finished_runs_and_one_line_and_the_command_finishes_it(tmp_path, reference, how):
    out = tmp_path / "sweep"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "harness", *GRID, f"hydra.sweep.dir={out}"],
        cwd=tmp_path,
        env=cli_env(sleep=1.0),
        start_new_session=True,
        text=True,
        preexec_fn=as_from_a_shell,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: len(list(out.glob("*/DONE"))) >= 2)
        finished_at_signal = len(list(out.glob("*/DONE")))
        if how == "SIGINT":  # Ctrl-C: the terminal signals the whole process group
            os.killpg(sweep.pid, signal.SIGINT)
        else:  # a scheduler or `kill`: the sweep's process only
            sweep.send_signal(signal.SIGTERM)
        stdout, stderr = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    assert sweep.returncode == 130, f"{finished_at_signal} runs had finished at the signal; {stderr}"
    last = stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and last.endswith("run the same command again to finish the sweep")
    assert "Traceback" not in stdout + stderr and not stdout
    runs = [p for p in out.iterdir() if p.name.isdigit()]
    assert 2 <= len(runs) < 8 and all((p / "DONE").is_file() for p in runs)  # finished runs only
    assert "unfinished runs removed, nothing else" in last

    result = run_cli(*GRID, f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert f"{len(runs)} of 8 runs finished before" in result.stderr
    assert_same_tables(reference[0], out)


def test_a_second_sweep_into_a_locked_folder_is_refused_at_once(tmp_path):
    out = tmp_path / "sweep"
    claim(out)
    with Lock(out):
        with pytest.raises(ConfigError, match=rf"another sweep \(pid {os.getpid()} on {socket.gethostname()}"):
            Lock(out).__enter__()
        started = time.perf_counter()
        result = run_cli(
            "-m", "scale=1,2", "seq_len=8", "hidden_size=4", f"hydra.sweep.dir={out}", cwd=tmp_path, check=False
        )
        assert result.returncode == 2 and result.stderr.startswith(f"error: hydra.sweep.dir={out}: another sweep")
        assert result.stderr.count("\n") == 1 and time.perf_counter() - started < 60
        assert sorted(p.name for p in out.iterdir()) == [".harness", ".lock"]  # nothing written by the refused sweep
    with Lock(out):  # free again (the file stays: see Lock)
        pass


def test_a_stale_or_damaged_lock_is_replaced(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for content in [json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(), "started": "x"}), "garbage"]:
        (tmp_path / ".lock").write_text(content)
        with Lock(tmp_path):
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


@pytest.mark.slow
def test_damaged_run_folders_and_tables_are_named_skipped_and_rebuilt(tmp_path, reference, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(reference[0], sweep)
    (sweep / "0" / "meta.json").unlink()  # a folder that says DONE but has no metadata
    profile = sweep / "1" / "profile.parquet"
    profile.write_bytes(profile.read_bytes()[: profile.stat().st_size // 2])  # a half-written table
    (sweep / "summary.parquet").write_bytes(b"garbage")  # the sweep's own table
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(sweep / "3", elsewhere)
    (sweep / "8").symlink_to(elsewhere, target_is_directory=True)  # a link placed in the sweep folder

    assert plot_main([str(sweep)]) == 0  # rebuilt from the run folders
    assert "its tables cannot be read (ArrowInvalid); rebuilding them" in capsys.readouterr().err
    summary = collect(sweep)[1].set_index("run_dir")
    assert summary.status["0"] == "damaged" and summary.error["0"].startswith("FileNotFoundError")
    assert summary.status["1"] == "damaged" and summary.error["1"].startswith("ArrowInvalid")
    assert summary.status["8"] == "skipped" and summary.error["8"] == "a symbolic link: not read"
    assert (summary.drop(index=["0", "1", "8"]).status == "ok").all()

    # The resume scan runs the damaged runs again and keeps the others; the link is refused, not followed.
    kept = {n: (sweep / n / "meta.json").stat().st_mtime_ns for n in "234567"}
    (sweep / "8").unlink()
    result = run_cli(*GRID, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert "resuming" in result.stderr and "6 of 8 runs finished before, 2 to run" in result.stderr
    assert {n: (sweep / n / "meta.json").stat().st_mtime_ns for n in "234567"} == kept
    assert_same_tables(reference[0], sweep)


def jobs_of(grid):
    loader, master = loader_and_master()
    from harness.cli.sweep.jobs import compose

    return compose(loader, master, grid)


def test_a_named_sweep_folder_is_where_the_sweep_writes_and_a_damaged_neighbour_is_harmless(tmp_path):
    jobs = jobs_of([["scale=1.0", "seq_len=8", "hidden_size=4"], ["scale=2.0", "seq_len=8", "hidden_size=4"]])
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "0").mkdir(parents=True)
    (first / "sweep.json").write_text(json.dumps({"run_ids": [j.run_id for j in jobs]}))
    (first / "0" / "DONE").write_text("")  # and no meta.json: damaged
    assert jobs[0].state(first) == "todo"
    assert choose_sweep_dir(second, jobs, resume=True, explicit=True) == second
    assert choose_sweep_dir(second, jobs, resume=True, explicit=False) == first  # the same command, rerun


def test_outputs_replace_links_and_never_write_through_them(tmp_path):
    (job,) = jobs_of([["scale=1.0", "seq_len=6", "hidden_size=3", "batch_size=2"]])
    sweep, outside = tmp_path / "sweep", tmp_path / "outside"
    run_dir, outside_file = sweep / job.subdir, outside / "precious.txt"
    (run_dir / ".hydra").mkdir(parents=True)
    outside.mkdir()
    outside_file.write_text("precious")
    for name in [".hydra/config.yaml", "harness.log", "meta.json"]:
        (run_dir / name).symlink_to(outside_file)
    (run_dir / "DONE").symlink_to(outside / "created-through-a-link")  # dangling
    run_jobs([job], sweep)
    assert outside_file.read_text() == "precious" and list(outside.iterdir()) == [outside_file]
    for name in [".hydra/config.yaml", "harness.log", "meta.json", "DONE"]:
        assert not (run_dir / name).is_symlink() and (run_dir / name).is_file(), name

    shutil.rmtree(run_dir)
    run_dir.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match=f"{job.subdir}/ is a symbolic link; results are never written through"):
        check_folders([job], {job.num: job.state(sweep)}, sweep)


def test_chunk_files_hold_data_not_code(tmp_path):
    jobs = jobs_of([["scale=1.0", "cell=lstm"], ["scale=2.0", "experiment=quickstart"], ["seq_len=7"]])
    assert write_chunks(jobs, tmp_path, 2, torch_threads=3) == 2
    read = [job for k in range(2) for job in read_chunk(tmp_path / ".chunks" / f"{k}.json")[0]]
    assert all(json.loads(p.read_text()) for p in (tmp_path / ".chunks").glob("*.json"))  # plain JSON
    assert sorted(
        (j.num, j.run_id, j.subdir, j.overrides, j.hydra == o.hydra)
        for j, o in zip(sorted(read, key=lambda j: j.num), jobs)
    ) == sorted((j.num, j.run_id, j.subdir, j.overrides, True) for j in jobs)
    assert [j.config for j in sorted(read, key=lambda j: j.num)] == [j.config for j in jobs]
    assert read_chunk(tmp_path / ".chunks" / "0.json")[1] == 3


def test_a_job_state_tells_every_case(tmp_path):
    job = Job(0, [], "abc", "0", None, {})
    assert job.state(tmp_path) == "todo"
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "DONE").write_text("")
    (tmp_path / "0" / "profile.parquet").write_bytes(b"PAR1...PAR1")
    (tmp_path / "0" / "meta.json").write_text("{not json")
    assert job.state(tmp_path) == "todo"  # damaged: run again
    for meta, state in [
        ({"run_id": "abc", "status": "ok"}, "ok"),
        ({"run_id": "abc", "status": "failed"}, "failed"),
        ({"run_id": "xyz", "status": "ok"}, "foreign"),
    ]:
        (tmp_path / "0" / "meta.json").write_text(json.dumps(meta))
        write_done(tmp_path / "0")
        assert job.state(tmp_path) == state
    (tmp_path / "0" / "meta.json").write_text(json.dumps({"run_id": "abc", "status": "ok"}))
    assert job.state(tmp_path) == "todo"  # changed since DONE vouched for it
    write_done(tmp_path / "0")
    (tmp_path / "0" / "profile.parquet").write_bytes(b"PAR1...")  # truncated
    assert job.state(tmp_path) == "todo"
    write_done(tmp_path / "0")
    coded = Job(0, [], "abc", "0", None, {}, code={"version": "1", "source": "a", "targets": {}})
    assert coded.state(tmp_path) == "changed"  # a run from before code identities were recorded
