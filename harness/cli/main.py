"""Run one configuration, or a sweep, from the command line (Hydra).

    python -m harness                                   # one run of conf/config.yaml
    python -m harness cell=lstm scale=2 seq_len=500     # one run with overrides
    python -m harness -m cell=rnn,lstm,gru scale=0.5,1,2   # a sweep over the grid
    python -m harness -m experiment=quickstart          # the sweep declared in experiments/quickstart.yaml
    python -m harness -m experiment=quickstart hydra/launcher=joblib   # the same, a worker per core
    python -m harness -m experiment=quickstart hydra/launcher=slurm    # as a SLURM job array
    python -m harness --cfg job                         # print the composed config and stop

Bad values are refused with one line before anything runs (harness.core.spec). Sweeps run through the
fast sweeper (hydra_plugins/harness_sweeper, harness.cli.sweep): rerun an interrupted sweep's command to
finish it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
import matplotlib
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from harness.cli.callbacks import fail
from harness.cli.hydra_internals import command_line_overrides
from harness.cli.overrides import check_overrides
from harness.cli.paths import CONF_DIR
from harness.core.errors import ConfigError
from harness.core.recorders import flush_denormals_everywhere
from harness.lab.run import run


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> str:
    runtime = HydraConfig.get().runtime
    try:
        return run(cfg, Path(runtime.output_dir), dict(runtime.choices), progress=True)
    except ConfigError as error:
        fail(error)


def main() -> None:
    flush_denormals_everywhere()  # before torch starts its worker threads, so that they inherit it
    matplotlib.use("Agg")  # figures are files; the command line needs no display
    if "" not in sys.path and os.getcwd() not in sys.path:  # the `harness` console script: user cells
        sys.path.insert(0, os.getcwd())                      # import from the folder it runs in, as with -m

    overrides = command_line_overrides(sys.argv[1:])  # Hydra's own reading of its command line
    try:
        if overrides is not None:
            check_overrides(overrides)
    except ConfigError as error:
        fail(error)
    hydra_main()


if __name__ == "__main__":
    main()
