"""Every private Hydra API this package uses, in one place, behind a version check.

The fast sweeper (harness.cli.sweep) composes jobs with pieces of Hydra that Hydra does not promise
to keep: they are imported here only, and only for a hydra-core in the range tested (pyproject.toml
pins the same range). Another version gets one line that says which versions are supported and how
to fall back to Hydra's own sweeper, before anything runs.
"""

from __future__ import annotations

from typing import Any

import hydra
from packaging.version import Version

from harness.core.errors import ConfigError

TESTED = (Version("1.3.2"), Version("1.4"))  # [lowest, first untested)


def check_version(version: str | None = None) -> None:
    """Raise ConfigError unless hydra-core's version is in the tested range."""
    found = Version(version or hydra.__version__)
    if not TESTED[0] <= found < TESTED[1]:
        raise ConfigError(
            f"hydra-core {found}: the fast sweeper is tested with hydra-core >={TESTED[0]},<{TESTED[1]}; "
            "install one of those, or run with hydra/sweeper=basic hydra/launcher=basic"
        )


def command_line(argv: list[str]) -> tuple[list[str], bool] | None:
    """The overrides on a command line and whether it asks for a sweep (-m), as Hydra itself reads
    them, or None where this Hydra's parser is not the one tested (then Hydra checks them itself)."""
    try:
        from hydra._internal.utils import get_args_parser
    except ImportError:
        return None
    args = get_args_parser().parse_known_args(argv)[0]
    return args.overrides, bool(args.multirun)


def load_master(config_dir: str, overrides: list[str], multirun: bool) -> tuple[Any, Any]:
    """(Hydra's config loader, the composed master config) for a command line's overrides, as Hydra
    composes them before it makes any folder. Raises what Hydra raises."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    check_version()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(config_dir))
    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    return loader, loader.load_configuration("config", overrides=overrides, run_mode=mode)


def caching_repo(config_loader: Any, config_name: str, hydra_overrides: list[str]) -> Any:
    """Hydra's config repository with the search path the hydra.* overrides give: it tells config-group
    choices (cell=lstm) from values (scale=2)."""
    check_version()
    return config_loader._parse_overrides_and_create_caching_repo(config_name, hydra_overrides)[1]


def apply_overrides(values: list[Any], config: Any) -> None:
    """Apply parsed value overrides to a composed config, as Hydra's loader does."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(values, config)


def overrides_dirname(task: list[Any], exclude_keys: list[str], item_sep: str, kv_sep: str) -> str:
    """hydra.job.override_dirname for a job's overrides."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return get_overrides_dirname(task, exclude_keys, item_sep, kv_sep)


def split_sweep(parsed: list[Any]) -> list[list[str]]:
    """The grid of job override lists, in the order (so with the numbers) Hydra's basic sweeper gives."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    (grid,) = BasicSweeper.split_arguments(parsed, None)
    return grid
