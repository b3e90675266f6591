"""Fast sweeps that survive faults: the work behind the `harness` Hydra sweeper (hydra_plugins/).

    python -m harness -m experiment=quickstart                          # every run in this process
    python -m harness -m experiment=quickstart hydra/launcher=joblib    # local worker processes
    python -m harness -m experiment=quickstart hydra/launcher=slurm     # a SLURM job array (submitit)
    python -m harness -m experiment=quickstart hydra/sweeper=basic hydra/launcher=basic  # Hydra's own path

Hydra's basic path composes every job's config from the files twice (~100 ms each on 2 cores) and
writes its .hydra/ files through a pure-Python YAML dumper (~10 ms). Here each distinct set of
config-group choices (cell=lstm, experiment=...) is composed once by Hydra, and a job's value
overrides (scale=2) are applied to a copy by Hydra's own override code (~1 ms); .hydra/ is written by
libyaml. The folders, files and numbers are the basic path's (tests/test_sweep.py compares them).

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
there before: harness.core.folders) and says how to resume. Launched workers write only their own run folders, atomically, never through a
symbolic link; the sweep's tables are written once, by the parent, at the end.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import fcntl
import json
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.cli.hydra_internals import (apply_overrides, caching_repo, check_version, overrides_dirname,
                                         split_sweep)
from harness.cli.overrides import check_writable, override_values
from harness.core.errors import ConfigError, Interrupted
from harness.core.folders import check_target, claim, is_ours, is_temporary, remove_written, snapshot
from harness.core.memory import check_fits
from harness.core.provenance import code_identity, same_code
from harness.core.runfolder import DONE, META, check_done, write_json, write_text
from harness.core.spec import config_columns, run_id

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"  # the sweep's run ids, to recognise it again, and what each invocation did
CHUNKS = ".chunks"  # launched jobs' own folders: their job lists and logs (not run folders)
LOCK = ".lock"  # flock-ed by the running sweep; holds its pid and host (Lock)
RESUME = (True, False, "rerun_changed")  # hydra.sweeper.resume
FORKS = sys.platform.startswith("linux")  # where forking a process that imported torch is safe and cheap
FORK_LOCK = threading.Lock()  # held while forking and while the progress thread writes
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: ~6x faster


@dataclass
class Job:
    """One configuration of a sweep, composed and ready to run."""
    num: int  # Hydra's hydra.job.num: the position in the grid
    overrides: list[str]  # as .hydra/overrides.yaml lists them
    run_id: str
    subdir: str  # the run folder, relative to the sweep folder
    config: DictConfig  # the run's config without hydra, unresolved, as .hydra/config.yaml
    hydra: dict[str, Any]  # the run's hydra node, as .hydra/hydra.yaml
    code: dict[str, Any] | None = None  # the code that computes it (harness.core.provenance); None: not compared

    def state(self, sweep_dir: Path) -> str:
        """"todo", "ok" (finished), "failed" (finished, failed: run again), "changed" (finished by other
        code), "foreign" (the folder holds another configuration's finished run: never overwritten) or
        "link" (the run folder is a symbolic link: never written through). A damaged folder (DONE
        without a readable meta.json, or a file changed since DONE vouched for it) is "todo": run again."""
        out = sweep_dir / self.subdir
        if out.is_symlink():
            return "link"
        if not (out / DONE).is_file():
            return "todo"
        try:
            meta = json.loads((out / META).read_text())
            finished, status = meta["run_id"], meta["status"]
        except (OSError, ValueError, KeyError, TypeError):
            return "todo"
        if finished != self.run_id:
            return "foreign"
        if check_done(out) is not None:
            return "todo"
        if self.code is not None and not same_code(meta.get("code"), self.code):
            return "changed"
        return "failed" if status == "failed" else "ok"


class Composer:
    """Every job's config as Hydra's load_sweep_config composes it, at ~1 ms a job.

    Hydra composes a config from its defaults list (group choices such as cell=lstm), then applies
    the value overrides (scale=2) to the result. The first part is done here once per distinct set
    of group choices; the second, per job, on a copy, by the same Hydra function. A job that overrides
    a hydra.* value is composed whole (the slow, exact path).
    """

    def __init__(self, config_loader: Any, master: DictConfig):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader, self.master = config_loader, master
        self.parser = OverridesParser.create()
        # Hydra's own repository, search-path overrides included, tells group choices from values
        self.repo = caching_repo(config_loader, master.hydra.job.config_name, hydra_overrides(master))
        self.parsed: dict[str, Any] = {}
        self.bases: dict[tuple[str, ...], tuple[DictConfig, dict[str, Any]]] = {}

    def _parse(self, line: str) -> Any:
        if line not in self.parsed:
            self.parsed[line] = self.parser.parse_overrides([line])[0]
        return self.parsed[line]

    def _is_group(self, override: Any) -> bool:  # Hydra's rule (hydra._internal.defaults_list.Overrides)
        return self.repo.group_exists(override.key_or_group) and not isinstance(override.value(), dict)

    def _base(self, overrides: tuple[str, ...]) -> tuple[DictConfig, dict[str, Any]]:
        if overrides not in self.bases:
            cfg = self.loader.load_sweep_config(self.master, list(overrides))
            hydra = OmegaConf.to_container(cfg.hydra, resolve=False, enum_to_str=True)
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            self.bases[overrides] = (cfg, hydra)
        return self.bases[overrides]

    def job(self, num: int, overrides: list[str]) -> Job:
        """Compose job `num` of the grid; raise ConfigError if a value is not allowed."""
        parsed = [self._parse(line) for line in overrides]
        is_group = [self._is_group(o) for o in parsed]
        values = [o for o, group in zip(parsed, is_group) if not group]
        whole = any(o.is_hydra_override() for o in values)
        base, hydra = self._base(tuple(overrides) if whole else
                                 tuple(o.input_line for o, group in zip(parsed, is_group) if group))
        config = copy.deepcopy(base)
        if not whole:
            apply_overrides(values, config)
        task = [o for o in parsed if not o.is_hydra_override()]
        naming = hydra["job"]["config"]["override_dirname"]
        job_node = {**hydra["job"], "num": num, "id": str(num),  # id is typed str in HydraConf
                    "override_dirname": overrides_dirname(task, naming["exclude_keys"],
                                                          naming["item_sep"], naming["kv_sep"])}
        hydra = {**hydra, "job": job_node, "overrides": {**hydra["overrides"], "task": [o.input_line for o in task]}}
        explicit = [o.key_or_group for o in values if not o.is_hydra_override()]
        columns = config_columns(OmegaConf.to_container(config, resolve=True), explicit)
        check_fits(columns)
        return Job(num, hydra["overrides"]["task"], run_id(columns), self._subdir(config, hydra), config, hydra,
                   code_identity(OmegaConf.to_container(config, resolve=True)))

    def _subdir(self, config: DictConfig, hydra: dict[str, Any]) -> str:
        pattern = hydra["sweep"]["subdir"]
        if pattern == "${hydra.job.num}":  # ours and Hydra's default
            return str(hydra["job"]["num"])
        whole = OmegaConf.create({**OmegaConf.to_container(config), "hydra": hydra})
        OmegaConf.copy_cache(from_config=self.master, to_config=whole)
        return str(OmegaConf.select(whole, "hydra.sweep.subdir"))


def hydra_overrides(master: DictConfig) -> list[str]:
    """The command line's hydra.* overrides as typed: `hydra.sweep.subdir=${hydra.job.num}_x` holds an
    interpolation that only a job can resolve."""
    return OmegaConf.to_container(master.hydra.overrides.hydra, resolve=False)


def compose(config_loader: Any, master: DictConfig, grid: list[list[str]]) -> list[Job]:
    """Every job of the grid; if any is not allowed, one ConfigError for the sweep, before anything
    runs: the first refused run's reason and overrides, and how many were refused. Grid points that
    are one configuration (scale=1,1.0) are one job, said in one line on stderr."""
    composer = Composer(config_loader, master)
    jobs, refused = [], []
    for num, overrides in enumerate(grid):
        try:
            jobs.append(composer.job(num, overrides))
        except ConfigError as error:
            refused.append((num, overrides, error))
    if refused:
        num, overrides, error = refused[0]
        raise ConfigError(f"{error} [run {num}: {' '.join(overrides) or 'no overrides'}; "
                          f"{len(refused)} of {len(grid)} runs refused, nothing ran]")
    first: dict[str, Job] = {}
    for job in jobs:
        if first.setdefault(job.run_id, job) is not job:
            print(f"note: run {job.num} ({' '.join(job.overrides)}) is the configuration of run "
                  f"{first[job.run_id].num} ({' '.join(first[job.run_id].overrides)}): it runs once", file=sys.stderr)
    jobs = [job for job in jobs if first[job.run_id] is job]
    check_subdirs(jobs)
    return jobs


def check_subdirs(jobs: list[Job]) -> None:
    """Refuse (ConfigError) run folders that are not inside the sweep folder, or that two runs share
    (one inside another included): runs would overwrite each other or write elsewhere."""
    pattern = jobs[0].hydra["sweep"]["subdir"] if jobs else ""  # as written, before interpolation
    folders: dict[str, Job] = {}
    for job in jobs:
        path = os.path.normpath(job.subdir)
        if os.path.isabs(path) or path == "." or path.split(os.sep)[0] == "..":
            raise ConfigError(f"hydra.sweep.subdir={pattern}: run {job.num}'s folder {job.subdir!r} is not inside "
                              "the sweep folder; expected a relative path below it, e.g. ${hydra.job.num}")
        first = path.split(os.sep)[0]
        if is_ours(first) or any(len(os.fsencode(part)) > 255 for part in path.split(os.sep)):
            raise ConfigError(f"hydra.sweep.subdir={pattern}: run {job.num}'s folder {job.subdir[:60]!r} "
                              + ("is a name the harness writes in the sweep folder" if is_ours(first)
                                 else "has a name over 255 bytes") + "; expected e.g. ${hydra.job.num}")
        other = folders.setdefault(path, job)
        if other is not job:
            raise ConfigError(f"hydra.sweep.subdir={pattern}: runs {other.num} and {job.num} share the folder "
                              f"{job.subdir!r}; expected a folder per run, e.g. ${{hydra.job.num}}")
    for path, job in folders.items():
        parts = path.split(os.sep)
        outer = next((folders[p] for p in (os.path.join(*parts[:k]) for k in range(1, len(parts))) if p in folders), None)
        if outer is not None:
            raise ConfigError(f"hydra.sweep.subdir={pattern}: run {job.num}'s folder {job.subdir!r} is inside run "
                              f"{outer.num}'s {outer.subdir!r}; expected a folder per run, e.g. ${{hydra.job.num}}")


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
    siblings = [d for d in configured.parent.iterdir()
                if d.is_dir() and not d.is_symlink() and read_manifest(d).get("run_ids") == run_ids]
    unfinished = [d for d in siblings if any(job.state(d) != "ok" for job in jobs)]
    return max(unfinished, key=lambda d: d.stat().st_mtime, default=configured)


def check_folders(jobs: list[Job], states: dict[int, str], sweep_dir: Path, rerun_changed: bool = False) -> None:
    """Refuse (ConfigError) a sweep folder whose run folders hold other runs or are symbolic links, or
    (unless rerun_changed) runs finished by other code."""
    for job in jobs:
        if states[job.num] == "foreign":
            meta = json.loads((sweep_dir / job.subdir / META).read_text())
            raise ConfigError(f"hydra.sweep.dir={sweep_dir}: {job.subdir}/ holds the finished run "
                              f"{meta['run_id']}, not this sweep's {job.run_id}; expected a new or matching folder")
        if states[job.num] == "link":
            raise ConfigError(f"hydra.sweep.dir={sweep_dir}: {job.subdir}/ is a symbolic link; results are never "
                              "written through links; expected a real folder or none")
    changed = [job for job in jobs if states[job.num] == "changed"]
    if changed and not rerun_changed:
        raise ConfigError(f"hydra.sweep.dir={sweep_dir}: {len(changed)} of its finished runs ({changed[0].subdir}/ "
                          "first) were computed by other code (the harness, or a _target_'s source, changed); "
                          "add hydra.sweeper.resume=rerun_changed to run them again with this code, or start a "
                          "new folder")


def check_manifest(sweep_dir: Path, jobs: list[Job]) -> None:
    """Refuse (ConfigError) a folder holding another sweep: its manifest names other runs."""
    recorded = read_manifest(sweep_dir).get("run_ids")
    if recorded is not None and recorded != [job.run_id for job in jobs]:
        raise ConfigError(f"hydra.sweep.dir={sweep_dir}: holds another sweep ({len(recorded)} runs, not these "
                          f"{len(jobs)}); expected a new folder, or this sweep's own")


def write_manifest(sweep_dir: Path, jobs: list[Job], invocations: list[dict[str, Any]]) -> None:
    """sweep.json: every run of the grid (to recognise the sweep again, and to list the runs that never
    ran) and what each invocation did."""
    runs = [{"run_id": job.run_id, "subdir": job.subdir, "overrides": job.overrides} for job in jobs]
    write_json({"run_ids": [job.run_id for job in jobs], "runs": runs, "invocations": invocations},
               sweep_dir / MANIFEST)


def write_job_files(job: Job, sweep_dir: Path) -> Path:
    """The run folder with Hydra's .hydra/ files (config, hydra, overrides), as run_job writes them.
    A rerun starts clean: no DONE of an earlier failed attempt, no temporary files of a killed write,
    and no symbolic links where it writes (each file is written by rename, which replaces a link)."""
    out = sweep_dir / job.subdir
    claim(out)
    log_file = out / f"{job.hydra['job']['name']}.log"  # appended to by each attempt
    for stale in [out / DONE, *(p for p in out.glob(".*.*") if is_temporary(p.name)),
                  *([log_file] if log_file.is_symlink() else [])]:
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
    if job.hydra.get("output_subdir") is not None:
        hydra = {**job.hydra, "sweep": {**job.hydra["sweep"], "dir": str(sweep_dir)},
                 "runtime": {**job.hydra["runtime"], "output_dir": str(out.resolve())}}
        files = {"config.yaml": OmegaConf.to_container(job.config), "hydra.yaml": {"hydra": hydra},
                 "overrides.yaml": job.overrides}
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

    def __enter__(self) -> "_RunLog":
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
    from harness.core.recorders import flush_denormals_everywhere

    pending = list(jobs)
    while pending:
        if not (isolate and FORKS):
            _run_here(pending, sweep_dir, torch_threads)
            return
        supervisor = os.getpid()
        with FORK_LOCK, warnings.catch_warnings():  # the progress thread writes nothing while we fork
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12's "multi-threaded fork"
            pid = os.fork()
        if pid == 0:  # the child: run, then leave without the parent's exit handlers
            die_with(supervisor)
            # An interrupt ends the child at once: raised as KeyboardInterrupt, it could land in a
            # weakref callback or a __del__, where Python prints it and carries on with the run. A run
            # is finished only when its DONE is written, so one cut short is simply run again.
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, _exit_interrupted)
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
        try:
            _, status = os.waitpid(pid, 0)
        except BaseException:  # interrupted: stop the child too, then pass it on
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            raise
        pending = [job for job in pending if not (sweep_dir / job.subdir / DONE).is_file()]
        if not pending:
            return
        interrupted = (os.WTERMSIG(status) == signal.SIGINT if os.WIFSIGNALED(status)
                       else os.WEXITSTATUS(status) == 130)
        if interrupted:
            raise KeyboardInterrupt
        crashed, pending = pending[0], pending[1:]
        _record_crash(crashed, sweep_dir, status)


def die_with(supervisor: int) -> None:
    """Make this forked child die (SIGKILL) when its supervisor does, however the supervisor ends
    (Linux's PR_SET_PDEATHSIG): a killed sweep leaves no child writing into its folder."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the lock still shows a sweep alive while a child is
        return
    if os.getppid() != supervisor:  # the supervisor died before the request was made
        os._exit(130)


def _exit_interrupted(signum: int, frame: Any) -> None:
    os._exit(130)  # the supervisor reads 130 as an interrupt, and says so once


def _crash_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        why = {"SIGSEGV": "a crash in native code", "SIGKILL": "killed, e.g. by the out-of-memory killer",
               "SIGABRT": "an abort in native code", "SIGBUS": "a bus error in native code"}.get(name, "")
        return f"killed by {name}" + (f" ({why})" if why else "")
    code = os.WEXITSTATUS(status)
    return f"its process exited with status {code}" + (" before the run was finished" if code == 0 else "")


def _record_crash(job: Job, sweep_dir: Path, status: int) -> None:
    from harness.lab.run import record_failure

    out = sweep_dir / job.subdir
    reason = _crash_reason(status)
    record_failure(job.config, out, job.hydra["runtime"]["choices"], reason)
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
                run(job.config, out, job.hydra["runtime"]["choices"])
            finally:
                logging.getLogger().removeHandler(handler)
                handler.close()


# --- launched jobs: a chunk of the sweep's jobs per launched Hydra job ----------------------------------

def chunk_file(sweep_dir: Path, chunk: int) -> Path:
    return sweep_dir / CHUNKS / f"{chunk}.json"


def write_chunks(jobs: list[Job], sweep_dir: Path, chunks: int, torch_threads: int | None) -> int:
    """Deal jobs into `chunks` files, shuffled first (seeded): in grid order a round-robin deal would
    give one chunk every long seq_len and leave the other workers idle at the end. The files hold
    data only (JSON: configs as Hydra composed them), never code: a sweep folder may be shared."""
    chunks = max(1, min(chunks, len(jobs)))
    dealt = random.Random(0).sample(jobs, len(jobs))
    for chunk in range(chunks):
        data = [{"num": j.num, "overrides": j.overrides, "run_id": j.run_id, "subdir": j.subdir,
                 "config": OmegaConf.to_container(j.config), "hydra": j.hydra} for j in dealt[chunk::chunks]]
        write_json({"torch_threads": torch_threads, "jobs": data}, chunk_file(sweep_dir, chunk))
    return chunks


def read_chunk(path: Path) -> tuple[list[Job], int | None]:
    data = json.loads(path.read_text())
    jobs = [Job(j["num"], j["overrides"], j["run_id"], j["subdir"], OmegaConf.create(j["config"]), j["hydra"])
            for j in data["jobs"]]
    return jobs, data["torch_threads"]


def chunk_overrides(sweep_dir: Path, chunk: int) -> list[str]:
    """A launched job's overrides: the sweep folder, and a folder of its own for its log."""
    quoted = str(sweep_dir).replace("\\", "\\\\").replace("'", "\\'")
    return [f"hydra.sweep.dir='{quoted}'", f"hydra.sweep.subdir={CHUNKS}/{chunk}", "hydra.output_subdir=null"]


def run_chunk(cfg: DictConfig) -> int:
    """The task function of a launched job (any Hydra launcher, any machine that sees the folder):
    run the jobs of chunk hydra.job.num, each isolated (this worker only supervises)."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    sweep_dir = Path(hydra.sweep.dir)
    jobs, torch_threads = read_chunk(chunk_file(sweep_dir, hydra.job.num))
    run_jobs(jobs, sweep_dir, torch_threads, isolate=True)
    return len(jobs)


def parallelism(launcher: DictConfig) -> tuple[int, int | None]:
    """(launched jobs that compute at once, torch threads for each) under a launcher's settings, so
    that workers neither idle nor oversubscribe cores; (1, None) for a launcher not listed here."""
    from harness.cli.overrides import check_n_jobs

    target, cores = str(launcher.get("_target_", "")), os.cpu_count() or 1
    if target.endswith("JoblibLauncher"):
        n_jobs = launcher.get("n_jobs")
        check_n_jobs(n_jobs)  # 0 means nothing to joblib: refused, as the command line refuses it
        n_jobs = n_jobs or 1
        workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib's meaning of -1, -2, ...
        return workers, max(1, cores // workers)
    if target.endswith("submitit_launcher.LocalLauncher"):  # processes on this machine
        threads = launcher.get("cpus_per_task") or 1
        return max(1, cores // threads), threads
    if target.endswith("submitit_launcher.SlurmLauncher"):  # an array of `array_parallelism` tasks
        return launcher.array_parallelism, launcher.get("cpus_per_task") or 1
    return 1, None


def in_process(launcher: DictConfig) -> bool:
    return str(launcher.get("_target_", "")).endswith("BasicLauncher")


# --- progress -----------------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """Runs done / total, failures, elapsed and time left, on one line that updates in place (a new
    line every 10 s where the stream is not a terminal). It watches the run folders' DONE markers,
    so it counts runs finished by any launcher, on any machine that shares the folder."""

    def __init__(self, jobs: list[Job], sweep_dir: Path, kept: int, stream: Any = None):
        self.pending, self.sweep_dir, self.kept = list(jobs), sweep_dir, kept
        self.total = kept + len(jobs)
        self.done = self.failed = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def poll(self) -> None:
        still = []
        for job in self.pending:
            state = job.state(self.sweep_dir)
            if state == "todo":
                still.append(job)
            else:
                self.done += 1
                self.failed += state == "failed"
        self.pending = still

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        left = "?" if not self.done else _duration(elapsed / self.done * len(self.pending))
        kept = f" ({self.kept} kept from before)" if self.kept else ""
        return (f"sweep: {self.kept + self.done}/{self.total} runs done{kept}, {self.failed} failed, "
                f"{_duration(elapsed)} elapsed, {left} left")

    def _show(self, final: bool = False) -> None:
        text = self.line()
        self.stream.write(("\r" + text + "\033[K" + ("\n" if final else "")) if self.tty else text + "\n")
        self.stream.flush()

    def _watch(self) -> None:
        every = 0.5 if self.tty else 10.0
        while not self.stopped.wait(every):
            with FORK_LOCK:
                self.poll()
                self._show()

    def __enter__(self) -> "Progress":
        self._show()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join()
        self.poll()
        self._show(final=True)
        self.elapsed = time.perf_counter() - self.start


# --- the sweep ----------------------------------------------------------------------------------------

@dataclass
class Settings:
    chunks: int | None  # launched jobs to split the runs into; None: one per worker
    torch_threads: int | None  # per launched job; None: cores / workers (harness.cli.sweep.parallelism)
    resume: bool | str  # True: reuse the newest unfinished identical sweep folder when the configured one
                        # is new; "rerun_changed": that, and rerun the runs other code finished
    isolate: bool = True  # runs in a forked child: a native crash fails one run, not the sweep


class Lock:
    """A sweep folder's lock: an flock on `.lock`, which also holds the owner's pid, host and start time.

    The kernel holds the lock for as long as any process holds the file open: the sweep and the
    children it forks (run_jobs), which inherit it and die with the sweep. So a second sweep into the
    folder is refused while any of them still writes, a lock whose processes are gone is free, whatever
    pid the file names (a reused pid blocks nothing), and two sweeps can never both take it. The file
    stays: removing it would let a second sweep lock a new file while the first holds the old one.
    """
    DYING_S = 10.0  # how long a lock whose sweep is gone may stay held by its children before they die

    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / LOCK
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.fd: int | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def _supervisor_alive(self, holder: dict[str, Any]) -> bool:
        """Whether the sweep named in the file is alive (or on another host, where that cannot be told)."""
        if holder.get("host") != self.owner["host"]:
            return True
        try:
            os.kill(int(holder["pid"]), 0)
        except (KeyError, ValueError, TypeError, ProcessLookupError):
            return False
        except PermissionError:  # alive, another user's
            pass
        return True

    def __enter__(self) -> "Lock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as error:
            raise ConfigError(f"hydra.sweep.dir={self.path.parent}: cannot open its lock {self.path} "
                              f"({error.strerror or error}); expected a real file or none") from None
        deadline = time.monotonic() + self.DYING_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder()
                if self._supervisor_alive(holder) or time.monotonic() > deadline:
                    os.close(fd)
                    who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
                           if holder else "a process")
                    raise ConfigError(f"hydra.sweep.dir={self.path.parent}: another sweep ({who}) is writing there; "
                                      "expected it to finish first, or another folder") from None
                time.sleep(0.05)  # its sweep is gone: its children are dying with it
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self.owner) + "\n").encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # forked children hold it until they end
            self.fd = None


def prepare_folder(sweep_dir: Path) -> None:
    """Create the sweep folder (or claim it: new, empty or the harness's), or raise ConfigError in one
    line saying why it cannot be written."""
    check_writable("hydra.sweep.dir", sweep_dir)
    check_target("hydra.sweep.dir", sweep_dir)
    try:
        claim(sweep_dir)
    except OSError as error:
        raise ConfigError(f"hydra.sweep.dir={sweep_dir}: cannot make it ({error.strerror or error}); "
                          "expected a folder you can write to") from None


def sweep(config_loader: Any, master: DictConfig, grid: list[list[str]], settings: Settings,
          launcher: Any) -> Path:
    """Compose every job (the whole sweep refused before any compute if one is not allowed), pick and
    lock the sweep folder, run the jobs it has not finished (in this process, or in chunks through
    `launcher()`, a Hydra Launcher made on demand), and return the folder. Raises ConfigError, and
    Interrupted (after removing the interrupted runs' folders: only finished runs are left)."""
    started = time.perf_counter()
    if settings.resume not in RESUME:
        raise ConfigError(f"hydra.sweeper.resume={settings.resume}: expected true, false or rerun_changed")
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
            print(f"resuming {sweep_dir}: {kept} of {len(jobs)} runs finished before, {len(todo)} to run",
                  file=sys.stderr)
        launcher_cfg = master.hydra.launcher
        workers, threads = parallelism(launcher_cfg)
        threads = settings.torch_threads or threads
        before = {job.num: snapshot(sweep_dir / job.subdir) for job in todo}  # what an interrupt must keep
        try:
            with Progress(todo, sweep_dir, kept) as progress:
                if todo and in_process(launcher_cfg):
                    run_jobs(todo, sweep_dir, settings.torch_threads, settings.isolate)
                elif todo:
                    chunks = write_chunks(todo, sweep_dir, settings.chunks or workers, threads)
                    for launched in launcher().launch([chunk_overrides(sweep_dir, k) for k in range(chunks)], 0):
                        try:
                            launched.return_value  # raises what the launched job raised
                        except Exception as error:  # its unfinished runs are listed as incomplete at the end
                            log.error("a launched job failed: %s", error)
        except KeyboardInterrupt:
            unfinished = [job for job in todo if not (sweep_dir / job.subdir / DONE).is_file()]
            removed = 0
            for job in unfinished:  # an interrupted run starts over on resume
                removed += len(remove_written(sweep_dir / job.subdir, before[job.num])[0])
            raise Interrupted(f"interrupted: {len(jobs) - len(unfinished)} of {len(jobs)} runs are finished in "
                              f"{sweep_dir} ({removed} files of {len(unfinished)} unfinished runs removed, nothing "
                              "else); run the same command again to finish the sweep") from None
        invocation = {"launcher": str(launcher_cfg.get("_target_")), "ran": len(todo), "kept": kept,
                      "failed": progress.failed, "compose_s": compose_s,
                      "elapsed_s": time.perf_counter() - started, "runs_s": progress.elapsed}
        write_manifest(sweep_dir, jobs, invocations + [invocation])
    return sweep_dir


def expand(params: dict[str, str], arguments: list[str], config_loader: Any) -> list[list[str]]:
    """The jobs' override lists, in the order (and so with the numbers) Hydra's basic sweeper gives."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    check_version()
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(lines)
    return split_sweep(parsed)
