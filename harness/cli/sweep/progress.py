"""The sweep's progress line: runs done, failures, time elapsed and left."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.cli.sweep.jobs import Job
from harness.cli.sweep.supervise import FORK_LOCK


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
        return (
            f"sweep: {self.kept + self.done}/{self.total} runs done{kept}, {self.failed} failed, "
            f"{_duration(elapsed)} elapsed, {left} left"
        )

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

    def __enter__(self) -> Progress:
        self._show()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join()
        self.poll()
        self._show(final=True)
        self.elapsed = time.perf_counter() - self.start
