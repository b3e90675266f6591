"""The errors a user can meet, as one small hierarchy: catch HarnessError for all of them.

Each str(error) is the one line shown to the user: the key, the value, and what is allowed.
"""


class HarnessError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(HarnessError, ValueError):
    """A configuration value, or a combination of values, that is not allowed."""


class NotApplicable(HarnessError, ValueError):
    """A setting that has no meaning for this cell (a forget-gate bias on an rnn): such a run is
    recorded as not applicable rather than failed, so that a sweep of cells x remedies can run whole."""


class ModelError(HarnessError, TypeError):
    """A model or its inputs that harness.record cannot unroll (a bidirectional nn.LSTM, a wrong shape)."""


class Interrupted(HarnessError):
    """A sweep stopped by Ctrl-C or SIGTERM: the message says what is finished and how to resume."""
