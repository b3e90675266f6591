"""Running a sweep's jobs: each run's folder and Hydra's files, and the forked child that runs them,
supervised, so that a run whose process dies fails alone and a killed sweep leaves no child behind."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

import yaml
from omegaconf import OmegaConf

from harness.cli.sweep.jobs import Job, interpolates
from harness.core.folders import claim, is_temporary
from harness.core.runfolder import DONE, write_text
from harness.lab.pool import STOPS, die_with, stops_held

FORKS = sys.platform.startswith("linux")  # where forking a process that imported torch is safe and cheap
FORK_LOCK = threading.Lock()  # held while forking and while the progress thread writes
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: ~6x faster


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """A job's config as its run reads it: its interpolations resolved, in a copy of its own (a job's
    config shares its parts with the other jobs', harness.cli.sweep.jobs.Composer)."""
    if not interpolates(config):
        return copy.deepcopy(config)
    return OmegaConf.to_container(OmegaConf.create(config), resolve=True)


def write_job_files(job: Job, sweep_dir: Path) -> Path:
    """The run folder with Hydra's .hydra/ files (config, hydra, overrides), as run_job writes them.
    A rerun starts clean: no DONE of an earlier failed attempt, no temporary files of a killed write,
    and no symbolic links where it writes (each file is written by rename, which replaces a link)."""
    out = sweep_dir / job.subdir
    claim(out)
    log_file = out / f"{job.hydra['job']['name']}.log"  # appended to by each attempt
    for stale in [
        out / DONE,
        *(p for p in out.glob(".*.*") if is_temporary(p.name)),
        *([log_file] if log_file.is_symlink() else []),
    ]:
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
    if job.hydra.get("output_subdir") is not None:
        hydra = {
            **job.hydra,
            "sweep": {**job.hydra["sweep"], "dir": str(sweep_dir)},
            "runtime": {**job.hydra["runtime"], "output_dir": str(out.resolve())},
        }
        files = {
            "config.yaml": job.config,
            "hydra.yaml": {"hydra": hydra},
            "overrides.yaml": job.overrides,
        }
        folder = out / job.hydra["output_subdir"]
        if folder.is_symlink():
            folder.unlink()
        for name, content in files.items():
            write_text(yaml.dump(content, Dumper=YAML_DUMPER, sort_keys=False), folder / name)
    return out


class _RunLog:
    """While runs execute: their log lines go to each run's own log file, not to the console, where
    the progress line stands (warnings and errors included: failed runs are listed at the end)."""

    FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job log format

    def __enter__(self) -> _RunLog:
        root = logging.getLogger()
        self.quieted = [(h, h.level) for h in root.handlers if type(h) is logging.StreamHandler]
        for handler, _ in self.quieted:
            handler.setLevel(logging.CRITICAL + 1)
        self.level = root.level
        root.setLevel(logging.INFO)
        return self

    def to(self, path: Path) -> logging.FileHandler:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter(self.FORMAT))
        logging.getLogger().addHandler(handler)
        return handler

    def __exit__(self, *exc: Any) -> None:
        for handler, level in self.quieted:
            handler.setLevel(level)
        logging.getLogger().setLevel(self.level)


