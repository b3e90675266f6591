"""Work done in forked worker processes at once: a sweep's figures (harness.lab.figures.make_figures),
and the reading and fitting of its runs' profiles (harness.lab.results.collect); each decides when.

Forked, so that the workers read the tables they work on from the memory they inherit: nothing is
sent to them, only their results come back."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

Result = TypeVar("Result")

FORKS = sys.platform.startswith("linux")  # forked workers inherit the tables instead of receiving copies
_JOBS: list[Callable[[], object]] = []  # what forked workers run, by index
STOPS = (signal.SIGINT, signal.SIGTERM)  # what stops a command (harness.cli.exits), a run child, a worker


def run_in_processes(jobs: list[Callable[[], Result]], workers: int) -> list[Result]:
    """Each job run in one of `workers` forked processes (in this process where workers is 1 or there
    is one job, or processes do not fork); their results in the jobs' order. The
    workers read the jobs from memory they inherit (no copy of the tables is sent, only the results
    come back), and run torch, which the mean-field curves use, on one thread, as torch's own
    DataLoader workers do after a fork. A job's changes to what it inherited stay in its worker:
    what it finds must be in what it returns.

    Ctrl-C and SIGTERM are this process's to handle (as KeyboardInterrupt, harness.cli.exits): they
    are held back while the workers fork (one landing inside a fork would be printed and lost, or
    leave a worker that no pool shuts down, for the exit to wait on forever); the workers ignore
    them; an exception here, an interrupt included, kills the workers and drops the jobs not done."""
    if workers <= 1 or len(jobs) <= 1 or not FORKS:
        return [job() for job in jobs]
    _JOBS[:] = jobs
    before = set(multiprocessing.active_children())
    pool = None
    try:
        with warnings.catch_warnings(), stops_held():  # a fork pool starts its workers at the first submit
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12's "multi-threaded fork"
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"), initializer=worker, initargs=(os.getpid(),)
            )
            futures = [pool.submit(run_job, index) for index in range(len(jobs))]
        results = [future.result() for future in futures]
        pool.shutdown()
        return results
    except BaseException:
        if pool is not None:  # the workers killed first: shutdown then waits on no job, only on the
            # thread that minds them (not waited on, it raced the exit: "Bad file descriptor")
            for child in set(multiprocessing.active_children()) - before:
                child.kill()
            pool.shutdown(cancel_futures=True)
        raise
    finally:
        _JOBS.clear()


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back until the block ends, then handled as they would have been. Blocked
    (so that the processes forked inside start with them blocked), and, since another thread of
    this process (torch's, for one) may still receive them, only noted by this thread's handlers."""
    noted: list[int] = []
    handlers = {number: signal.getsignal(number) for number in STOPS}
    if threading.current_thread() is not threading.main_thread() or None in handlers.values():
        handlers = {}  # this thread cannot handle them, or a handler was not set from Python: left alone
    for number in handlers:
        signal.signal(number, lambda number, frame: noted.append(number))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for number, handler in handlers.items():
            signal.signal(number, handler)
        if noted:
            signal.raise_signal(noted[0])


def run_job(index: int) -> object:
    return _JOBS[index]()


def parts(count: int, workers: int) -> list[range]:
    """0..count-1 in `workers` consecutive parts of nearly equal size (none empty)."""
    bounds = [count * k // workers for k in range(workers + 1)]
    return [range(low, high) for low, high in zip(bounds, bounds[1:]) if high > low]


def workers_for(count: int, threshold: int) -> int:
    """How many workers for `count` items: one per core where there are `threshold` or more and
    processes fork (below, forking costs more than it saves), else 1 (this process)."""
    return min(len(os.sched_getaffinity(0)), count) if count >= threshold and FORKS else 1


def worker(parent: int) -> None:
    """A forked worker: torch on one thread; Ctrl-C and SIGTERM, sent to a whole process group by a
    terminal, `kill -- -PGID` or a scheduler, left to the parent, which kills its workers and says so
    in one line (a worker's own KeyboardInterrupt would print a traceback); and killed with the parent
    (a worker of a parent killed with SIGKILL would otherwise wait for work forever)."""
    die_with(parent)
    for number in STOPS:  # ignored before they are let through: one held back since the fork is dropped
        signal.signal(number, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def die_with(supervisor: int) -> None:
    """Make this forked process die (SIGKILL) when its supervisor does, however the supervisor ends
    (Linux's PR_SET_PDEATHSIG): a killed sweep or command leaves no child behind, writing or waiting."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the lock still shows a sweep alive while a child is
        return
    if os.getppid() != supervisor:  # the supervisor died before the request was made
        os._exit(130)
