"""Fast sweeps that survive faults: the work behind the `harness` Hydra sweeper (hydra_plugins/).

This module picks, checks and locks the sweep folder and runs the jobs; the rooms beside it: jobs
(composition, job state), supervise (run folders, the forked child), chunks (launched jobs),
progress, lock.

    python -m harness -m experiment=quickstart                          # every run in this process
    python -m harness -m experiment=quickstart hydra/launcher=joblib    # local worker processes
    python -m harness -m experiment=quickstart hydra/launcher=slurm     # a SLURM job array (submitit)
    python -m harness -m experiment=quickstart hydra/sweeper=basic hydra/launcher=basic  # Hydra's own path

Hydra's basic path composes every job's config from the files twice (~100 ms each on 2 cores) and
writes its .hydra/ files through a pure-Python YAML dumper (~10 ms). Here each distinct set of
config-group choices (cell=lstm, experiment=...) is composed once by Hydra, each distinct value
override (scale=2) is applied once by Hydra's own override code, and a job is a plain dict of its
base with those values set (~0.5 ms and ~1 KB a job: 10^4 jobs in seconds; jobs.Composer); .hydra/ is
written by libyaml. The folders, files and numbers are the basic path's (tests/test_sweep.py compares them).

Faults. A run folder is finished when its DONE marker is there, every file DONE lists has the size and
checksum it lists, its meta.json has the job's run_id (the hash of its resolved config,
harness.core.spec.run_id) and the code that computed it is this code (harness.core.provenance). The
whole grid is composed and checked (values, combinations, the memory estimate of harness.core.memory,
run folders that collide or leave the sweep folder) before any folder is made; grid points that are
one configuration (scale=1,1.0) run once. The sweep folder must be new, empty or the harness's own
(harness.core.folders.check_target), and hold no other sweep. A sweep writes where hydra.sweep.dir
says; without one, rerunning an interrupted sweep's command resumes it: the newest sibling folder
holding an unfinished sweep of the same run_ids (the manifest sweep.json) is reused, its finished runs
are kept and only the others run; runs finished by other code are refused unless
hydra.sweeper.resume=rerun_changed. A sweep folder is locked while a sweep writes it: a kernel lock
(flock) on .lock, held by the sweep and the children it forks, which die with it. A run that raises is
recorded as failed by harness.lab.run; a run whose process dies (a segfault, the OOM killer, an exit
of its own) is recorded as failed by the process that supervises it (run_jobs); the others go on.
Ctrl-C or SIGTERM removes the files the interrupted runs wrote (only the harness's, and none that were
there before: harness.core.folders) and says how to resume. Launched workers write only their own run
folders, atomically, never through a symbolic link; the sweep's tables are written once, by the
parent, at the end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.cli.hydra_internals import check_version, split_sweep
from harness.cli.overrides import check_writable, override_values
from harness.cli.sweep.chunks import chunk_overrides, in_process, parallelism, write_chunks
from harness.cli.sweep.jobs import Job, compose, hydra_overrides
from harness.cli.sweep.lock import Lock
from harness.cli.sweep.progress import Progress
from harness.cli.sweep.supervise import run_jobs
from harness.core.errors import ConfigError, Interrupted
from harness.core.folders import check_target, claim, remove_written, snapshot
from harness.core.runfolder import DONE, META, write_json, write_text

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"  # the sweep's run ids, to recognise it again, and what each invocation did


def read_manifest(sweep_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((sweep_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def choose_sweep_dir(configured: Path, jobs: list[Job], resume: bool, explicit: bool) -> Path:
    """Where the sweep writes: the configured folder if it was named (hydra.sweep.dir=...) or exists;
    else, when resuming, the newest sibling holding an unfinished sweep of the same runs (the same
    command run again after an interruption: its new time-stamped folder name is not the old one)."""
    if explicit or not resume or configured.exists() or not configured.parent.is_dir():
        return configured
    run_ids = [job.run_id for job in jobs]
    siblings = [
        d
        for d in configured.parent.iterdir()
        if d.is_dir() and not d.is_symlink() and read_manifest(d).get("run_ids") == run_ids
    ]
    unfinished = [d for d in siblings if any(job.state(d) != "ok" for job in jobs)]
    return max(unfinished, key=lambda d: d.stat().st_mtime, default=configured)


def check_folders(jobs: list[Job], states: dict[int, str], sweep_dir: Path, rerun_changed: bool = False) -> None:
    """Refuse (ConfigError) a sweep folder whose run folders hold other runs or are symbolic links, or
    (unless rerun_changed) runs finished by other code."""
    for job in jobs:
        if states[job.num] == "foreign":
            meta = json.loads((sweep_dir / job.subdir / META).read_text())
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir}: {job.subdir}/ holds the finished run "
                f"{meta['run_id']}, not this sweep's {job.run_id}; expected a new or matching folder"
            )
        if states[job.num] == "link":
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir}: {job.subdir}/ is a symbolic link; results are never "
                "written through links; expected a real folder or none"
            )
    changed = [job for job in jobs if states[job.num] == "changed"]
    if changed and not rerun_changed:
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir}: {len(changed)} of its finished runs ({changed[0].subdir}/ "
            "first) were computed by other code (the harness, or a _target_'s source, changed); "
            "add hydra.sweeper.resume=rerun_changed to run them again with this code, or start a "
            "new folder"
        )


def check_manifest(sweep_dir: Path, jobs: list[Job]) -> None:
    """Refuse (ConfigError) a folder holding another sweep: its manifest names other runs."""
    recorded = read_manifest(sweep_dir).get("run_ids")
    if recorded is not None and recorded != [job.run_id for job in jobs]:
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir}: holds another sweep ({len(recorded)} runs, not these "
            f"{len(jobs)}); expected a new folder, or this sweep's own"
        )


def write_manifest(sweep_dir: Path, jobs: list[Job], invocations: list[dict[str, Any]]) -> None:
    """sweep.json: every run of the grid (to recognise the sweep again, and to list the runs that never
    ran) and what each invocation did."""
    runs = [{"run_id": job.run_id, "subdir": job.subdir, "overrides": job.overrides} for job in jobs]
    write_json(
        {"run_ids": [job.run_id for job in jobs], "runs": runs, "invocations": invocations}, sweep_dir / MANIFEST
    )


@dataclass
class Settings:
    chunks: int | None  # launched jobs to split the runs into; None: one per worker
    torch_threads: int | None  # per launched job; None: cores / workers (harness.cli.sweep.chunks.parallelism)
    resume: bool | str  # True: reuse the newest unfinished identical sweep folder when the configured one
    # is new; "rerun_changed": that, and rerun the runs other code finished
    isolate: bool = True  # runs in a forked child: a native crash fails one run, not the sweep


def prepare_folder(sweep_dir: Path) -> None:
    """Create the sweep folder (or claim it: new, empty or the harness's), or raise ConfigError in one
    line saying why it cannot be written."""
    check_writable("hydra.sweep.dir", sweep_dir)
    check_target("hydra.sweep.dir", sweep_dir)
    try:
        claim(sweep_dir)
    except OSError as error:
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir}: cannot make it ({error.strerror or error}); "
            "expected a folder you can write to"
        ) from None


def sweep(config_loader: Any, master: DictConfig, grid: list[list[str]], settings: Settings, launcher: Any) -> Path:
    """Compose every job (the whole sweep refused before any compute if one is not allowed), pick and
    lock the sweep folder, run the jobs it has not finished (in this process, or in chunks through
    `launcher()`, a Hydra Launcher made on demand), and return the folder. Raises ConfigError, and
    Interrupted (after removing the interrupted runs' folders: only finished runs are left)."""
    started = time.perf_counter()
    jobs = compose(config_loader, master, grid)
    compose_s = time.perf_counter() - started
    configured = Path(str(master.hydra.sweep.dir))
    explicit = bool(override_values(hydra_overrides(master), "hydra.sweep.dir"))
    sweep_dir = choose_sweep_dir(configured, jobs, bool(settings.resume), explicit)
    if sweep_dir != configured:
        with read_write(master.hydra), open_dict(master.hydra):
            master.hydra.sweep.dir = str(sweep_dir)  # where the callbacks collect the tables
    prepare_folder(sweep_dir)
    with Lock(sweep_dir):
        check_manifest(sweep_dir, jobs)
        states = {job.num: job.state(sweep_dir) for job in jobs}
        check_folders(jobs, states, sweep_dir, rerun_changed=settings.resume == "rerun_changed")
        todo = [job for job in jobs if states[job.num] != "ok"]
        write_text(OmegaConf.to_yaml(master), sweep_dir / "multirun.yaml")
        invocations = read_manifest(sweep_dir).get("invocations", [])
        write_manifest(sweep_dir, jobs, invocations)
        kept = len(jobs) - len(todo)
        if kept:
            print(
                f"resuming {sweep_dir}: {kept} of {len(jobs)} runs finished before, {len(todo)} to run", file=sys.stderr
            )
        launcher_cfg = master.hydra.launcher
        workers, threads = parallelism(launcher_cfg)
        threads = settings.torch_threads or threads
        before = {job.num: snapshot(sweep_dir / job.subdir) for job in todo}  # what an interrupt must keep
        try:
            with Progress(todo, sweep_dir, kept) as progress:
                if todo and in_process(launcher_cfg):
                    run_jobs(todo, sweep_dir, settings.torch_threads, settings.isolate)
                elif todo:
                    launch(todo, sweep_dir, settings.chunks or workers, threads, launcher)
        except KeyboardInterrupt:
            raise interrupted(jobs, todo, sweep_dir, before) from None
        invocation = {
            "launcher": str(launcher_cfg.get("_target_")),
            "ran": len(todo),
            "kept": kept,
            "failed": progress.failed,
            "compose_s": compose_s,
            "elapsed_s": time.perf_counter() - started,
            "runs_s": progress.elapsed,
        }
        write_manifest(sweep_dir, jobs, invocations + [invocation])
    return sweep_dir


def launch(todo: list[Job], sweep_dir: Path, count: int, threads: int | None, launcher: Any) -> None:
    """Run todo as `count` launched jobs, chunks through `launcher()`; a launched job's failure is logged."""
    chunks = write_chunks(todo, sweep_dir, count, threads)
    for launched in launcher().launch([chunk_overrides(sweep_dir, k) for k in range(chunks)], 0):
        try:
            launched.return_value  # noqa: B018  raises what the launched job raised
        except Exception as error:  # its unfinished runs are listed as incomplete at the end
            log.error("a launched job failed: %s", error)


def interrupted(jobs: list[Job], todo: list[Job], sweep_dir: Path, before: dict[int, set[Path]]) -> Interrupted:
    """Remove the files the unfinished runs wrote (none that were there before); the Interrupted saying so."""
    unfinished = [job for job in todo if not (sweep_dir / job.subdir / DONE).is_file()]
    removed = 0
    for job in unfinished:  # an interrupted run starts over on resume
        removed += len(remove_written(sweep_dir / job.subdir, before[job.num])[0])
    if not unfinished:  # nothing left to run (and the same command, without hydra.sweep.dir, starts a new sweep)
        return Interrupted(
            f"interrupted: all {len(jobs)} runs are finished in {sweep_dir}, its tables not written; "
            f"python -m harness.collect {sweep_dir} writes them"
        )
    return Interrupted(
        f"interrupted: {len(jobs) - len(unfinished)} of {len(jobs)} runs are finished in "
        f"{sweep_dir} ({removed} files of {len(unfinished)} unfinished runs removed, nothing "
        "else); run the same command again to finish the sweep"
    )


def expand(params: dict[str, str], arguments: list[str], config_loader: Any) -> list[list[str]]:
    """The jobs' override lists, in the order (and so with the numbers) Hydra's basic sweeper gives."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    check_version()
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(lines)
    return split_sweep(parsed)
