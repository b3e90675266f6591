"""Launched jobs: a chunk of the sweep's jobs per launched Hydra job (joblib, submitit, SLURM), the
files that carry them (data, never code), and how many run at once under a launcher's settings."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from omegaconf import DictConfig

from harness.cli.sweep.jobs import Job
from harness.cli.sweep.supervise import run_jobs
from harness.core.runfolder import write_json

CHUNKS = ".chunks"  # launched jobs' own folders: their job lists and logs (not run folders)


def chunk_file(sweep_dir: Path, chunk: int) -> Path:
    return sweep_dir / CHUNKS / f"{chunk}.json"


def write_chunks(jobs: list[Job], sweep_dir: Path, chunks: int, torch_threads: int | None) -> int:
    """Deal jobs into `chunks` files, shuffled first (seeded): in grid order a round-robin deal would
    give one chunk every long seq_len and leave the other workers idle at the end. The files hold
    data only (JSON: configs as Hydra composed them), never code: a sweep folder may be shared."""
    chunks = max(1, min(chunks, len(jobs)))
    dealt = random.Random(0).sample(jobs, len(jobs))
    for chunk in range(chunks):
        data = [
            {
                "num": j.num,
                "overrides": j.overrides,
                "run_id": j.run_id,
                "subdir": j.subdir,
                "config": j.config,
                "hydra": j.hydra,
            }
            for j in dealt[chunk::chunks]
        ]
        write_json({"torch_threads": torch_threads, "jobs": data}, chunk_file(sweep_dir, chunk))
    return chunks


def read_chunk(path: Path) -> tuple[list[Job], int | None]:
    data = json.loads(path.read_text())
    jobs = [Job(j["num"], j["overrides"], j["run_id"], j["subdir"], j["config"], j["hydra"]) for j in data["jobs"]]
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
