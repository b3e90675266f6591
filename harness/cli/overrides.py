"""Command-line overrides checked against the run specification before Hydra composes anything, so
a bad value is one line, not Hydra's multi-line message or a run that fails half-way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.cli.paths import options
from harness.core.errors import ConfigError
from harness.core.folders import too_long
from harness.core.spec import VALIDATORS
from harness.core.validators import Validator, one_of, scalars


def override_key(line: str) -> str:
    """The key a command-line override sets: `+a.b=1`, `++a.b=1` and `~a.b` all name a.b."""
    return line.split("=", 1)[0].lstrip("+~")


def override_values(overrides: list[str], key: str) -> list[str]:
    """The values the overrides give `key`, in command-line order."""
    return [line.split("=", 1)[1] for line in overrides if "=" in line and override_key(line) == key]


def checkers(extra_paths: bool) -> dict[str, Validator]:
    """VALIDATORS, with the groups' names checked against their config files (packaged and the
    user's; anything goes for the experiment when the user adds search paths of their own)."""
    found = {group: options(group) for group in ("cell", "remedy", "experiment")}
    return {
        **VALIDATORS,
        "cell": one_of(found["cell"]),
        "remedy": one_of(found["remedy"]),
        "experiment": (lambda k, v: v) if extra_paths else one_of(found["experiment"]),
    }


def checker(table: dict[str, Validator], key: str) -> Validator | None:
    if key.startswith("cell.kwargs."):  # a user cell's own arguments: any scalar
        return lambda k, v: scalars(k, {k: v})[k]
    return table.get(key)


def as_value(element: Any) -> Any:
    """A sweep's element as the value its job gets: 'tanh' quoted is the text tanh (Hydra's parser
    keeps a quoted element of a sweep as a QuotedString), in lists and mappings too."""
    from hydra.core.override_parser.types import QuotedString

    if isinstance(element, QuotedString):
        return element.text
    if isinstance(element, list):
        return [as_value(item) for item in element]
    if isinstance(element, dict):
        return {key: as_value(item) for key, item in element.items()}
    return element


def check_overrides(overrides: list[str], multirun: bool = True) -> None:
    """Validate Hydra override strings (sweeps expanded) against VALIDATORS; raise ConfigError.
    multirun: whether the command line asked for a sweep (-m), without which a sweep is refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, parsed = OverridesParser.create(), []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except Exception as error:  # Hydra's grammar errors span lines; keep the first
            reason = str(error).strip().splitlines()[0]
            raise ConfigError(f"{text}: not a Hydra override ({reason}); quote values with '=' or spaces") from None
    # Experiments are the packaged and the user's files, unless the user adds search paths of their own.
    extra_paths = any(o.key_or_group == "hydra.searchpath" for o in parsed)
    table = checkers(extra_paths)
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        check = checker(table, key)
        if check is None:
            raise ConfigError(f"{override.input_line}: unknown key; expected one of {', '.join(table)}")
        if override.is_sweep_override() and not multirun:
            raise ConfigError(
                f"{override.input_line}: a sweep; expected -m (--multirun) before the overrides, or a single value"
            )
        if not override.is_sweep_override():
            values = [override.value()]
        elif override.is_discrete_sweep():
            values = [as_value(element) for element in override.sweep_iterator()]
        else:  # interval(a, b): for optimising sweepers (Optuna, Nevergrad), which pick the points
            raise ConfigError(
                f"{override.input_line}: an interval has no points to run; "
                "expected a list (a,b,c) or range(start, stop, step)"
            )
        for value in values:
            check(key, value)


SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def check_writable(key: str, folder: Path) -> None:
    """Raise ConfigError unless folder is, or can be made as, a folder this process may write."""
    resolved = Path(os.path.abspath(folder))
    if any(str(p) in SYSTEM_FOLDERS for p in [resolved, *resolved.parents]):
        raise ConfigError(f"{key}={folder}: a system folder, not a place for results; expected a folder of your own")
    if too_long(resolved):
        raise ConfigError(f"{key}={str(folder)[:60]}...: a folder name over 255 bytes; expected shorter names")
    existing = resolved
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={folder}: {existing} is not a folder; expected a path of folders")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}={folder}: {existing} cannot be written (permissions, or a read-only file "
            "system); expected a folder you can write to"
        )


def check_output_dir(overrides: list[str], multirun: bool) -> None:
    """check_writable for the run's or sweep's folder named on the command line (or results/)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    named = override_values(overrides, key)
    folder = (named[-1] if named else "results").strip("'\"").split("${", 1)[0] or "."
    check_writable(key, Path(folder))


def positive_or_null(key: str, value: object, null_means: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{key}={value}: expected an integer >= 1, or null ({null_means})")


def check_sweeper_settings(chunks: object, torch_threads: object, resume: object = True) -> None:
    """The fast sweeper's own settings (hydra_plugins/harness_sweeper); raise ConfigError."""
    positive_or_null("hydra.sweeper.chunks", chunks, "one chunk per worker")
    positive_or_null("hydra.sweeper.torch_threads", torch_threads, "the cores each worker has")
    if not (isinstance(resume, bool) or resume == "rerun_changed"):
        shown = repr(resume) if isinstance(resume, str) and resume.lower() in ("true", "false") else resume
        raise ConfigError(f"hydra.sweeper.resume={shown}: expected true, false or rerun_changed (unquoted)")


def check_launch(sweeper: Any, launcher: Any) -> None:
    """A sweep's hydra.sweeper and hydra.launcher nodes (composed), checked before any run: a value that
    would fail every run (torch's set_num_threads(-1)) or the launcher itself (joblib's n_jobs=0)."""
    if str(sweeper.get("_target_", "")).endswith("HarnessSweeper"):
        check_sweeper_settings(sweeper.get("chunks"), sweeper.get("torch_threads"), sweeper.get("resume", True))
    if str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        check_n_jobs(launcher.get("n_jobs"))


def check_n_jobs(n_jobs: object) -> None:
    """joblib's n_jobs: workers (n > 0), or all cores but |n| - 1 of them (n < 0); null: one worker."""
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0):
        raise ConfigError(
            f"hydra.launcher.n_jobs={n_jobs}: expected a nonzero integer (workers; -1: one per "
            "core, -2: all cores but one, ...)"
        )
