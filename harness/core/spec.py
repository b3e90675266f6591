"""The typed run specification: the one place that says what a run is.

`RunSpec` (with `CellSpec` and `TrainSpec` for the `cell` and `train` groups) lists every key a run
reads, with its type, default, the values allowed and what it means. Everything else derives from it:
the table columns (`config_columns`), the run id (`run_id`), the validators that check command-line
overrides, experiment sweeps and each composed config before any compute (`VALIDATORS`, with the
cross-field rules in `check_run`), and the structured config Hydra composes into (registered by
harness.cli, with `python -m harness --help`'s key list from `describe`). Adding a key is one field here.

The dataclasses are frozen: a run is built once from its validated columns (`RunSpec.from_columns`)
and core code reads attributes (`run.cell.name`, `run.theory.spectrum_k`), so a misspelt key is an
AttributeError, never a silent default. The flat columns exist only where tables are written and read.

A validator returns the value normalised (scale=1 becomes 1.0) so that tables never mix ints and
floats in a column.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Collection, Dict, Mapping, Optional

from harness.core.errors import ConfigError
from harness.core.networks import NETWORKS, cell_only_keys, meta_network
from harness.core.validators import (
    Validator,
    boolean,
    device,
    finite_number,
    folder_name,
    import_path,
    integer,
    one_of,
    optional,
    positive_number,
    scalars,
    text,
)

DTYPES = ("float32", "float64")  # torch's dtypes of these names (harness.lab.build)


def registered(module: str, name: str) -> Callable[[], Collection[str]]:
    """The names in a registry of harness.core, read when a value is checked: the registries hold
    torch's functions, and what only reads stored tables (harness.plot, harness.collect) checks no value
    against them, so it never imports torch."""
    return lambda: getattr(importlib.import_module(f"harness.core.{module}"), name)


_tasks = registered("tasks", "TASKS")  # the task registry (harness.core.tasks.TASKS), read when a run is checked


def spec(default: Any, check: Validator, doc: str) -> Any:
    """A specification field: its default, its validator and what it means (shown by `describe`)."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"check": check, "doc": doc})


@dataclass(frozen=True)
class CellSpec:
    """The `cell` group: a built-in cell, or a user cell named by `_target_` (see harness.core.cells)."""

    name: str = spec(
        "rnn",
        text,
        "rnn | lstm | gru | lru | indrnn | minimal | mingru | minlstm | selective (built in), or a user cell's name",
    )
    forget_bias: float = spec(0.0, finite_number(), "lstm only: added to the forget gate's bias after init")
    chrono_tmax: Optional[int] = spec(
        None, optional(integer(2)), "lstm, gru: chrono init, gate biases log U[1, tmax - 1] (null: off)"
    )
    r_min: float = spec(0.0, finite_number(minimum=0), "lru only: ring init, smallest |lambda|")
    r_max: float = spec(1.0, finite_number(minimum=0), "lru only: ring init, largest |lambda| (<= 1)")
    max_phase: float = spec(2 * math.pi, finite_number(minimum=0), "lru only: ring init, phases U[0, max_phase]")
    state_size: int = spec(
        16, integer(1), "selective only: state entries per channel (h_t is hidden_size x state_size)"
    )
    dt_min: float = spec(0.001, positive_number, "selective only: Delta starts log-uniform in [dt_min, dt_max]")
    dt_max: float = spec(0.1, positive_number, "selective only: Delta starts log-uniform in [dt_min, dt_max]")
    _target_: Optional[str] = spec(None, import_path, "a user cell: the nn.Module class to build (null: built in)")
    kwargs: Dict[str, Any] = spec(dict, scalars, "a user cell's own constructor arguments")


@dataclass(frozen=True)
class InitSpec:
    """The `init` group (harness.core.init)."""

    name: str = spec("default", one_of(registered("init", "INITS")), "default | gaussian | orthogonal | identity")


@dataclass(frozen=True)
class TaskSpec:
    """The `task` group (harness.core.tasks)."""

    name: str = spec("probe", one_of(_tasks), "probe | adding | copy | temporal_order | random_walk")


