"""Figures drawn in forked worker processes at once (harness.lab.figures.make_figures decides when)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")

FORKS = sys.platform.startswith("linux")  # forked workers inherit the tables instead of receiving copies
_JOBS: list[Callable[[], object]] = []  # what forked workers run, by index


def run_in_processes(jobs: list[Callable[[], Result]], workers: int) -> list[Result]:
    """Each job run in one of `workers` forked processes; their results in the jobs' order. The
    workers read the jobs from memory they inherit (no copy of the tables is sent, only the results
    come back), and run torch, which the mean-field curves use, on one thread, as torch's own
    DataLoader workers do after a fork."""
    _JOBS[:] = jobs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12's "multi-threaded fork"
            with concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"), initializer=worker
            ) as pool:
                return list(pool.map(run_job, range(len(jobs))))
    finally:
        _JOBS.clear()


def run_job(index: int) -> object:
    return _JOBS[index]()


def worker() -> None:
    """A forked figure worker: torch on one thread, and Ctrl-C left to the parent, which stops the
    pool and says so in one line (a worker's own KeyboardInterrupt would print a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
