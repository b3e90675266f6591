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

import copy
import os
import re
import sys
from pathlib import Path
from typing import Any

import hydra
import matplotlib
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from harness.cli.configs import register
from harness.cli.exits import exit_quickly, fail, run_command, stop_on_sigterm
from harness.cli.hydra_internals import command_line, load_master
from harness.cli.overrides import (
    check_launch,
    check_output_dir,
    check_overrides,
    check_writable,
    override_key,
    override_values,
)
from harness.cli.paths import CONF_DIR, config_file
from harness.cli.sweep import expand
from harness.cli.sweep.jobs import compose
from harness.cli.yaml_guard import check_expansion
from harness.core.errors import ConfigError, Interrupted
from harness.core.folders import check_target, claim, remove_written, snapshot, stays_inside
from harness.core.memory import check_fits
from harness.core.recorders import flush_denormals_everywhere
from harness.core.runfolder import DONE, check_done
from harness.core.spec import VALIDATORS, RunSpec, config_columns, run_id
from harness.lab.run import run

register()  # the run specification and built-in options, before Hydra composes anything
BEFORE: dict[Path, set[Path]] = {}  # a named run folder's contents before Hydra wrote into it (check_run_folder)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> str:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    before = BEFORE.get(out_dir.resolve(), set())  # none: a new folder, which Hydra made
    claim(out_dir)
    try:
        return run(OmegaConf.to_container(cfg, resolve=True), out_dir, dict(hydra_cfg.runtime.choices), progress=True)
    except ConfigError as error:  # what check_command cannot see before the run: a user cell that does not import
        fail(error)
    except KeyboardInterrupt:
        fail(Interrupted(f"interrupted: {removal(out_dir, before)}"))


def removal(out_dir: Path, before: set[Path]) -> str:
    """Remove what an interrupted run wrote (harness.core.folders.remove_written) and say what it was."""
    removed, gone = remove_written(out_dir, before)
    names = ", ".join(os.path.relpath(p, out_dir) for p in removed[:6]) + (", ..." if len(removed) > 6 else "")
    if gone:
        return f"removed the unfinished run's folder {out_dir} ({len(removed)} files it wrote: {names})"
    kept = "what was there before is kept" if len(before) > 1 else "the folder, there before, is kept"
    if (out_dir / DONE).is_file():  # this run, finished there before and run again
        damage = check_done(out_dir)
        kept = (
            "the earlier finished run is kept as it was"
            if damage is None
            else f"the earlier finished run's files were partly rewritten ({damage}): run the same command again"
        )
    what = (
        f"removed the {len(removed)} files the unfinished run wrote in {out_dir} ({names})"
        if removed
        else f"the unfinished run wrote no new file in {out_dir}"
    )
    return f"{what}; {kept}"


def check_run_folder(folder: Path, rid: str) -> None:
    """A single run's folder: new, empty or the harness's, and not another configuration's finished
    run (raise ConfigError); what it holds is remembered, so that an interrupt removes only what the
    run wrote."""
    check_target("hydra.run.dir", folder, kind="run", run_id=rid)
    if folder.is_dir():
        BEFORE[folder.resolve()] = snapshot(folder)


def one_line(error: BaseException) -> str:
    """Hydra's and YAML's multi-line messages as one line: what is wrong and where (the file, the key)."""
    noise = ("full_key:", "object_type=", "reference_type=", "Set the environment variable HYDRA_FULL_ERROR")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.strip().startswith(noise)]
    return " ".join(lines) or type(error).__name__


def _searchpath(overrides: list[str]) -> list[str]:
    """The folders a hydra.searchpath=[...] override adds."""
    lines = override_values(overrides, "hydra.searchpath")
    return [entry.strip(" '\"") for line in lines for entry in line.strip("[]").split(",")]


def _group_files(overrides: list[str], searchpath: list[str]) -> list[Path]:
    """The config files that `group=option` overrides (sweeps too: cell=rnn,mine) have Hydra load."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, files = OverridesParser.create(), []
    for line in overrides:
        try:
            (override,) = parser.parse_overrides([line])
            values = (
                list(override.sweep_iterator())
                if override.is_discrete_sweep()
                else []
                if override.is_sweep_override()
                else [override.value()]
            )
        except Exception:  # noqa: BLE001  a malformed override: check_overrides says what is wrong
            continue
        group = override.key_or_group
        if override.is_delete() or not re.fullmatch(r"[\w/]+", group):
            continue
        names = [v for v in values if isinstance(v, str) and re.fullmatch(r"[\w.-]+", v)]
        files += [path for path in (config_file(group, v, searchpath) for v in names) if path is not None]
    return files


def _check_expansions(overrides: list[str]) -> None:
    """Refuse a YAML anchor/alias bomb among the files the overrides name, before Hydra expands it."""
    for path in _group_files(overrides, _searchpath(overrides)):
        check_expansion(path)


def _raw(config: Any, key: str) -> Any:
    """A key's value as written, its interpolations unresolved."""
    value: Any = OmegaConf.to_container(config, resolve=False)
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _unresolved(config: Any, key: str, error: Exception) -> ConfigError:
    reason = one_line(error).removeprefix("KeyError raised while resolving interpolation: ").replace('"', "")
    return ConfigError(
        f"{key}={_raw(config, key)}: cannot be resolved ({reason}); expected an existing key "
        "(${name}) or a resolver's value (${oc.env:VAR,default})"
    )


