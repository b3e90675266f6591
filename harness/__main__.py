"""Run one configuration, or a sweep, from the command line (Hydra).

    python -m harness                                   # one run of conf/config.yaml
    python -m harness cell=lstm scale=2 seq_len=500     # one run with overrides
    python -m harness -m cell=rnn,lstm,gru scale=0.5,1,2   # a sweep over the grid
    python -m harness -m experiment=quickstart          # the sweep declared in experiments/quickstart.yaml
    python -m harness -m experiment=quickstart hydra/launcher=joblib   # the same, a worker per core
    python -m harness -m experiment=quickstart hydra/launcher=slurm    # as a SLURM job array
    python -m harness --cfg job                         # print the composed config and stop

Bad values are refused with one line before anything runs (harness.config). Sweeps run through the
fast sweeper (hydra_plugins/harness_sweeper, harness.sweep): rerun an interrupted sweep's command to
finish it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from harness.callbacks import fail
from harness.config import ConfigError, check_overrides
from harness.gradients import flush_denormals_everywhere
from harness.run import run


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> str:
    runtime = HydraConfig.get().runtime
    try:
        return run(cfg, Path(runtime.output_dir), dict(runtime.choices))
    except ConfigError as error:
        fail(error)


def main() -> None:
    from hydra._internal.utils import get_args_parser  # Hydra's own reading of its command line

    flush_denormals_everywhere()  # before torch starts its worker threads, so that they inherit it

    overrides = get_args_parser().parse_known_args(sys.argv[1:])[0].overrides
    try:
        check_overrides(overrides)
    except ConfigError as error:
        fail(error)
    hydra_main()


if __name__ == "__main__":
    main()
