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
entry points, the sweeper, collect / plot). Importing this module loads torch and changes no global
state.
"""

from harness.core.cells import CellNet, RecurrentNet
from harness.core.errors import ConfigError, HarnessError, ModelError, NotApplicable
from harness.core.spec import RunSpec
from harness.lab.api import from_torch, record
from harness.lab.monitor import Monitor, Snapshot
from harness.lab.profile import GradientProfile

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
