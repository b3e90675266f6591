"""The harness deletes or overwrites only files it wrote, never writes outside the folder it was given,
and never exits 0 when it did not finish (issue 23): interrupts, folders holding other things, run
folders that collide or escape, kills, code changes, --out, the table stage, runs that exit, damage
that only checksums see, and directory links."""

import inspect
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main as cli_main
from harness.cli.callbacks import CollectResults
from harness.cli.collect import main as collect_main
from harness.cli.plot import main as plot_main
from harness.cli.sweep import check_folders, check_manifest
from harness.cli.sweep.jobs import Job, check_subdirs, compose
from harness.cli.sweep.lock import Lock
from harness.cli.sweep.supervise import run_jobs
from harness.core import provenance
from harness.core.errors import ConfigError
from harness.core.folders import MARKER, check_target, claim, is_marked, is_temporary, remove_written, snapshot
from tests.conftest import ROOT, cli_env, run_cli
from tests.test_faults import as_from_a_shell
from tests.test_sweep import wait_for

SMALL = ["seq_len=8", "hidden_size=4", "input_size=4", "batch_size=2"]


def jobs_of(grid, *master_overrides):
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    from harness.cli.paths import CONF_DIR

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    master = loader.load_configuration(
        "config", overrides=["hydra.sweep.dir=/tmp/sweep", *master_overrides], run_mode=RunMode.MULTIRUN
    )
    return compose(loader, master, grid)


# 1. An interrupt removes exactly what the run wrote ------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_in_a_single_run_removes_only_what_it_wrote(tmp_path):
    mine = tmp_path / "d"
    mine.mkdir()  # the user's own (empty) folder: it stays, and so would anything in it
    run = subprocess.Popen(
        [sys.executable, "-m", "harness", *SMALL, f"hydra.run.dir={mine}"],
        cwd=tmp_path,
        env=cli_env(sleep=30),
        start_new_session=True,
        text=True,
        preexec_fn=as_from_a_shell,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (mine / ".hydra" / "config.yaml").exists() and (mine / MARKER).exists())
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130 and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: removed the ") and "files the unfinished run wrote in" in last
    assert ".hydra/config.yaml" in last and mine.is_dir() and list(mine.iterdir()) == []


def test_remove_written_keeps_what_was_there_and_what_is_not_the_harnesss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("run")  # relative, as on a command line
    folder.mkdir()
    (folder / "thesis.tex").write_text("x")
    (folder / "summary.csv").write_text("mine")  # a harness name, but there before: kept
    before = snapshot(folder)
    (folder / MARKER).touch()
    claim(folder / "figures")
    for name in ("meta.json", "harness.log", "figures/profiles.png"):
        (folder / name).write_text("written")
    (folder / "notes.md").write_text("the user's, written during the run")
    removed, gone = remove_written(folder, before)
    assert sorted(p.relative_to(folder.resolve()).as_posix() for p in removed) == [
        "figures/profiles.png",
        "harness.log",
        "meta.json",
    ]
    assert not gone and sorted(p.name for p in folder.iterdir()) == ["notes.md", "summary.csv", "thesis.tex"]

    fresh = tmp_path / "fresh"
    claim(fresh / "deeper")
    (fresh / "deeper" / "DONE").write_text("")
    assert remove_written(fresh, set()) == ([fresh / "deeper" / "DONE"], True) and tmp_path.is_dir()


# 2. Folders that hold other things ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: (d / "thesis.tex").write_text("x"), "holds thesis.tex, which the harness did not write"),
        (lambda d: (d / "summary.csv").write_text("mine"), "holds summary.csv, which the harness did not write"),
        (lambda d: [(d / "report.html").write_text("mine"), (d / "a").mkdir()], "holds a and 1 more"),
        (  # a folder the harness made: the file is to be moved out, not the folder changed
            lambda d: [(d / MARKER).touch(), (d / "notes.txt").write_text("x")],
            r"holds notes.txt, .*, or one holding only the harness's files \(move it out to write there\)$",
        ),
        (lambda d: [claim(d / "0"), (d / MARKER).touch(), (d / "0" / "mine.txt").write_text("x")], "holds 0/mine.txt"),
    ],
)
def test_a_folder_holding_what_the_harness_did_not_write_is_refused(tmp_path, setup, message):
    target = tmp_path / "target"
    target.mkdir()
    setup(target)
    with pytest.raises(ConfigError, match=message):
        check_target("hydra.sweep.dir", target, cwd=tmp_path)


