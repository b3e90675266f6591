"""Hydra callbacks (wired in conf/config.yaml under hydra.callbacks).

After a sweep or a single run: collect the tables, draw the figures, and exit non-zero if a run failed
or never finished (a launched worker that died).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.cli.exits import fail
from harness.cli.paths import sweep_origin
from harness.core.errors import HarnessError, Interrupted
from harness.lab.rebuild import ATTENTION, collect_and_report
from harness.lab.theory_curves import mean_field_curves


class CollectResults(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        runs_done = time.perf_counter()
        self._finish(
            Path(config.hydra.sweep.dir),
            timing=lambda: (
                f"sweep {runs_done - self.started:.1f} s, tables and figures {time.perf_counter() - runs_done:.1f} s"
            ),
        )

    def on_run_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        self._finish(Path(config.hydra.run.dir))

    @staticmethod
    def _finish(root: Path, timing: Callable[[], str] | None = None) -> None:
        """The table stage. Hydra turns any Exception a callback raises into a warning and exits 0, so
        every failure here ends the process itself: one line, and a non-zero exit."""
        if not root.exists():  # the job stopped before Hydra made its folder
            return
        again = f"python -m harness.collect {root} writes them"
        try:
            summary = collect_and_report(root, *sweep_origin(root), curves=mean_field_curves)
        except HarnessError as error:
            fail(error)
        except KeyboardInterrupt:
            fail(Interrupted(f"interrupted while writing the tables and figures of {root}; the runs are kept: {again}"))
        except Exception as error:  # noqa: BLE001  a full disk, a file-size limit, a bug: never a silent exit 0
            reason = str(error).splitlines()[0] if str(error) else ""
            print(
                f"error: the tables and figures of {root} could not be written ({type(error).__name__}: "
                f"{reason}); the runs are kept: {again} once the cause is fixed",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
        if timing:
            print(timing())
        if summary.status.isin(ATTENTION).any():
            raise SystemExit(1)
