"""What a configuration may hold, checked in one place, with one-line errors.

Every key a run reads has a validator here; the same table checks command-line overrides (before
Hydra composes anything), the sweep an experiment file declares (before its first job), and the
composed config of each run (before any compute). A validator returns the value normalised
(scale=1 becomes 1.0) so that tables never mix ints and floats in a column.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from harness.cells import ACTIVATIONS, CELLS
from harness.gradients import RECORDERS
from harness.init import INITS
from harness.tasks import TASKS
from harness.train import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
EXPERIMENTS_DIR = ROOT / "experiments"

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("cpu", "cuda")


class ConfigError(ValueError):
    """A configuration value that is not allowed; str(error) is the one line shown to the user."""


Validator = Callable[[str, Any], Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def one_of(options: Any) -> Validator:
    allowed = sorted(options)

    def check(key: str, value: Any) -> Any:
        if value not in allowed:
            raise ConfigError(f"{key}={value}: expected one of {', '.join(allowed)}")
        return value
    return check


def integer(minimum: int) -> Validator:
    def check(key: str, value: Any) -> int:
        if not (_is_number(value) and isinstance(value, int) and value >= minimum):
            raise ConfigError(f"{key}={value}: expected an integer >= {minimum}")
        return value
    return check


def finite_number(minimum: float = -math.inf) -> Validator:
    bound = "" if minimum == -math.inf else f" >= {minimum:g}"

    def check(key: str, value: Any) -> float:
        if not (_is_number(value) and math.isfinite(value) and value >= minimum):
            raise ConfigError(f"{key}={value}: expected a finite number{bound}")
        return float(value)
    return check


def optional(check: Validator) -> Validator:
    """null (off), or a value that passes check."""
    def check_or_null(key: str, value: Any) -> Any:
        return None if value is None else check(key, value)
    return check_or_null


def positive_number(key: str, value: Any) -> float:
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{key}={value}: expected a finite number > 0")
    return float(value)


def device(key: str, value: Any) -> str:
    one_of(DEVICES)(key, value)
    if value == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={value}: CUDA is not available on this machine; expected cpu")
    return value


def text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}={value}: expected a non-empty name")
    return value


# Dotted keys name the fields of config groups (cell.forget_bias); a group's own key (cell) is its
# `name` field, i.e. the option chosen.
VALIDATORS: dict[str, Validator] = {
    "name": text,
    "remedy": one_of(sorted(p.stem for p in (CONF_DIR / "remedy").glob("*.yaml"))),
    "cell": one_of(CELLS),
    "cell.forget_bias": finite_number(),
    "cell.chrono_tmax": optional(integer(2)),
    "activation": one_of(ACTIVATIONS),
    "init": one_of(INITS),
    "task": one_of(TASKS),
    "scale": finite_number(minimum=0),
    "seq_len": integer(1),
    "hidden_size": integer(1),
    "input_size": integer(1),
    "num_layers": integer(1),
    "batch_size": integer(1),
    "seed": integer(0),
    "recorder": one_of(RECORDERS),
    "dtype": one_of(DTYPES),
    "device": device,
    "train.steps": integer(0),
    "train.lr": positive_number,
    "train.optimizer": one_of(OPTIMIZERS),
    "train.clip_norm": optional(positive_number),
    "train.clip_value": optional(positive_number),
    "train.weight_decay": finite_number(minimum=0),
    "train.record_every": integer(1),
}
GROUPS = ("cell", "init", "task")


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's configuration as flat table columns: cell, cell.forget_bias, scale, ..."""
    columns: dict[str, Any] = {}
    for key, value in OmegaConf.to_container(cfg, resolve=True).items():
        if key == "hydra":
            continue
        if isinstance(value, dict):  # a config group: its name (the option chosen), then its fields
            for field, field_value in value.items():
                columns[key if field == "name" else f"{key}.{field}"] = field_value
        else:
            columns[key] = value
    return columns


def config_columns(cfg: DictConfig) -> dict[str, Any]:
    """flat_config, every value validated and normalised; raise ConfigError on the first bad one.

    A training task fixes the input size (adding has 2 channels), so its input_size column says so.
    """
    columns = flat_config(cfg)
    for key, value in columns.items():
        if key not in VALIDATORS:
            raise ConfigError(f"{key}={value}: unknown key; expected one of {', '.join(VALIDATORS)}")
        columns[key] = VALIDATORS[key](key, value)
    task = TASKS[columns["task"]]
    if columns["task"] == "probe" and columns.get("train.steps"):
        raise ConfigError(f"train.steps={columns['train.steps']}: task=probe has nothing to learn; "
                          "expected 0, or a task among " + ", ".join(t for t in TASKS if t != "probe"))
    columns["input_size"] = task.input_size or columns["input_size"]
    return columns


def run_id(columns: dict[str, Any]) -> str:
    """A short hash of everything that determines a run's numbers (the experiment name does not)."""
    identity = {k: v for k, v in sorted(columns.items()) if k != "name"}
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def check_overrides(overrides: list[str]) -> None:
    """Validate Hydra override strings (sweeps expanded) against VALIDATORS; raise ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, parsed = OverridesParser.create(), []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except Exception as error:  # Hydra's grammar errors span lines; keep the first
            reason = str(error).strip().splitlines()[0]
            raise ConfigError(f"{text}: not a Hydra override ({reason}); quote values with '=' or spaces") from None
    # Experiments are the files in experiments/, unless the user adds search paths of their own.
    extra_paths = any(o.key_or_group == "hydra.searchpath" for o in parsed)
    checkers = {**VALIDATORS, "experiment": (lambda k, v: v) if extra_paths else one_of(experiment_names())}
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        if key not in checkers:
            raise ConfigError(f"{key}={override.get_value_element_as_str()}: unknown key; "
                              f"expected one of {', '.join(checkers)}")
        if not override.is_sweep_override():
            values = [override.value()]
        elif override.is_discrete_sweep():
            values = list(override.sweep_iterator())
        else:  # an interval sweep: the sweeper picks the points, each checked in its run
            continue
        for value in values:
            checkers[key](key, value)