@dataclass(frozen=True)
class TrainSpec:
    """The `train` group: training for the tasks other than probe (harness.core.train)."""

    steps: int = spec(0, integer(0), "optimiser steps, each on a fresh batch (0: record at init only)")
    lr: float = spec(0.001, positive_number, "learning rate")
    optimizer: str = spec("adam", one_of(registered("train", "OPTIMIZERS")), "sgd | adam | rmsprop")
    clip_norm: Optional[float] = spec(None, optional(positive_number), "clip the gradients' global norm (null: off)")
    clip_value: Optional[float] = spec(None, optional(positive_number), "clip every gradient entry (null: off)")
    weight_decay: float = spec(0.0, finite_number(minimum=0), "L2 penalty, passed to the optimiser")
    omega: float = spec(
        0.0, finite_number(minimum=0), "weight of Pascanu et al. 2013's Omega regulariser (0: off; one-layer rnn only)"
    )
    flossing_k: int = spec(
        0,
        integer(0),
        "gradient flossing: the k largest Lyapunov exponents pushed toward 0 (0: off; built-in rnn, lstm, gru)",
    )
    flossing_every: int = spec(10, integer(1), "a flossing step before training and every this many steps")
    record_every: int = spec(100, integer(1), "evaluate and record the profile every this many steps")


@dataclass(frozen=True)
class TheorySpec:
    """The `theory` group: what is computed beside the measurement (harness.core.theory)."""

    spectrum_k: int = spec(0, integer(0), "the k largest Lyapunov exponents (0: off; at most the state size)")


@dataclass(frozen=True)
class RecordSpec:
    """The `record` group: what is recorded beside the profile (harness.core.detail)."""

    units: bool = spec(
        False,
        boolean,
        "per-unit, per-gate and per-step weight-gradient rows (units.parquet, "
        "gates.parquet); off: they multiply a table's size by the state size",
    )


@dataclass(frozen=True)
class MemorySpec:
    """The `memory` group: how a recording fits in memory. It never changes a run's numbers (tested),
    so it is not part of the run id."""

    fraction: float = spec(0.25, positive_number, "of the available memory a recording's segment may use")
    segment: Optional[int] = spec(
        None, optional(integer(1)), "steps recorded per segment (null: as many as `fraction` holds)"
    )


