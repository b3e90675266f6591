"""Hydra callbacks (wired in conf/config.yaml under hydra.callbacks).

Before a sweep's first job: check every value the sweep will take (experiment file and command line).
After a sweep or a single run: collect the tables, draw the figures, and exit non-zero if a run failed
or never finished (a launched worker that died).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.cli.collect import collect_and_report
from harness.cli.overrides import check_overrides
from harness.core.errors import ConfigError


def fail(error: ConfigError) -> None:
    """The one-line error for bad input: no traceback, exit status 2."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)


class CollectResults(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        params = config.hydra.sweeper.get("params") or {}
        try:
            check_overrides([f"{key}={value}" for key, value in params.items()])
        except ConfigError as error:
            fail(error)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        runs_done = time.perf_counter()
        self._finish(Path(config.hydra.sweep.dir), timing=lambda: (
            f"sweep {runs_done - self.started:.1f} s, tables and figures {time.perf_counter() - runs_done:.1f} s"))

    def on_run_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        self._finish(Path(config.hydra.run.dir))

    @staticmethod
    def _finish(root: Path, timing: Callable[[], str] | None = None) -> None:
        if not root.exists():  # the job stopped before Hydra made its folder
            return
        summary = collect_and_report(root)
        if timing:
            print(timing())
        if summary.status.isin(["failed", "incomplete"]).any():
            raise SystemExit(1)