def _resolve(master: DictConfig, multirun: bool) -> tuple[dict[str, Any], str]:
    """(the task config resolved as a run resolves it, the run's or sweep's folder resolved): each
    interpolation that fails names its key. Hydra's runtime-only values are stood in for: its resolvers
    (${now:...}, ${hydra:...}) registered, HydraConfig set to this config for the call, and in a sweep
    hydra.job.num and hydra.job.id as the first job's (a single run has neither, as Hydra's own run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals
    from omegaconf import open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    setup_globals()
    config = copy.deepcopy(master)
    if multirun:
        with read_write(config.hydra), open_dict(config.hydra):
            for key, value in (("num", 0), ("id", "0")):
                if OmegaConf.is_missing(config.hydra.job, key):
                    config.hydra.job[key] = value
    keys = ["hydra.sweep.dir", "hydra.sweep.subdir"] if multirun else ["hydra.run.dir"]
    instance = HydraConfig.instance()
    previous = instance.cfg
    try:
        instance.set_config(config)
        task = OmegaConf.create(OmegaConf.to_container(config, resolve=False))  # as a run has it: no hydra node
        task.pop("hydra")
        try:  # first: the folders' default names results/${name}/, and an error is the task key's own
            resolved = OmegaConf.to_container(task, resolve=True)
        except OmegaConfBaseException as error:
            raise _unresolved(task, str(getattr(error, "full_key", "") or "config"), error) from None
        folders = []
        for key in keys:
            try:
                folders.append(str(OmegaConf.select(config, key)))
            except OmegaConfBaseException as error:
                raise _unresolved(config, key, error) from None
    finally:
        instance.cfg = previous
    return resolved, folders[0]


def check_hydra_names(master: DictConfig) -> None:
    """hydra.output_subdir (Hydra's .hydra/) and hydra.job.name (the log file's name) stay inside the
    run folder: Hydra writes there itself, following any path it is given (raise ConfigError)."""
    subdir = OmegaConf.select(master, "hydra.output_subdir")
    if subdir is not None and not stays_inside(str(subdir)):
        raise ConfigError(
            f"hydra.output_subdir={subdir}: not a folder inside the run folder; expected a "
            "relative name such as .hydra, or null"
        )
    name = str(OmegaConf.select(master, "hydra.job.name"))
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"hydra.job.name={name}: names the run's log file; expected a plain file name, without / or \\"
        )


def check_command(argv: list[str], whole_sweep: bool = False) -> None:
    """Everything checked before Hydra makes a folder: the files the command names (a YAML bomb), the
    overrides' values, the output folder, the composition (an error in an experiment file names the
    file), its interpolations, a sweep's sweeper and launcher settings, and for a single run its
    combination rules and memory estimate. A sweep's runs are checked whole by its sweeper
    (harness.cli.sweep.jobs.compose), here too with whole_sweep. Raise ConfigError."""
    command = command_line(argv)
    if command is None:
        return
    overrides, multirun = command
    _check_expansions(overrides)
    check_overrides(overrides, multirun)
    check_output_dir(overrides, multirun)
    try:
        loader, master = load_master(str(CONF_DIR), overrides, multirun)
    except Exception as error:  # noqa: BLE001  Hydra's composition and YAML errors: what the user wrote
        message = one_line(error)
        named = re.match(r"In '(\w+)/([\w.-]+)'", message)  # Hydra names the config it was composing
        found = named and config_file(*named.groups(), searchpath=_searchpath(overrides))
        raise ConfigError(f"{found}: {message}" if found else message) from None
    resolved, folder = _resolve(master, multirun)
    check_hydra_names(master)
    VALIDATORS["name"]("name", resolved.get("name"))  # set by an experiment file or an interpolation
    check_writable("hydra.sweep.dir" if multirun else "hydra.run.dir", Path(folder))
    task = [line for line in overrides if not override_key(line).startswith("hydra.")]
    if multirun:
        params = master.hydra.sweeper.get("params") or {}
        _check_expansions([f"{key}={value}" for key, value in params.items()])  # an experiment's options
        check_launch(master.hydra.sweeper, master.hydra.launcher)
        try:
            check_overrides([f"{key}={value}" for key, value in params.items()])
        except ConfigError as error:
            experiment = master.hydra.runtime.choices.get("experiment")
            found = experiment and config_file("experiment", experiment, _searchpath(overrides))
            raise ConfigError(f"{found}: hydra.sweeper.params: {error}" if found else str(error)) from None
        if whole_sweep:
            compose(loader, master, expand(params, task, loader))
        return
    explicit = [override_key(line) for line in task]
    columns = config_columns(resolved, explicit)
    check_fits(RunSpec.from_columns(columns))
    check_run_folder(Path(folder), run_id(columns))


def main() -> None:
    flush_denormals_everywhere()  # before torch starts its worker threads, so that they inherit it
    exit_quickly()
    matplotlib.use("Agg")  # figures are files; the command line needs no display
    stop_on_sigterm()
    if "" not in sys.path and os.getcwd() not in sys.path:  # the `harness` console script: user cells
        sys.path.insert(0, os.getcwd())  # import from the folder it runs in, as with -m

    try:
        check_command(sys.argv[1:])
        hydra_main()
    except ConfigError as error:
        fail(error)
    except KeyboardInterrupt:  # where no more precise line was given: before any run, or inside Hydra
        fail(Interrupted("interrupted: no run was left unfinished"))


def command() -> None:
    """`python -m harness` and the `harness` console script."""
    run_command(main)


if __name__ == "__main__":
    command()
