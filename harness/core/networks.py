"""The registry of built-in cells: every CellType declared by a module of harness.core.zoo, in their
`order`. User cells (a `_target_` class) join through harness.core.cells.CellNet instead; both speak
the network protocol (harness.core.protocol).

    rnn, lstm, gru          harness.core.zoo.classic: torch's equations (RecurrentNet)
    lru                     harness.core.zoo.lru
    indrnn                  harness.core.zoo.indrnn
    minimal                 harness.core.zoo.minimal

How to add a built-in cell: write one module in harness/core/zoo/ with its network, a StackedNet
subclass answering the protocol (initialise_weights and linear_rate at least; mean_field,
closed_form_profile, gate_names and the gate-bias methods where it has them), and
`CELL_TYPES = (CellType(name, build, order=, colour=, graph_states_per_step=, ...),)`. That is all: the
registry finds the module, the command line offers cell=<name> (harness.cli registers it in Hydra's
ConfigStore), figures colour it, and tests/test_cell_protocol.py checks the declaration. A build option
of its own (cell.<key>) also needs its field in harness.core.spec.CellSpec.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

import torch

from harness.core import zoo
from harness.core.errors import HarnessError, NotApplicable
from harness.core.protocol import CellType, StackedNet, join_names

if TYPE_CHECKING:  # spec imports this module's registry
    from harness.core.spec import RunSpec


def scan(package: Any = zoo) -> dict[str, CellType]:
    """Every CellType the modules of `package` declare (CELL_TYPES), by name, in their order."""
    found: list[CellType] = []
    for module in pkgutil.iter_modules(package.__path__):
        found.extend(getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "CELL_TYPES", ()))
    found.sort(key=lambda cell_type: cell_type.order)
    for key in ("name", "order", "colour"):
        values = [getattr(cell_type, key) for cell_type in found]
        if len(set(values)) != len(values):
            raise RuntimeError(f"built-in cells: two declare the same {key} ({values})")
    return {cell_type.name: cell_type for cell_type in found}


CELL_TYPES: dict[str, CellType] = scan()
NETWORKS = CELL_TYPES  # cell name -> its CellType (whose build makes the network)


def _build_options() -> dict[str, Any]:
    options: dict[str, Any] = {}
    for cell_type in CELL_TYPES.values():
        for key, unset in cell_type.options.items():
            if options.setdefault(key, unset) != unset:
                raise RuntimeError(f"cell.{key}: two built-in cells declare different defaults")
    return options


BUILD_OPTIONS: dict[str, Any] = _build_options()  # every cell's build options -> the value that means not set


def cells_taking(key: str) -> tuple[str, ...]:
    """The built-in cells that take a cell-only key (cell.<option> or one of their `takes`), in order."""
    return tuple(
        name
        for name, cell_type in CELL_TYPES.items()
        if key in cell_type.takes or key in {f"cell.{option}" for option in cell_type.options}
    )


def cell_only_keys() -> dict[str, tuple[str, ...]]:
    """Every key that some built-in cells take and the others do not -> the cells that take it."""
    keys = {
        key
        for cell_type in CELL_TYPES.values()
        for key in (*cell_type.takes, *(f"cell.{option}" for option in cell_type.options))
    }
    return {key: cells_taking(key) for key in sorted(keys)}


def cell_style(name: str) -> tuple[int, str, str] | None:
    """(order, colour, what `scale` multiplies) of a built-in cell, for figures; None for a user cell."""
    cell_type = CELL_TYPES.get(name)
    return None if cell_type is None else (cell_type.order, cell_type.colour, cell_type.scaled)


def build(
    cell: str, activation: str, input_size: int, hidden_size: int, num_layers: int, options: dict[str, Any]
) -> StackedNet:
    """A built-in cell's network, uninitialised; options: build options (BUILD_OPTIONS: the lru's r_min,
    r_max, max_phase), refused as not applicable where set on a cell that does not take them."""
    cell_type = CELL_TYPES[cell]
    for other in CELL_TYPES.values():
        foreign = [key for key in other.options if key not in cell_type.options]
        if any(options.get(key, other.options[key]) != other.options[key] for key in foreign):
            names = [f"cell.{key}" for key in foreign]
            verb = "applies" if len(names) == 1 else "apply"
            raise NotApplicable(f"{join_names(names)} {verb} to the {join_names(cells_taking(names[0]))} only")
    own = {key: options.get(key, unset) for key, unset in cell_type.options.items()}
    return cell_type.build(activation, input_size, hidden_size, num_layers, **own)


def meta_network(run: RunSpec) -> StackedNet | None:
    """A run's built-in network on torch's meta device (shapes only, no memory: parameter counts and
    state sizes before anything is allocated); None for a user cell or a setting it does not take."""
    if run.cell._target_ or run.cell.name not in NETWORKS:
        return None
    options = {key: getattr(run.cell, key) for key in BUILD_OPTIONS}
    try:
        with torch.device("meta"):
            return build(run.cell.name, run.activation, run.input_size, run.hidden_size, run.num_layers, options)
    except HarnessError:  # not applicable: the run will say so, at no cost
        return None
