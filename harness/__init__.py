"""harness: measure vanishing and exploding gradients through time in recurrent networks.

    >>> import torch, harness
    >>> _ = torch.manual_seed(0)
    >>> profile = harness.record(torch.nn.LSTM(16, 64), torch.randn(200, 8, 16))
    >>> fit = profile.fit()  # the top layer's h; profile.plot() draws it
    >>> round(fit["rate"], 2), round(fit["half_life"], 2), fit["regime"], fit["horizon"]
    (-0.48, 1.44, 'vanishing', 11.0)

For a whole model, harness.record(model, inputs, module=model.lstm, loss=...); while it trains,
harness.Monitor (tests/test_docs.py runs this example).

The package is layered (arrows point down): harness.core (torch and numpy: cells, inits, tasks,
recorders, theory, fits, remedies), harness.lab (this API and its GradientProfile, one run, tables,
figures, report: pandas and matplotlib, imported when a table or figure is made), harness.cli (Hydra
entry points, the sweeper, collect / plot). Importing this module loads no torch and changes no global
state: each public name imports its module (and torch, where it needs it) when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy names below resolve to
    from harness.core.cells import CellNet, RecurrentNet
    from harness.core.errors import ConfigError, HarnessError, ModelError, NotApplicable
    from harness.core.spec import RunSpec
    from harness.lab import loggers  # noqa: F401  (harness.loggers)
    from harness.lab.api import from_torch, record
    from harness.lab.monitor import Monitor, Snapshot
    from harness.lab.profile import GradientProfile

# Each public name and the module it lives in, imported on first use (PEP 562).
_LAZY = {
    "record": "harness.lab.api",
    "from_torch": "harness.lab.api",
    "GradientProfile": "harness.lab.profile",
    "Monitor": "harness.lab.monitor",
    "Snapshot": "harness.lab.monitor",
    "RecurrentNet": "harness.core.cells",
    "CellNet": "harness.core.cells",
    "RunSpec": "harness.core.spec",
    "HarnessError": "harness.core.errors",
    "ConfigError": "harness.core.errors",
    "ModelError": "harness.core.errors",
    "NotApplicable": "harness.core.errors",
}
_MODULES = {"loggers": "harness.lab.loggers"}  # harness.loggers.TensorBoard(...)

__all__ = [
    "record",
    "from_torch",
    "GradientProfile",
    "Monitor",
    "Snapshot",
    "RecurrentNet",
    "CellNet",
    "RunSpec",
    "HarnessError",
    "ConfigError",
    "ModelError",
    "NotApplicable",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_MODULES})
