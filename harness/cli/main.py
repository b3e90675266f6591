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
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
import matplotlib
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from harness.cli.callbacks import fail
from harness.cli.hydra_internals import command_line, load_master
from harness.cli.overrides import check_output_dir, check_overrides, override_key, override_values
from harness.cli.paths import CONF_DIR, config_file
from harness.cli.sweep import compose, expand
from harness.core.errors import ConfigError, Interrupted
from harness.core.memory import check_fits
from harness.core.spec import config_columns
from harness.core.recorders import flush_denormals_everywhere
from harness.lab.run import run


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> str:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return run(cfg, out_dir, dict(hydra_cfg.runtime.choices), progress=True)
    except ConfigError as error:  # what check_command cannot see before the run: a user cell that does not import
        fail(error)
    except KeyboardInterrupt:
        shutil.rmtree(out_dir, ignore_errors=True)
        fail(Interrupted(f"interrupted: the run in {out_dir} was removed"))


def one_line(error: BaseException) -> str:
    """Hydra's and YAML's multi-line messages as one line: what is wrong and where (the file, the key)."""
    noise = ("full_key:", "object_type=", "reference_type=", "Set the environment variable HYDRA_FULL_ERROR")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.strip().startswith(noise)]
    return " ".join(lines) or type(error).__name__


def _searchpath(overrides: list[str]) -> list[str]:
    """The folders a hydra.searchpath=[...] override adds."""
    lines = override_values(overrides, "hydra.searchpath")
    return [entry.strip(" '\"") for line in lines for entry in line.strip("[]").split(",")]


def check_command(argv: list[str], whole_sweep: bool = False) -> None:
    """Everything checked before Hydra makes a folder: the overrides' values, the output folder, the
    composition (an error in an experiment file names the file), and for a single run its combination
    rules and memory estimate. A sweep's runs are checked whole by its sweeper (harness.cli.sweep.compose),
    here too with whole_sweep. Raise ConfigError."""
    command = command_line(argv)
    if command is None:
        return
    overrides, multirun = command
    check_overrides(overrides, multirun)
    check_output_dir(overrides, multirun)
    try:
        loader, master = load_master(str(CONF_DIR), overrides, multirun)
    except Exception as error:  # noqa: BLE001  Hydra's composition and YAML errors: what the user wrote
        message = one_line(error)
        named = re.match(r"In '(\w+)/([\w.-]+)'", message)  # Hydra names the config it was composing
        found = named and config_file(*named.groups(), searchpath=_searchpath(overrides))
        raise ConfigError(f"{found}: {message}" if found else message) from None
    task = [line for line in overrides if not override_key(line).startswith("hydra.")]
    if multirun:
        params = master.hydra.sweeper.get("params") or {}
        try:
            check_overrides([f"{key}={value}" for key, value in params.items()])
        except ConfigError as error:
            experiment = master.hydra.runtime.choices.get("experiment")
            found = experiment and config_file("experiment", experiment, _searchpath(overrides))
            raise ConfigError(f"{found}: hydra.sweeper.params: {error}" if found else str(error)) from None
        if whole_sweep:
            compose(loader, master, expand(params, task, loader))
        return
    config = OmegaConf.to_container(master, resolve=False)
    config.pop("hydra")
    explicit = [override_key(line) for line in task]
    check_fits(config_columns(OmegaConf.to_container(OmegaConf.create(config), resolve=True), explicit))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's stop, `kill`) stops a sweep as Ctrl-C does


def main() -> None:
    flush_denormals_everywhere()  # before torch starts its worker threads, so that they inherit it
    matplotlib.use("Agg")  # figures are files; the command line needs no display
    signal.signal(signal.SIGTERM, _interrupt)
    if "" not in sys.path and os.getcwd() not in sys.path:  # the `harness` console script: user cells
        sys.path.insert(0, os.getcwd())                      # import from the folder it runs in, as with -m

    try:
        check_command(sys.argv[1:])
    except ConfigError as error:
        fail(error)
    hydra_main()


if __name__ == "__main__":
    main()
