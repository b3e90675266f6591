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

Faults. A run folder is finished when its DONE marker is there and its meta.json has the job's
run_id (the hash of its resolved config, harness.core.spec.run_id). Rerunning an interrupted sweep's
command resumes it: the newest sibling folder holding an unfinished sweep of the same run_ids (the
manifest sweep.json) is reused, its finished runs are kept and only the others run. A run that
raises is recorded as failed by harness.lab.run and the others go on. Launched workers write only
their own run folders, atomically; the sweep's tables are written once, by the parent, at the end.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.cli.hydra_internals import (apply_overrides, caching_repo, check_version, overrides_dirname,
                                         split_sweep)
from harness.core.errors import ConfigError
from harness.core.spec import config_columns, run_id
from harness.core.runfolder import DONE, META, write_json

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"  # the sweep's run ids, to recognise it again, and what each invocation did
CHUNKS = ".chunks"  # launched jobs' own folders: their job lists and logs (not run folders)
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

    def state(self, sweep_dir: Path) -> str:
        """"todo", "ok" (finished; failed runs are run again) or "failed"; a folder that holds another
        configuration's finished run is refused (ConfigError) rather than overwritten."""
        out = sweep_dir / self.subdir
        if not (out / DONE).exists():
            return "todo"
        meta = json.loads((out / META).read_text())
        if meta["run_id"] != self.run_id:
            raise ConfigError(f"hydra.sweep.dir={sweep_dir}: {self.subdir}/ holds the finished run "
                              f"{meta['run_id']}, not this sweep's {self.run_id}; expected a new or matching folder")
        return "failed" if meta["status"] == "failed" else "ok"


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
        self.repo = caching_repo(config_loader, master.hydra.job.config_name, list(master.hydra.overrides.hydra))
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
        return Job(num, hydra["overrides"]["task"], run_id(config_columns(OmegaConf.to_container(config, resolve=True))),
                   self._subdir(config, hydra), config, hydra)

    def _subdir(self, config: DictConfig, hydra: dict[str, Any]) -> str:
        pattern = hydra["sweep"]["subdir"]
        if pattern == "${hydra.job.num}":  # ours and Hydra's default
            return str(hydra["job"]["num"])
        whole = OmegaConf.create({**OmegaConf.to_container(config), "hydra": hydra})
        OmegaConf.copy_cache(from_config=self.master, to_config=whole)
        return str(OmegaConf.select(whole, "hydra.sweep.subdir"))


def compose(config_loader: Any, master: DictConfig, grid: list[list[str]]) -> list[Job]:
    composer = Composer(config_loader, master)
    return [composer.job(num, overrides) for num, overrides in enumerate(grid)]


def read_manifest(sweep_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((sweep_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def choose_sweep_dir(configured: Path, jobs: list[Job], resume: bool) -> Path:
    """The configured folder, or the newest sibling holding an unfinished sweep of the same runs."""
    if not resume or configured.exists():
        return configured
    run_ids = [job.run_id for job in jobs]
    siblings = [d for d in configured.parent.glob("*") if d.is_dir() and read_manifest(d).get("run_ids") == run_ids]
    unfinished = [d for d in siblings if any(job.state(d) != "ok" for job in jobs)]
    return max(unfinished, key=lambda d: d.stat().st_mtime, default=configured)


def write_job_files(job: Job, sweep_dir: Path) -> Path:
    """The run folder with Hydra's .hydra/ files (config, hydra, overrides), as run_job writes them."""
    out = sweep_dir / job.subdir
    for stale in out.glob(".*.*"):  # temporary files of a write that a kill interrupted
        if stale.is_file():
            stale.unlink()
    if job.hydra.get("output_subdir") is not None:
        hydra = {**job.hydra, "sweep": {**job.hydra["sweep"], "dir": str(sweep_dir)},
                 "runtime": {**job.hydra["runtime"], "output_dir": str(out.resolve())}}
        files = {"config.yaml": OmegaConf.to_container(job.config), "hydra.yaml": {"hydra": hydra},
                 "overrides.yaml": job.overrides}
        folder = out / job.hydra["output_subdir"]
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(yaml.dump(content, Dumper=YAML_DUMPER, sort_keys=False))
    out.mkdir(parents=True, exist_ok=True)
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


def run_jobs(jobs: list[Job], sweep_dir: Path, torch_threads: int | None = None) -> None:
    """Run jobs one after the other in this process (harness.lab.run.run records any failure)."""
    import torch

    from harness.core.recorders import flush_denormals_everywhere
    from harness.lab.run import run

    flush_denormals_everywhere()
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
    return sweep_dir / CHUNKS / f"{chunk}.pkl"


def write_chunks(jobs: list[Job], sweep_dir: Path, chunks: int, torch_threads: int | None) -> int:
    """Deal jobs into `chunks` files, shuffled first (seeded): in grid order a round-robin deal would
    give one chunk every long seq_len and leave the other workers idle at the end."""
    chunks = max(1, min(chunks, len(jobs)))
    dealt = random.Random(0).sample(jobs, len(jobs))
    for chunk in range(chunks):
        path = chunk_file(sweep_dir, chunk)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"torch_threads": torch_threads, "jobs": dealt[chunk::chunks]}))
    return chunks


