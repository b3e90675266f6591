"""harness: measure vanishing and exploding gradients through time in recurrent networks.

    import torch, harness
    profile = harness.record(torch.nn.LSTM(16, 64), torch.randn(200, 8, 16))
    profile.fit()          # {'rate': -0.05, 'half_life': 13.9, 'regime': 'vanishing', ...}
    profile.plot()

The package is layered (arrows point down): harness.core (torch only: cells, inits, tasks,
recorders, theory, fits, this API), harness.lab (one run, tables, figures, report: pandas,
matplotlib), harness.cli (Hydra entry points, the sweeper, collect / plot). Importing this module
loads torch and harness.core only, and changes no global state.
"""
from harness.core.api import from_torch, record
from harness.core.cells import CellNet, RecurrentNet
from harness.core.errors import ConfigError, HarnessError, ModelError, NotApplicable
from harness.core.profile import GradientProfile
from harness.core.spec import RunSpec

__all__ = ["record", "from_torch", "GradientProfile", "RecurrentNet", "CellNet", "RunSpec",
           "HarnessError", "ConfigError", "ModelError", "NotApplicable"]
