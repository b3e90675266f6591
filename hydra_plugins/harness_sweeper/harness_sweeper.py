"""The `harness` Hydra sweeper, this project's default (conf/config.yaml): Hydra's sweep syntax and
run folders, at a few ms of overhead per configuration, with resume after a crash and a progress line.
The work is done in harness.cli.sweep; this module only plugs it into Hydra (no `from __future__ import
annotations` here: Hydra runs the module before registering it, so dataclasses cannot resolve strings).

    python -m harness -m cell=rnn,lstm scale=0.5,1,2                  # all runs in this process
    python -m harness -m experiment=quickstart hydra/launcher=joblib  # chunks of runs in local workers
    python -m harness -m experiment=quickstart hydra/sweeper=basic hydra/launcher=basic  # Hydra's path
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class HarnessSweeperConf:
    _target_: str = "hydra_plugins.harness_sweeper.harness_sweeper.HarnessSweeper"
    params: Optional[Dict[str, str]] = None  # the sweep, as in Hydra's basic sweeper (experiment files set it)
    chunks: Optional[int] = None  # launched jobs the runs are dealt into; null: one per worker
    torch_threads: Optional[int] = None  # per launched job; null: the cores each worker has
    # true: an interrupted sweep's command, run again, finishes that sweep's folder; rerun_changed: that,
    # and the runs that other code finished are run again (Any: OmegaConf has no bool-or-string type)
    resume: Any = True
    isolate: bool = True  # each run in a forked child (Linux): a segfault or OOM kill fails that run only


ConfigStore.instance().store(group="hydra/sweeper", name="harness", node=HarnessSweeperConf, provider="harness")


class HarnessSweeper(Sweeper):
    def __init__(
        self,
        params: Optional[Dict[str, str]] = None,
        chunks: Optional[int] = None,
        torch_threads: Optional[int] = None,
        resume: Any = True,
        isolate: bool = True,
    ) -> None:
        from harness.cli.exits import fail
        from harness.cli.overrides import check_sweeper_settings
        from harness.cli.sweep import Settings
        from harness.core.errors import ConfigError

        try:  # checked by the command line already (harness.cli.main); here for Hydra's other entry points
            check_sweeper_settings(chunks, torch_threads, resume)
        except ConfigError as error:
            fail(error)
        self.params = params or {}
        self.settings = Settings(chunks=chunks, torch_threads=torch_threads, resume=resume, isolate=isolate)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def sweep(self, arguments: List[str]) -> Any:
        from hydra.core.plugins import Plugins

        from harness.cli.exits import fail
        from harness.cli.sweep import expand, sweep
        from harness.cli.sweep.chunks import run_chunk
        from harness.core.errors import HarnessError

        def launcher() -> Any:  # made once the sweep folder is known: launchers read it when made
            return Plugins.instance().instantiate_launcher(
                hydra_context=self.hydra_context, task_function=run_chunk, config=self.config
            )

        loader = self.hydra_context.config_loader
        try:
            return sweep(loader, self.config, expand(self.params, arguments, loader), self.settings, launcher)
        except HarnessError as error:
            fail(error)
