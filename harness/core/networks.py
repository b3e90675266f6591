"""The registry of built-in cells: a cell's name -> the network that runs it. User cells (a
`_target_` class) join through harness.core.cells.CellNet instead; both speak StackedNet's protocol.

    rnn, lstm, gru          RecurrentNet (harness.core.cells): torch's equations
    lru, indrnn, minimal    harness.core.modern
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import torch

from harness.core.cells import CELLS, RecurrentNet, StackedNet
from harness.core.errors import HarnessError, NotApplicable
from harness.core.modern import IndRNNNet, LRUNet, MinimalNet

if TYPE_CHECKING:  # spec imports this module's registry
    from harness.core.spec import RunSpec

# Options of one cell only, with the defaults that mean "not set" for the others.
LRU_OPTIONS = {"r_min": 0.0, "r_max": 1.0, "max_phase": 2 * math.pi}

NETWORKS: dict[str, Callable[..., StackedNet]] = {
    **{name: (lambda name: lambda activation, *sizes, **_: RecurrentNet(name, activation, *sizes))(name)
       for name in CELLS},
    "lru": lambda activation, *sizes, **options: LRUNet(*sizes, **options),
    "indrnn": lambda activation, *sizes, **_: IndRNNNet(activation, *sizes),
    "minimal": lambda activation, *sizes, **_: MinimalNet(activation, *sizes),
}


def build(cell: str, activation: str, input_size: int, hidden_size: int, num_layers: int,
          options: dict[str, Any]) -> StackedNet:
    """A built-in cell's network, uninitialised; options: the lru's r_min, r_max, max_phase."""
    if cell != "lru" and any(options.get(k, v) != v for k, v in LRU_OPTIONS.items()):
        raise NotApplicable("cell.r_min, cell.r_max and cell.max_phase apply to the lru only")
    if cell == "lru" and activation != "tanh":
        raise NotApplicable(f"activation={activation}: the lru is linear; it has no activation to replace")
    return NETWORKS[cell](activation, input_size, hidden_size, num_layers,
                          **{k: options.get(k, v) for k, v in LRU_OPTIONS.items()})


def meta_network(run: RunSpec) -> StackedNet | None:
    """A run's built-in network on torch's meta device (shapes only, no memory: parameter counts and
    state sizes before anything is allocated); None for a user cell or a setting it does not take."""
    if run.cell._target_ or run.cell.name not in NETWORKS:
        return None
    options = {k: getattr(run.cell, k) for k in LRU_OPTIONS}
    try:
        with torch.device("meta"):
            return build(run.cell.name, run.activation, run.input_size, run.hidden_size, run.num_layers, options)
    except HarnessError:  # not applicable: the run will say so, at no cost
        return None