def test_an_empty_run_folder_a_kill_left_unmarked_is_written_again(tmp_path):
    """make_folder makes a run folder, then its marker: a kill -9 between the two left an empty unmarked
    folder, and every rerun of the command was refused ('holds 3, which the harness did not write'). An
    empty folder holds nothing of anyone's: the rerun claims it. One that holds a file still refuses."""
    sweep = tmp_path / "sweep"
    claim(sweep)
    claim(sweep / "0")
    (sweep / "3").mkdir()
    check_target("hydra.sweep.dir", sweep, cwd=tmp_path)
    claim(sweep / "3")
    assert is_marked(sweep / "3")
    (sweep / "4").mkdir()
    (sweep / "4" / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds 4, which the harness did not write"):
        check_target("hydra.sweep.dir", sweep, cwd=tmp_path)


def test_the_current_folder_home_and_their_ancestors_are_refused(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    for folder, said in [
        (work, "the current folder"),
        (tmp_path, "the current folder"),
        (Path("/"), "the root"),
        (Path.home(), "your home folder"),
        (Path("."), "the current folder"),
    ]:
        monkeypatch.chdir(work)
        with pytest.raises(ConfigError, match=said):
            check_target("hydra.run.dir", folder)
    check_target("hydra.run.dir", work / "new")  # a new folder: fine
    claim(work / "made")
    (work / "made" / "summary.csv").write_text("the harness's")
    check_target("hydra.run.dir", work / "made")  # the harness's own: fine


def test_a_single_run_into_another_configurations_run_folder_is_refused(tmp_path):
    cli_main.check_run_folder(tmp_path / "new", "abc")  # nothing there: fine
    folder = tmp_path / "run"
    claim(folder)
    (folder / "meta.json").write_text(json.dumps({"run_id": "abc", "status": "ok"}))
    (folder / "DONE").write_text("")
    cli_main.check_run_folder(folder, "abc")  # its own: run again
    with pytest.raises(ConfigError, match=r"hydra.run.dir=.*: holds the finished run abc, not this run's xyz"):
        cli_main.check_run_folder(folder, "xyz")


def test_a_sweep_into_another_sweeps_folder_is_refused(tmp_path):
    jobs = jobs_of([["scale=1.0", *SMALL], ["scale=2.0", *SMALL]])
    (tmp_path / "sweep.json").write_text(json.dumps({"run_ids": [f"id{k}" for k in range(40)]}))
    with pytest.raises(ConfigError, match=r"holds another sweep \(40 runs, not these 2\)"):
        check_manifest(tmp_path, jobs)
    (tmp_path / "sweep.json").write_text(json.dumps({"run_ids": [j.run_id for j in jobs]}))
    check_manifest(tmp_path, jobs)


# 3. Run folders that collide or leave the sweep folder, and duplicate grid points ------------------------


@pytest.mark.parametrize(
    "subdir, message",
    [
        ("same", "runs 0 and 1 share the folder 'same'"),
        ("${seq_len}", "runs 0 and 1 share the folder '8'"),
        (".", "run 0's folder '.' is not inside the sweep folder"),
        ("../escaped_${scale}", "run 0's folder '../escaped_1.0' is not inside the sweep folder"),
        ("/tmp/abs_${scale}", "run 0's folder '/tmp/abs_1.0' is not inside the sweep folder"),
    ],
)
def test_run_folders_that_collide_or_escape_are_refused(subdir, message):
    grid = [["scale=1.0", *SMALL], ["scale=2.0", *SMALL]]
    with pytest.raises(ConfigError, match=rf"hydra.sweep.subdir=.*: {message.replace('(', '.').replace(')', '.')}"):
        jobs_of(grid, f"hydra.sweep.subdir={subdir}")


def test_a_run_folder_inside_another_is_refused():
    jobs = [
        Job(num, [], f"id{num}", subdir, None, {"sweep": {"subdir": "${x}"}})
        for num, subdir in enumerate(["8", "8/2.0"])
    ]
    with pytest.raises(ConfigError, match=r"run 1's folder '8/2.0' is inside run 0's '8'"):
        check_subdirs(jobs)
    jobs = jobs_of([["scale=1.0"], ["scale=2.0"]], "hydra.sweep.subdir=${seq_len}/${scale}")
    assert [job.subdir for job in jobs] == ["100/1.0", "100/2.0"]
    jobs = jobs_of([["scale=1.0"], ["scale=2.0"]], "hydra.sweep.subdir=${hydra.job.num}_x")  # only a job resolves it
    assert [job.subdir for job in jobs] == ["0_x", "1_x"]


def test_duplicate_grid_points_run_once_with_a_note(capsys):
    jobs = jobs_of([["scale=1", *SMALL], ["scale=1.0", *SMALL], ["scale=0.5", *SMALL]])
    assert [job.num for job in jobs] == [0, 2]
    assert "note: run 1 (scale=1.0" in capsys.readouterr().err


# 4. The lock is the kernel's, and a killed sweep's children die with it ----------------------------------


def _take(folder: str, barrier, results) -> None:
    barrier.wait()  # all three enter Lock() together
    try:
        with Lock(Path(folder)):
            results.put("won")
            time.sleep(1.0)  # held while the others try
    except ConfigError:
        results.put("refused")


def test_three_sweeps_entering_the_lock_together_have_one_winner(tmp_path):
    context = multiprocessing.get_context("fork")  # the racers only lock: no torch runs in them
    for trial in range(5):
        folder = tmp_path / str(trial)
        folder.mkdir()
        barrier, results = context.Barrier(3), context.Queue()
        racers = [context.Process(target=_take, args=(str(folder), barrier, results)) for _ in range(3)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
        assert sorted(results.get(timeout=5) for _ in racers) == ["refused", "refused", "won"]


def test_a_stale_lock_naming_a_live_unrelated_pid_blocks_nothing(tmp_path):
    import socket

    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": "x"}))
    with Lock(tmp_path):  # pid 1 is alive, but holds no lock on the file
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


@pytest.mark.slow
def test_sigkill_of_a_sweep_leaves_no_child_and_the_rerun_computes_no_run_twice(tmp_path):
    out = tmp_path / "sweep"
    grid = ["-m", "scale=0.5,1,2,3", *SMALL, f"hydra.sweep.dir={out}"]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "harness", *grid],
        cwd=tmp_path,
        env=cli_env(sleep=1.0),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: len(list(out.glob("*/DONE"))) >= 1 and len(list(out.glob("*/.hydra"))) >= 2)
    children = subprocess.run(["pgrep", "-P", str(sweep.pid)], capture_output=True, text=True).stdout.split()
    assert children, "the sweep forks a child per batch of runs"
    sweep.send_signal(signal.SIGKILL)  # the supervisor alone, as the OOM killer would
    sweep.wait()
    run_cli(*grid, cwd=tmp_path, env=cli_env(sleep=0))  # at once
    for child in children:
        assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    for log in out.glob("*/harness.log"):  # one result line per run: no run computed twice
        assert log.read_text().count("nats/step") == 1, log


# 5. Resume after a code change --------------------------------------------------------------------------


def test_runs_finished_by_other_code_are_refused_on_resume(tmp_path, monkeypatch):
    cell = tmp_path / "my_leaky_cell.py"
    shutil.copy(Path(__file__).parents[1] / "examples" / "leaky_cell.py", cell)
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = [["cell._target_=my_leaky_cell.LeakyCell", "scale=1.0", *SMALL]]
    (job,) = jobs_of(grid)
    assert job.code["targets"] == {"my_leaky_cell.LeakyCell": provenance.target_hash("my_leaky_cell.LeakyCell")}
    run_jobs([job], tmp_path)
    assert job.state(tmp_path) == "ok"

    cell.write_text(cell.read_text().replace("leak", "leak ") + "\n# edited\n")
    provenance.target_hash.cache_clear()
    (job,) = jobs_of(grid)
    assert job.state(tmp_path) == "changed"
    with pytest.raises(
        ConfigError,
        match=r"1 of its finished runs \(0/ first\) were computed by other code.*"
        r"hydra.sweeper.resume=rerun_changed",
    ):
        check_folders([job], {0: "changed"}, tmp_path)
    check_folders([job], {0: "changed"}, tmp_path, rerun_changed=True)
    run_jobs([job], tmp_path)
    assert job.state(tmp_path) == "ok"


def test_the_code_identity_covers_the_package_and_every_target():
    config = {
        "cell": {"_target_": "examples.leaky_cell.LeakyCell", "kwargs": {"leak": 0.5}},
        "other": [{"_target_": "x.y"}],
    }
    identity = provenance.code_identity(config)
    assert identity["targets"] == {
        "examples.leaky_cell.LeakyCell": provenance.target_hash("examples.leaky_cell.LeakyCell"),
        "x.y": None,
    }
    assert len(identity["source"]) == 64 and provenance.same_code(identity, identity)
    assert not provenance.same_code({**identity, "source": "0" * 64}, identity)
    assert not provenance.same_code(None, identity)  # a run from before code was recorded


# 6. harness.plot --out ----------------------------------------------------------------------------------


@pytest.fixture
def small_sweep(tmp_path, reference):
    sweep = tmp_path / "S"
    shutil.copytree(reference[0], sweep)
    return sweep


def test_plot_never_writes_into_a_run_folder_or_a_filtered_copy_over_its_source(tmp_path, small_sweep, capsys):
    run0 = (small_sweep / "0" / "profile.parquet").read_bytes()
    tables = {p.name: p.read_bytes() for p in small_sweep.glob("*.parquet")}
    assert plot_main([str(small_sweep), "--out", str(small_sweep / "0")]) == 2
    assert "inside the run folder" in capsys.readouterr().err
    assert plot_main([str(small_sweep), "--out", str(small_sweep / "0" / "figs")]) == 2
    other_spelling = tmp_path / "." / "S" / ".." / "S"
    assert plot_main([str(small_sweep), "--where", "cell=gru", "--out", str(other_spelling)]) == 2
    assert "whose tables a subset or union would replace" in capsys.readouterr().err
    assert (small_sweep / "0" / "profile.parquet").read_bytes() == run0
    assert {p.name: p.read_bytes() for p in small_sweep.glob("*.parquet")} == tables
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.html").write_text("my own report")
    assert plot_main([str(small_sweep), "--where", "cell=gru", "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "report.html").read_text() == "my own report"
    assert plot_main([str(small_sweep), "--where", "cell=gru", "--out", str(tmp_path / "gru")]) == 0
    assert plot_main([str(small_sweep), "--where", "cell=gru", "--out", str(tmp_path / "gru")]) == 0  # its own
    # A folder of runs saved from Python, collected (so the harness's): its tables are its runs', never
    # another sweep's (they were replaced, and `plot` of it then drew the other runs)
    import torch

    import harness

    harness.record(torch.nn.GRU(3, 4), torch.randn(6, 2, 3)).save(tmp_path / "saved" / "gru")
    assert collect_main([str(tmp_path / "saved")]) == 0
    saved = {p.name: p.read_bytes() for p in (tmp_path / "saved").glob("*.parquet")}
    capsys.readouterr()
    assert plot_main([str(small_sweep), "--out", str(tmp_path / "saved")]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {tmp_path / 'saved'}: holds runs of its own (gru/), whose tables these would replace; "
        "expected a folder of its own\n"
    )
    assert {p.name: p.read_bytes() for p in (tmp_path / "saved").glob("*.parquet")} == saved


# 7. The table stage never exits 0 when it failed ---------------------------------------------------------


@pytest.mark.slow
def test_a_table_stage_that_cannot_write_is_one_line_and_a_failure(tmp_path):
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # `ulimit -f 98`: the report is larger

    out = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "-m", "scale=0.5,2", *SMALL, f"hydra.sweep.dir={out}"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr and "UserWarning" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: the tables and figures of {out} could not be written (OSError: ")
    assert line.endswith(f"python -m harness.collect {out} writes them once the cause is fixed")


def test_an_interrupt_or_a_failure_in_the_table_stage_is_one_line(tmp_path, monkeypatch, capsys):
    from harness.cli import callbacks

    for raised, code, said in [
        (KeyboardInterrupt(), 130, f"the runs are kept: python -m harness.collect {tmp_path} writes them\n"),
        (OSError(28, "No space left on device"), 1, "could not be written (OSError"),
    ]:

        def fails(root, *origin, raised=raised, **curves):
            raise raised

        monkeypatch.setattr(callbacks, "collect_and_report", fails)
        with pytest.raises(SystemExit) as stopped:
            CollectResults._finish(tmp_path)
        assert stopped.value.code == code and said in capsys.readouterr().err


def test_an_interrupt_before_any_run_is_one_line(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "check_command", interrupted)
    with pytest.raises(SystemExit) as stopped:
        cli_main.main()
    assert stopped.value.code == 130 and capsys.readouterr().err == "interrupted: no run was left unfinished\n"


def test_an_interrupt_while_plotting_is_one_line(small_sweep, monkeypatch, capsys):
    from harness.lab import rebuild

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rebuild, "make_figures", interrupted)
    assert plot_main([str(small_sweep)]) == 130
    assert capsys.readouterr().err.startswith("interrupted: the figures in")


# 8. A run whose process exits mid-sweep ----------------------------------------------------------------


@pytest.mark.slow
def test_a_run_that_exits_0_fails_that_run_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "cell._target_=crashing_cell.CrashingCell",
        "+cell.kwargs.exit_at_hidden=4",
        "hidden_size=3,4,5,6",
        "seq_len=8",
        "input_size=4",
        "batch_size=2",
        f"hydra.sweep.dir={out}",
        cwd=tmp_path,
        check=False,
        env=cli_env(sleep=0),
    )
    assert result.returncode == 1
    summary = pd.read_csv(out / "summary.csv").set_index("hidden_size")
    assert summary.status.to_dict() == {3: "ok", 4: "failed", 5: "ok", 6: "ok"}
    assert summary.error[4] == "its process exited with status 0 before the run was finished"


# 9. Damage that only a checksum sees ---------------------------------------------------------------------


def test_a_run_whose_file_changed_since_done_is_run_again(tmp_path):
    (job,) = jobs_of([["scale=1.0", *SMALL]])
    run_jobs([job], tmp_path)
    assert job.state(tmp_path) == "ok"
    done = json.loads((tmp_path / "0" / "DONE").read_text())["files"]
    assert set(done) == {"meta.json", "profile.parquet"} and done["profile.parquet"]["size"] > 0
    profile = tmp_path / "0" / "profile.parquet"
    data = bytearray(profile.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle: footer intact, size unchanged
    profile.write_bytes(bytes(data))
    assert job.state(tmp_path) == "todo"
    (tmp_path / "0" / "DONE").write_text("")  # from before checksums: cannot vouch for anything
    assert job.state(tmp_path) == "todo"


# 10. Directory links -------------------------------------------------------------------------------------


def test_nothing_is_written_through_a_linked_folder(tmp_path, small_sweep, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(small_sweep / "figures")
    (small_sweep / "figures").symlink_to(elsewhere, target_is_directory=True)
    assert plot_main([str(small_sweep)]) == 2
    assert "figures: a symbolic link" in capsys.readouterr().err and list(elsewhere.iterdir()) == []
    with pytest.raises(ConfigError, match="figures is a symbolic link"):
        check_target("hydra.sweep.dir", small_sweep, cwd=tmp_path)


# Found by an adversarial pass -----------------------------------------------------------------------------


def test_collect_and_plot_never_rewrite_tables_of_the_users(tmp_path, small_sweep, capsys):
    from harness.cli.collect import main as collect_main

    mine = tmp_path / "proj"
    mine.mkdir()
    (mine / "summary.csv").write_text("my,own,table")
    shutil.copytree(small_sweep / "0", mine / "run1")
    assert collect_main([str(mine)]) == 2 and plot_main([str(mine)]) == 2
    assert "holds summary.csv, which the harness did not write" in capsys.readouterr().err
    assert (mine / "summary.csv").read_text() == "my,own,table"
    (mine / "summary.csv").unlink()  # a folder of runs alone (saved from Python, copied): collected
    assert collect_main([str(mine)]) == 0 and (mine / MARKER).is_file()


def test_an_interrupt_in_collect_is_one_line(small_sweep, monkeypatch, capsys):
    from harness.cli import collect

    def interrupted(root, *origin):
        raise KeyboardInterrupt

    monkeypatch.setattr(collect, "collect_and_report", interrupted)
    assert collect.main([str(small_sweep)]) == 130
    assert capsys.readouterr().err.startswith("interrupted: the tables of")


@pytest.mark.parametrize(
    "kind, where, message",
    [
        ("sweep", "S/0", "inside the sweep folder"),
        ("run", "S/0/extra", "inside the run folder"),
        ("run", "S", "a sweep's folder, whose tables are its own"),
        ("plot", "S", "a sweep's folder"),
        ("sweep", "R", "a run's folder, whose files are its own"),
        ("plot", "S/summary.csv", "inside the sweep folder"),
        ("plot", "afile", "a file; expected a folder"),
    ],
)
def test_outputs_into_or_inside_other_runs_and_sweeps_are_refused(tmp_path, kind, where, message):
    claim(tmp_path / "S" / "0")
    (tmp_path / "S" / "sweep.json").write_text("{}")
    (tmp_path / "S" / "0" / "meta.json").write_text("{}")
    claim(tmp_path / "R")
    (tmp_path / "R" / "meta.json").write_text("{}")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=message):
        check_target("key", tmp_path / where, cwd=tmp_path, kind=kind)


def test_a_profile_is_never_saved_over_another_run(tmp_path):
    import torch

    import harness

    profile = harness.record(torch.nn.RNN(3, 4), torch.randn(10, 2, 3))
    profile.save(tmp_path / "mine")
    profile.save(tmp_path / "mine")  # its own folder: again
    other = harness.record(torch.nn.RNN(3, 5), torch.randn(10, 2, 3))
    with pytest.raises(ConfigError, match=rf"holds the finished run {profile.run_id}, not this run's"):
        other.save(tmp_path / "mine")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "hydra.output_subdir=/tmp/elsewhere",
            "hydra.output_subdir=/tmp/elsewhere: not a folder inside the run folder",
        ),
        ("hydra.output_subdir=../../x", "not a folder inside the run folder"),
        ("hydra.job.name=../user/mine", "hydra.job.name=../user/mine: names the run's log file"),
        ("hydra.run.dir=" + "x" * 300, "a folder name over 255 bytes"),
    ],
)
def test_hydra_paths_that_leave_the_run_folder_are_refused(tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        cli_main.check_command([*SMALL, override])


def test_links_to_files_in_a_run_folder_and_user_dotfiles_are_refused(tmp_path):
    run = tmp_path / "r"
    claim(run)
    claim(run / ".hydra")
    (tmp_path / "thesis.tex").write_text("x")
    (run / ".hydra" / "config.yaml").symlink_to(tmp_path / "thesis.tex")
    with pytest.raises(ConfigError, match=r"\.hydra/config.yaml is a symbolic link"):
        check_target("hydra.run.dir", run, cwd=tmp_path, kind="run")
    (run / ".hydra" / "config.yaml").unlink()
    (run / ".profile.parquet.k3j2x9a1").write_text("a killed write's temporary: the harness's")
    check_target("hydra.run.dir", run, cwd=tmp_path, kind="run")
    (run / ".why.txt").write_text("the user's note")
    with pytest.raises(ConfigError, match=r"holds \.why\.txt, which the harness did not write"):
        check_target("hydra.run.dir", run, cwd=tmp_path, kind="run")


@pytest.mark.parametrize(
    "subdir, message",
    [
        (".lock", "is a name the harness writes"),
        ("summary.csv", "is a name the harness writes"),
        ("x" * 300, "has a name over 255 bytes"),
    ],
)
def test_run_folders_named_like_the_sweeps_own_files_are_refused(subdir, message):
    with pytest.raises(ConfigError, match=message):
        jobs_of([["scale=1.0", *SMALL]], f"hydra.sweep.subdir={subdir}")


def test_the_code_of_a_target_includes_the_modules_beside_it(tmp_path, monkeypatch):
    (tmp_path / "mycell.py").write_text("from helper import act\nclass MyCell: pass\n")
    (tmp_path / "helper.py").write_text("act = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    provenance.target_hash.cache_clear()
    before = provenance.target_hash("mycell.MyCell")
    (tmp_path / "helper.py").write_text("act = 2\n")
    provenance.target_hash.cache_clear()
    assert provenance.target_hash("mycell.MyCell") != before


def test_an_interrupted_rerun_of_a_finished_run_says_it_is_kept(tmp_path):
    from harness.core.runfolder import write_done

    run = tmp_path / "r"
    claim(run)
    (run / "meta.json").write_text(json.dumps({"run_id": "abc", "status": "ok"}))
    write_done(run)
    before = snapshot(run)
    said = cli_main.removal(run, before)
    assert said.endswith("the earlier finished run is kept as it was") and (run / "DONE").is_file()
    (run / "meta.json").write_text("{}")  # rewritten before the interrupt
    assert "partly rewritten (meta.json was changed" in cli_main.removal(run, before)


# A command's parent: workers run jobs of a minute each (more jobs than workers), until a stop signal.
POOL_COMMAND = """
import os, sys, time
from harness.cli.exits import stop_on_sigterm
from harness.lab import pool

def job():
    with open(sys.argv[1], "a") as pids:
        pids.write(f"{os.getpid()}\\n")
    time.sleep(60)

def stop(receiver):  # SIGTERM among a fork's own callbacks, after the first fork of the pool
    forks = []
    os.register_at_fork(after_in_parent=lambda: forks.append(1) or len(forks) > 1 or receiver())

if sys.argv[2] == "during-fork":
    stop(lambda: os.kill(os.getpid(), 15))
if sys.argv[2] == "during-fork-threaded":  # received by another thread (as torch's), handled in the main one
    import signal, threading
    other = threading.Thread(target=time.sleep, args=(60,), daemon=True)
    other.start()
    stop(lambda: signal.pthread_kill(other.ident, 15) or time.sleep(0.2))  # the other thread's turn
stop_on_sigterm()
try:
    pool.run_in_processes([job] * 6, 2)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    raise SystemExit(130)
"""


def pool_command(tmp_path: Path, when: str) -> tuple[subprocess.Popen, Path]:
    pids = tmp_path / "pids"
    command = [sys.executable, "-c", POOL_COMMAND, str(pids), when]
    return subprocess.Popen(
        command, cwd=ROOT, env=cli_env(), stderr=subprocess.PIPE, text=True, start_new_session=True
    ), pids


def ended(command: subprocess.Popen) -> str:
    """The stderr of a pool_command; its whole group killed if it has not ended in 30 s."""
    try:
        return command.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        os.killpg(command.pid, signal.SIGKILL)
        command.communicate()
        raise


def started_workers(pids: Path) -> list[int]:
    """The pids of a pool_command's two workers, once both run a job."""
    deadline = time.monotonic() + 60
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [int(pid) for pid in pids.read_text().split()]


def gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_sent_to_the_group_of_a_command_drawing_in_workers_is_one_line_and_ends_the_workers(tmp_path, number):
    """Ctrl-C at a terminal, `kill -- -PGID` or a scheduler's stop reaches every process of the group:
    the workers ignore it, and the command kills them, drops the jobs not started and says so once.
    Before, each worker printed its own KeyboardInterrupt's traceback, and the command waited for
    every queued job (here, minutes)."""
    command, pids = pool_command(tmp_path, "running")
    workers = started_workers(pids)
    os.killpg(command.pid, number)
    stderr = ended(command)
    assert (command.returncode, stderr) == (130, "interrupted\n")
    assert len(workers) == 2 and gone(workers)


def test_sigkill_of_a_process_drawing_or_collecting_in_workers_leaves_no_worker(tmp_path):
    """Figures and collect's reads and fits run in forked workers (harness.lab.pool): killed with
    SIGKILL, the parent takes them with it; they had been left waiting for work, for good."""
    command, pids = pool_command(tmp_path, "running")
    workers = started_workers(pids)
    assert len(workers) == 2
    command.kill()
    command.wait()
    assert gone(workers)


@pytest.mark.parametrize("when", ["during-fork", "during-fork-threaded"])
def test_a_stop_landing_while_the_workers_fork_is_not_lost(tmp_path, when):
    """A SIGTERM raised inside a fork's callbacks was printed ("Exception ignored") and lost, or left
    a worker no pool shut down, which the command's exit then waited on forever: it is held back
    until the workers are forked, also where another thread of the process receives it."""
    command, pids = pool_command(tmp_path, when)
    stderr = ended(command)
    assert (command.returncode, stderr) == (130, "interrupted\n")
    assert gone([int(pid) for pid in pids.read_text().split()] if pids.exists() else [])


# A command whose exit handler is interrupted: the stop a user sends as the command ends.
LATE_STOP = """
import atexit, os, signal, sys, time
from harness.cli.exits import run_command

def stopped_while_exiting():
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    time.sleep(0.2)

atexit.register(stopped_while_exiting)
run_command(lambda: 1)
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_stop_landing_after_a_command_ended_leaves_its_status_and_prints_nothing(name):
    """Every entry point (python -m harness, harness.collect, harness.plot, the `harness` script) runs
    through run_command: once the command has ended, a Ctrl-C or SIGTERM landing in the exit handlers
    printed their traceback ("Exception ignored in atexit callback") or made the status a signal's."""
    result = subprocess.run(
        [sys.executable, "-c", LATE_STOP, name],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert (result.returncode, result.stderr) == (1, "")
    entries = {"harness/collect.py": "run_command(main)", "harness/plot.py": "run_command(main)"}
    entries |= {"harness/__main__.py": "command()", "pyproject.toml": '"harness.__main__:main"'}
    assert all(call in (ROOT / entry).read_text() for entry, call in entries.items())
    assert "run_command(main)" in inspect.getsource(cli_main.command)


def test_a_ctrl_c_while_a_command_starts_is_one_line():
    """The entry points import torch, pandas and Hydra (a second or two) only after quiet_start: a
    Ctrl-C during those imports printed a 43-line traceback."""
    for entry in ("harness.__main__", "harness.plot", "harness.collect"):
        code = f"import sys, {entry}; print(sorted({{'torch', 'pandas', 'hydra'}} & set(sys.modules)))"
        assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).stdout == "[]\n"
    for name in ("SIGINT", "SIGTERM"):
        code = (
            "import signal, time; from harness.cli.exits import quiet_start; quiet_start(); "
            f"signal.raise_signal(signal.{name}); time.sleep(5)"
        )
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(), capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (130, "interrupted while starting: nothing was run or written\n")


def test_the_first_stop_counts_and_the_next_are_ignored():
    """A second Ctrl-C or SIGTERM, while the first one's clean-up ran, printed a traceback or the wrong line."""
    code = (
        "import signal; from harness.cli.exits import stop_on_sigterm; stop_on_sigterm()\n"
        "try:\n    signal.raise_signal(signal.SIGTERM)\nexcept KeyboardInterrupt:\n    print('stopped')\n"
        "signal.raise_signal(signal.SIGINT); signal.raise_signal(signal.SIGTERM); print('clean-up ends')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(), capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "stopped\nclean-up ends\n", "")


# A sweep whose every fork is followed, in parent and child alike, by a Ctrl-C: the window between
# os.fork() and the child's own handlers (or the parent's keeping of pid), made certain.
STOP_AT_FORK = """
import os, signal
fork = os.fork
def fork_then_stop():
    pid = fork()
    os.kill(os.getpid(), signal.SIGINT)
    return pid
os.fork = fork_then_stop
"""
# After such a patch: the command line itself, in the same process.
RUN_HARNESS = """
import sys
sys.argv = ["harness", *sys.argv[1:]]
from harness.__main__ import main
main()
"""


def sweep_patched(patch: str, sweep: Path, scales: str) -> subprocess.CompletedProcess:
    """`python -m harness -m scale=<scales>` of SMALL runs into sweep, with `patch` run before it."""
    args = ["-m", f"scale={scales}", *SMALL, f"hydra.sweep.dir={sweep}"]
    return subprocess.run(
        [sys.executable, "-c", patch + RUN_HARNESS, *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_stop_landing_as_the_run_child_forks_is_one_line_and_leaves_no_file(tmp_path):
    """It ran the parent's clean-up in the child too (the line printed twice), or left the child
    writing while the parent cleaned up (a temporary file left by a SIGINT)."""
    sweep = tmp_path / "sweep"
    result = sweep_patched(STOP_AT_FORK, sweep, "0.5,1,2")
    lines = [line for line in result.stderr.splitlines() if line.startswith("interrupted")]
    assert result.returncode == 130 and lines == [
        f"interrupted: 0 of 3 runs are finished in {sweep} (0 files of 3 unfinished runs removed, nothing else); "
        "run the same command again to finish the sweep"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert not [path for path in sweep.rglob(".*") if is_temporary(path.name)]


def test_an_interrupt_once_every_run_is_finished_names_collect(tmp_path):
    """The line said to run the same command again, which (without hydra.sweep.dir) starts a new sweep."""
    from harness.cli.sweep import interrupted

    jobs = jobs_of([["scale=1.0", *SMALL], ["scale=2.0", *SMALL]])
    for job in jobs:
        (tmp_path / job.subdir).mkdir()
        (tmp_path / job.subdir / "DONE").write_text("")
    said = str(interrupted(jobs, jobs, tmp_path, {job.num: set() for job in jobs}))
    assert said == (
        f"interrupted: all 2 runs are finished in {tmp_path}, its tables not written; "
        f"python -m harness.collect {tmp_path} writes them"
    )


# A sweep whose interrupt is handled just after the wait for its run child returned (a Ctrl-C that the
# kernel gave to another thread of the sweep is handled there), the child already collected.
STOP_AFTER_WAIT = """
import os
wait = os.waitpid
def wait_then_stop(pid, options):
    result = wait(pid, options)
    if options == 0:
        raise KeyboardInterrupt
    return result
os.waitpid = wait_then_stop
"""


def test_an_interrupt_handled_after_the_run_child_was_collected_is_one_line(tmp_path):
    """The clean-up waited on the collected child again: ChildProcessError, a traceback and exit 1."""
    sweep = tmp_path / "sweep"
    result = sweep_patched(STOP_AFTER_WAIT, sweep, "0.5,1")
    said = [line for line in result.stderr.splitlines() if not line.startswith("sweep:")]
    assert result.returncode == 130 and said == [
        f"interrupted: all 2 runs are finished in {sweep}, its tables not written; "
        f"python -m harness.collect {sweep} writes them"
    ], result.stderr


def test_a_sweep_folder_holding_the_submitit_launchers_logs_is_the_harness_s(tmp_path):
    """hydra/launcher=submitit_local writes .submitit/ into the sweep's folder: the same command, run
    again to resume the sweep, was refused ('holds .submitit, which the harness did not write')."""
    sweep = tmp_path / "sweep"
    claim(sweep)
    (sweep / ".submitit" / "4096_0").mkdir(parents=True)
    (sweep / ".submitit" / "4096_0" / "4096_0_log.out").write_text("log")
    check_target("hydra.sweep.dir", sweep, cwd=tmp_path)
    (sweep / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds mine.txt"):
        check_target("hydra.sweep.dir", sweep, cwd=tmp_path)