@dataclass(frozen=True)
class RunSpec:
    """One run. Groups chosen by name on the command line (cell=lstm, init=gaussian, task=adding) are
    stored as {name: ..., fields...}; their table column is the name, their fields `group.field`."""

    name: str = spec("adhoc", folder_name, "names the results folder; each experiment sets its own")
    remedy: str = spec("none", text, "the remedy group's choice, so that tables say which was applied")
    cell: CellSpec = spec(CellSpec, text, "the recurrent cell")
    init: InitSpec = spec(InitSpec, text, "recurrent weight initialisation")
    task: TaskSpec = spec(TaskSpec, text, "inputs, targets and loss")
    activation: str = spec(
        "tanh", one_of(registered("protocol", "ACTIVATIONS")), "replaces tanh in the cell (gates stay sigmoid)"
    )
    scale: float = spec(1.0, finite_number(minimum=0), "multiplies every recurrent weight matrix after init")
    seq_len: int = spec(100, integer(1), "T, the number of time steps unrolled")
    hidden_size: int = spec(64, integer(1), "units per layer")
    input_size: int = spec(64, integer(1), "input channels (a training task fixes its own)")
    num_layers: int = spec(1, integer(1), "stacked recurrent layers")
    batch_size: int = spec(32, integer(1), "samples; the profile keeps their median and quantiles")
    seed: int = spec(0, integer(0), "seeds the weights and the inputs, in that order")
    recorder: str = spec(
        "exact",
        one_of(registered("recorders", "RECORDERS")),
        "exact (renormalised BPTT, any range) | autograd (raw, in dtype)",
    )
    dtype: str = spec("float32", one_of(DTYPES), "float32 | float64")
    device: str = spec("cpu", device, "cpu | cuda")
    train: TrainSpec = spec(TrainSpec, text, "training settings")
    theory: TheorySpec = spec(TheorySpec, text, "theory settings")
    record: RecordSpec = spec(RecordSpec, text, "what is recorded beside the profile")
    memory: MemorySpec = spec(MemorySpec, text, "memory settings of the recorder")

    @classmethod
    def from_columns(cls, row: Mapping[str, Any]) -> RunSpec:
        """The typed spec of a validated table row (config_columns'); a key it does not know is an
        error, a key it lacks takes its default."""
        unknown = [k for k in row if k not in FIELDS and not k.startswith("cell.kwargs.")]
        if unknown:
            raise ConfigError(f"{unknown[0]}={row[unknown[0]]}: unknown key; expected one of {', '.join(FIELDS)}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            group = _group_class(f)
            if group is None:
                if f.name in row:
                    values[f.name] = row[f.name]
                continue
            own = {k.removeprefix(f"{f.name}."): v for k, v in row.items() if k.startswith(f"{f.name}.")}
            kwargs = {k.removeprefix("kwargs."): own.pop(k) for k in list(own) if k.startswith("kwargs.")}
            if f.name in row:
                own["name"] = row[f.name]
            values[f.name] = group(**own, **({"kwargs": kwargs} if kwargs else {}))
        return cls(**values)

    def value(self, key: str) -> Any:
        """The value of a column name (`scale`, `cell`, `train.lr`, `cell.kwargs.units`); AttributeError
        for a name the spec does not have."""
        node: Any = self
        parts = key.split(".")
        for n, part in enumerate(parts):
            if isinstance(node, dict):  # cell.kwargs.<name>
                return node[".".join(parts[n:])]
            node = getattr(node, part)
        return node.name if _group_class_of(node) else node


def _group_class(f: Any) -> type | None:
    """The dataclass of a nested group field (cell, train, ...), None for a plain field."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and factory is not dict else None


def _group_class_of(node: Any) -> bool:
    return hasattr(type(node), "__dataclass_fields__")


GROUPS = ("cell", "init", "task")  # chosen by name from conf/<group>/


def _flat_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Column name -> dataclass field, nested groups flattened with dots (a group's own column is its name)."""
    flat: dict[str, Any] = {}
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        if _group_class(f) is not None:  # a nested group
            flat.update({(key if k == "name" else f"{key}.{k}"): v for k, v in _flat_fields(_group_class(f)).items()})
        else:
            flat[key] = f
    return flat


FIELDS = _flat_fields(RunSpec)
# Column name -> validator: the single table every check uses.
VALIDATORS: dict[str, Validator] = {key: f.metadata["check"] for key, f in FIELDS.items()}
RECORDING = "recording"  # a recording from Python: a hash of what it recorded (harness.lab.api.recording_digest)


def is_config_column(column: str) -> bool:
    """Whether a table column tells runs apart as a setting does: a key of the config, a user cell's
    argument, or a Python recording's `recording` (its columns name neither its weights nor inputs)."""
    return column in VALIDATORS or column.startswith("cell.kwargs.") or column == RECORDING


def describe() -> list[tuple[str, Any, str]]:
    """(key, default, meaning) for every key of a run, as `python -m harness --help` lists them."""
    rows = []
    for key, f in FIELDS.items():
        default = f.default if f.default is not MISSING else f.default_factory()
        rows.append((key, default, f.metadata["doc"]))
    return rows


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config (nested dicts) as flat table columns: cell, cell.forget_bias, scale, ...

    A user cell's constructor arguments become columns of their own (cell.kwargs.units)."""
    row: dict[str, Any] = {}
    for key, value in config.items():
        if key == "hydra":
            continue
        if isinstance(value, Mapping):  # a config group: its name (the option chosen), then its fields
            for name, field_value in value.items():
                column = key if name == "name" else f"{key}.{name}"
                if name == "kwargs" and isinstance(field_value, Mapping):
                    row.update({f"{column}.{k}": v for k, v in field_value.items()})
                else:
                    row[column] = field_value
        else:
            row[key] = value
    return row


def check_run(run: RunSpec) -> None:
    """The rules that involve more than one key; raise ConfigError on the first broken one."""
    tasks = _tasks()
    cell, task = run.cell, tasks[run.task.name]
    if cell._target_ is None and cell.name not in NETWORKS:
        raise ConfigError(
            f"cell={cell.name}: expected one of {', '.join(NETWORKS)}, or a user cell with "
            "cell._target_=package.module.Class"
        )
    if cell._target_ is None and cell.kwargs:
        raise ConfigError(
            f"cell.kwargs: cell={cell.name} is built in and takes no constructor "
            "arguments; expected cell._target_ with them"
        )
    if run.task.name == "probe" and run.train.steps:
        raise ConfigError(
            f"train.steps={run.train.steps}: task=probe has nothing to learn; "
            "expected 0, or a task among " + ", ".join(t for t in tasks if t != "probe")
        )
    if not 0 <= cell.r_min < cell.r_max <= 1:
        raise ConfigError(
            f"cell.r_min={cell.r_min}, cell.r_max={cell.r_max}: expected "
            "0 <= r_min < r_max <= 1 (use scale to push |lambda| past 1)"
        )
    if cell.dt_min > cell.dt_max:
        raise ConfigError(f"cell.dt_min={cell.dt_min}, cell.dt_max={cell.dt_max}: expected dt_min <= dt_max")
    for key, k in (("theory.spectrum_k", run.theory.spectrum_k), ("train.flossing_k", run.train.flossing_k)):
        network = meta_network(run) if k and cell._target_ is None else None  # tangents: at most the state's entries
        if network is not None and k > sum(network.block_sizes):
            raise ConfigError(
                f"{key}={k}: the {cell.name}'s state has {sum(network.block_sizes)} "
                f"entries (hidden_size x its state blocks x num_layers); expected at most that"
            )
    if run.record.units and not task.final_state_only:
        raise ConfigError(
            f"record.units=true: task={run.task.name} has a loss on every step; the per-unit rows "
            "use the exact recorder's renormalisation; expected a task whose loss reads the last step "
            f"({', '.join(name for name, kind in tasks.items() if kind.final_state_only)})"
        )
    if run.recorder == "exact" and not task.final_state_only:
        raise ConfigError(f"recorder=exact: task={run.task.name} has a loss on every step; expected recorder=autograd")


# Keys only some built-in cells take, as they declare them (CellType.options and .takes): set by a remedy
# on another cell, the run is not applicable (cells x remedies sweeps run whole); set by the user, refused.
CELL_ONLY = cell_only_keys()


def check_explicit(run: RunSpec, explicit: Collection[str]) -> None:
    """The rules for keys the user set (command line, sweep): a cell-only key on another cell, a key
    the task fixes set to something else. Raise ConfigError on the first broken one."""
    for key in explicit:
        cells = CELL_ONLY.get(key)
        if cells and run.cell.name not in cells:
            raise ConfigError(
                f"{key}={run.value(key)}: applies to cell={' or '.join(cells)} only, not "
                f"cell={run.cell.name}; expected no {key} for it (a remedy that sets it "
                "is recorded as not applicable on such cells)"
            )
    fixed = _tasks()[run.task.name].input_size
    if "input_size" in explicit and fixed and run.input_size != fixed:
        raise ConfigError(
            f"input_size={run.input_size}: task={run.task.name} has {fixed} input "
            f"channels; expected input_size={fixed}, or no input_size"
        )


def config_columns(config: Mapping[str, Any], explicit: Collection[str] = ()) -> dict[str, Any]:
    """flat_config, every value validated and normalised and the cross-field rules checked; raise
    ConfigError on the first bad one. explicit: the keys the user set, which check_explicit checks.

    A training task fixes the input size (adding has 2 channels), so its input_size column says so.
    """
    flat = flat_config(config)
    for key, value in flat.items():
        check = VALIDATORS.get(key)
        if check is None and key.startswith("cell.kwargs."):
            check = lambda k, v: scalars(k, {k: v})[k]  # noqa: E731  checked as a scalar
        if check is None:
            raise ConfigError(f"{key}={value}: unknown key; expected one of {', '.join(VALIDATORS)}")
        flat[key] = check(key, value)
    flat.pop("cell.kwargs", None)  # an empty mapping: no arguments, no column
    if flat.get("cell._target_") and flat["cell"] in NETWORKS:  # cell._target_=... over a built-in's name
        flat["cell"] = flat["cell._target_"].rsplit(".", 1)[-1]
    run = RunSpec.from_columns(flat)
    check_run(run)
    check_explicit(run, explicit)
    flat["input_size"] = _tasks()[run.task.name].input_size or run.input_size
    return flat


NOT_IDENTITY = ("name", "memory.")  # columns that never change a run's numbers


def run_id(columns: dict[str, Any]) -> str:
    """A short hash of everything that determines a run's numbers (the experiment name and the memory
    settings do not)."""
    identity = {k: v for k, v in sorted(columns.items()) if not k.startswith(NOT_IDENTITY)}
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
