"""The registry of built-in cells: one CellType row each (CELLS below), read without torch, so that
drawing stored tables (harness.plot, harness.collect) can colour, order and describe cells with no
model and no torch. A row names the module under harness.core.zoo whose `build` makes its network; that
module is imported only when a network is built. User cells (a `_target_` class) join through
harness.core.cells.CellNet instead; both speak the network protocol (harness.core.protocol).

    rnn, lstm, gru          harness.core.zoo.classic: torch's equations (RecurrentNet)
    lru                     harness.core.zoo.lru
    indrnn                  harness.core.zoo.indrnn
    minimal                 harness.core.zoo.minimal
    mingru, minlstm         harness.core.zoo.input_gated
    selective               harness.core.zoo.selective

How to add a built-in cell: write one module in harness/core/zoo/ with its network, a StackedNet
subclass answering the protocol (initialise_weights and linear_rate at least; mean_field,
closed_form_profile, gate_names and the gate-bias methods where it has them), and
`build(name, activation, input_size, hidden_size, num_layers, **options)`; then add its row to CELLS.
That is all: the command line offers cell=<name> (harness.cli.configs registers it in Hydra's ConfigStore),
figures colour it, and tests/test_cell_protocol.py checks the row against the module. A build option
of its own (cell.<key>) also needs its field in harness.core.spec.CellSpec.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError, NotApplicable

if TYPE_CHECKING:  # spec imports this module's registry; the networks need torch, this module does not
    from harness.core.protocol import StackedNet
    from harness.core.spec import RunSpec


@dataclass(frozen=True)
class CellType:
    """A built-in cell: how to build it, the keys it takes, how figures show it, its memory per step."""

    name: str  # cell=<name>
    module: str  # the module whose build(name, activation, input_size, hidden_size, num_layers, **options) makes it
    order: int  # its place among the cells in tables and figures (unique)
    colour: str  # its colour in figures (unique)
    graph_states_per_step: float  # one recorded step of autograd graph, in (batch, state) tensors (measured)
    scaled: str = "W_hh"  # what `scale` multiplies, as figures label it
    options: Mapping[str, Any] = field(default_factory=dict)  # its build options (cell.<key>) -> "not set"
    takes: tuple[str, ...] = ()  # other keys that only some cells take, this one among them

    def build(self, activation: str, input_size: int, hidden_size: int, num_layers: int, **options: Any) -> StackedNet:
        """Its network, uninitialised (imports its module, and so torch)."""
        make = importlib.import_module(self.module).build
        return make(self.name, activation, input_size, hidden_size, num_layers, **options)


FLOSSING = "train.flossing_k"  # gradient flossing runs on the cells' written-out JVPs
ZOO = "harness.core.zoo."
# graph_states_per_step: the forward graph measured at hidden 256, batch 32, float32, 3000 steps, rounded
# up for the backward's temporaries (rnn 4.3, lstm 8.1, gru 17.1, lru 1.9, indrnn 2.6, minimal 5 saved
# tensors, mingru 3.0 and minlstm 2.8 plus the step's drive, selective 4.8 at hidden 64 x 16).
CELLS = (
    CellType(
        "rnn", ZOO + "classic", order=0, colour="#0072B2", graph_states_per_step=5.0, takes=("train.omega", FLOSSING)
    ),  # Pascanu et al.'s Omega is the one-layer rnn's
    CellType(
        "lstm",
        ZOO + "classic",
        order=1,
        colour="#D55E00",
        graph_states_per_step=9.0,
        takes=("cell.forget_bias", "cell.chrono_tmax", FLOSSING),
    ),
    CellType(
        "gru",
        ZOO + "classic",
        order=2,
        colour="#009E73",
        graph_states_per_step=19.0,
        takes=("cell.chrono_tmax", FLOSSING),
    ),
    CellType(
        "lru",
        ZOO + "lru",
        order=3,
        colour="#CC79A7",
        graph_states_per_step=3.0,
        scaled="|λ|",
        options={"r_min": 0.0, "r_max": 1.0, "max_phase": 2 * math.pi},
    ),
    CellType("indrnn", ZOO + "indrnn", order=4, colour="#E69F00", graph_states_per_step=3.0, scaled="u"),
    CellType("minimal", ZOO + "minimal", order=5, colour="#56B4E9", graph_states_per_step=9.0),
    CellType("mingru", ZOO + "input_gated", order=6, colour="#332288", graph_states_per_step=6.0, scaled="1−z"),
    CellType("minlstm", ZOO + "input_gated", order=7, colour="#117733", graph_states_per_step=7.0, scaled="f′"),
    CellType(
        "selective",
        ZOO + "selective",
        order=8,
        colour="#AA4499",
        graph_states_per_step=7.0,
        scaled="exp(ΔA)",
        options={"state_size": 16, "dt_min": 0.001, "dt_max": 0.1},
    ),
)


def registry(cells: Sequence[CellType]) -> dict[str, CellType]:
    """Cells by name, in their order; two rows with one name, order or colour are refused."""
    for key in ("name", "order", "colour"):
        values = [getattr(cell_type, key) for cell_type in cells]
        if len(set(values)) != len(values):
            raise RuntimeError(f"built-in cells: two declare the same {key} ({values})")
    return {cell_type.name: cell_type for cell_type in sorted(cells, key=lambda cell_type: cell_type.order)}


CELL_TYPES: dict[str, CellType] = registry(CELLS)
NETWORKS = CELL_TYPES  # cell name -> its CellType (whose build makes the network)


def join_names(names: Sequence[str]) -> str:
    """a, b and c."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


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
    import torch  # noqa: PLC0415  drawing stored tables imports this module, never this function

    options = {key: getattr(run.cell, key) for key in BUILD_OPTIONS}
    try:
        with torch.device("meta"):
            return build(run.cell.name, run.activation, run.input_size, run.hidden_size, run.num_layers, options)
    except HarnessError:  # not applicable: the run will say so, at no cost
        return None