def run_jobs(jobs: list[Job], sweep_dir: Path, torch_threads: int | None = None, isolate: bool = False) -> None:
    """Run jobs one after the other (harness.lab.run.run records any Python failure).

    isolate: run them in a child process forked from this one, so that a run that dies in native
    code (a segfault, the out-of-memory killer) is recorded as failed with its signal and a new child
    goes on with the rest. Only a process that has not computed with torch may fork one (OpenMP's
    thread pool does not survive a fork): the sweep's own process and its launched workers, which
    only supervise. Where there is no fork (Windows, macOS's default), runs are not isolated.
    """
    pending = list(jobs)
    while pending:
        if not (isolate and FORKS):
            _run_here(pending, sweep_dir, torch_threads)
            return
        supervisor, pid = os.getpid(), 0
        try:
            # Stops held while forking (harness.lab.pool.stops_held): one landing in the child before
            # its own handlers were set would run the parent's clean-up there, and one landing in the
            # parent before pid was kept would leave the child writing while the parent cleans up.
            with stops_held():
                with FORK_LOCK, warnings.catch_warnings():  # the progress thread writes nothing meanwhile
                    warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12's "multi-threaded fork"
                    pid = os.fork()
                if pid == 0:  # the child, stops still blocked (its own handlers set first): never leaves
                    _child(supervisor, pending, sweep_dir, torch_threads)
            _, status = os.waitpid(pid, 0)
        except BaseException:  # interrupted: stop the child too, then pass it on
            if pid:
                # The interrupt may follow a wait that has collected the child already (a Ctrl-C taken by
                # another thread is handled once the wait returns): then there is none to stop or wait on.
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still running
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                        os.waitpid(pid, 0)
            raise
        pending = [job for job in pending if not (sweep_dir / job.subdir / DONE).is_file()]
        if not pending:
            return
        interrupted = os.WTERMSIG(status) == signal.SIGINT if os.WIFSIGNALED(status) else os.WEXITSTATUS(status) == 130
        if interrupted:
            raise KeyboardInterrupt
        crashed, pending = pending[0], pending[1:]
        _record_crash(crashed, sweep_dir, status)


def _child(supervisor: int, pending: list[Job], sweep_dir: Path, torch_threads: int | None) -> NoReturn:
    """The forked child: the runs, then an exit without the parent's exit handlers."""
    from harness.core.recorders import flush_denormals_everywhere

    die_with(supervisor)
    # An interrupt ends the child at once: raised as KeyboardInterrupt, it could land in a weakref
    # callback or a __del__, where Python prints it and carries on with the run. A run is finished
    # only when its DONE is written, so one cut short is simply run again.
    for number in STOPS:
        signal.signal(number, _exit_interrupted)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)  # blocked since before the fork
    code = 0
    try:
        flush_denormals_everywhere()  # this process computes, and may set torch's flags for good
        _run_here(pending, sweep_dir, torch_threads)
    except BaseException:  # noqa: BLE001  an internal bug: shown, and the supervisor records it
        traceback.print_exc()
        code = 1
    finally:
        try:
            logging.shutdown()
        finally:  # even if a second signal lands here: the child never runs the parent's code
            os._exit(code)


def _exit_interrupted(signum: int, frame: Any) -> None:
    os._exit(130)  # the supervisor reads 130 as an interrupt, and says so once


def _crash_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        why = {
            "SIGSEGV": "a crash in native code",
            "SIGKILL": "killed, e.g. by the out-of-memory killer",
            "SIGABRT": "an abort in native code",
            "SIGBUS": "a bus error in native code",
        }.get(name, "")
        return f"killed by {name}" + (f" ({why})" if why else "")
    code = os.WEXITSTATUS(status)
    return f"its process exited with status {code}" + (" before the run was finished" if code == 0 else "")


def _record_crash(job: Job, sweep_dir: Path, status: int) -> None:
    from harness.lab.run import record_failure

    out = sweep_dir / job.subdir
    reason = _crash_reason(status)
    record_failure(resolved(job.config), out, job.hydra["runtime"]["choices"], reason)
    with open(out / f"{job.hydra['job']['name']}.log", "a") as log_file:
        log_file.write(f"the run's process died: {reason}\n")


def _run_here(jobs: list[Job], sweep_dir: Path, torch_threads: int | None) -> None:
    import torch

    from harness.lab.run import run

    if torch_threads:
        torch.set_num_threads(torch_threads)
    with _RunLog() as run_log:
        for job in jobs:
            out = write_job_files(job, sweep_dir)
            handler = run_log.to(out / f"{job.hydra['job']['name']}.log")
            try:
                run(resolved(job.config), out, job.hydra["runtime"]["choices"])
            finally:
                logging.getLogger().removeHandler(handler)
                handler.close()