def chunk_overrides(sweep_dir: Path, chunk: int) -> list[str]:
    """A launched job's overrides: the sweep folder, and a folder of its own for its log."""
    quoted = str(sweep_dir).replace("\\", "\\\\").replace("'", "\\'")
    return [f"hydra.sweep.dir='{quoted}'", f"hydra.sweep.subdir={CHUNKS}/{chunk}", "hydra.output_subdir=null"]


def run_chunk(cfg: DictConfig) -> int:
    """The task function of a launched job (any Hydra launcher, any machine that sees the folder):
    run the jobs of chunk hydra.job.num."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    sweep_dir = Path(hydra.sweep.dir)
    chunk = pickle.loads(chunk_file(sweep_dir, hydra.job.num).read_bytes())
    run_jobs(chunk["jobs"], sweep_dir, chunk["torch_threads"])
    return len(chunk["jobs"])


def parallelism(launcher: DictConfig) -> tuple[int, int | None]:
    """(launched jobs that compute at once, torch threads for each) under a launcher's settings, so
    that workers neither idle nor oversubscribe cores; (1, None) for a launcher not listed here."""
    target, cores = str(launcher.get("_target_", "")), os.cpu_count() or 1
    if target.endswith("JoblibLauncher"):
        n_jobs = launcher.get("n_jobs") or 1
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
    resume: bool  # reuse the newest unfinished identical sweep folder when the configured one is new


def sweep(config_loader: Any, master: DictConfig, grid: list[list[str]], settings: Settings,
          launcher: Any) -> Path:
    """Compose every job (bad values refused before any compute), pick the sweep folder, run the jobs
    it has not finished (in this process, or in chunks through `launcher()`, a Hydra Launcher made
    on demand), and return the folder. Raises ConfigError."""
    started = time.perf_counter()
    jobs = compose(config_loader, master, grid)
    compose_s = time.perf_counter() - started
    configured = Path(str(master.hydra.sweep.dir))
    sweep_dir = choose_sweep_dir(configured, jobs, settings.resume)
    states = {job.num: job.state(sweep_dir) for job in jobs}
    todo = [job for job in jobs if states[job.num] != "ok"]
    if sweep_dir != configured:
        with read_write(master.hydra), open_dict(master.hydra):
            master.hydra.sweep.dir = str(sweep_dir)  # where the callbacks collect the tables
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(master, sweep_dir / "multirun.yaml")
    run_ids, invocations = [job.run_id for job in jobs], read_manifest(sweep_dir).get("invocations", [])
    write_json({"run_ids": run_ids, "invocations": invocations}, sweep_dir / MANIFEST)
    kept = len(jobs) - len(todo)
    if kept:
        print(f"resuming {sweep_dir}: {kept} of {len(jobs)} runs finished before, {len(todo)} to run",
              file=sys.stderr)
    launcher_cfg = master.hydra.launcher
    workers, threads = parallelism(launcher_cfg)
    threads = settings.torch_threads or threads
    with Progress(todo, sweep_dir, kept) as progress:
        if todo and in_process(launcher_cfg):
            run_jobs(todo, sweep_dir, settings.torch_threads)
        elif todo:
            chunks = write_chunks(todo, sweep_dir, settings.chunks or workers, threads)
            for launched in launcher().launch([chunk_overrides(sweep_dir, k) for k in range(chunks)], 0):
                try:
                    launched.return_value  # raises what the launched job raised
                except Exception as error:  # its unfinished runs are listed as incomplete at the end
                    log.error("a launched job failed: %s", error)
    invocation = {"launcher": str(launcher_cfg.get("_target_")), "ran": len(todo), "kept": kept,
                  "failed": progress.failed, "compose_s": compose_s,
                  "elapsed_s": time.perf_counter() - started, "runs_s": progress.elapsed}
    write_json({"run_ids": run_ids, "invocations": invocations + [invocation]}, sweep_dir / MANIFEST)
    return sweep_dir


def expand(params: dict[str, str], arguments: list[str], config_loader: Any) -> list[list[str]]:
    """The jobs' override lists, in the order (and so with the numbers) Hydra's basic sweeper gives."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    check_version()
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(lines)
    return split_sweep(parsed)
