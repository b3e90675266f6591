"""The training monitor as a Lightning callback (the [lightning] extra: pip install 'harness[lightning]').

    from harness.lab.lightning import MonitorCallback
    from harness.lab.loggers import TensorBoard
    callback = MonitorCallback(module="lstm", loss=cross_entropy, every=100,
                               loggers=[TensorBoard("runs/lm")])
    lightning.Trainer(callbacks=[callback], ...).fit(model, loader)

MonitorCallback(monitor) uses a harness.Monitor you built; MonitorCallback(**kwargs) builds one when
fitting starts, from harness.Monitor's arguments, with the model the LightningModule itself (model=
"an.attribute" names a submodule of it instead, whose forward then takes the batch's inputs) and
module= the recurrent module, as a module or as an attribute name of the model ("lstm").

The step is trainer.global_step, the number of optimiser steps taken: the monitor records before the
first one (step 0, the model at initialisation; initial=False leaves it out) and after each optimiser
step that is a multiple of `every`, once per step however many batches a step accumulates, on the
first batch it sees (prepare= turns a batch that is not a tensor or a sequence of tensors, a dict say,
into (inputs, targets)). Only the global-zero process records and logs. The loggers are closed when
training ends, or when it stops on an error.

Nothing in harness imports this module (it imports lightning): import it yourself.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from torch import nn

from harness.core.errors import ConfigError
from harness.lab.monitor import Batch, Monitor


class MonitorCallback(pl.Callback):
    """Record the gradient profile through time while Lightning trains (see the module docstring).

    monitor: a harness.Monitor, or None to build one from monitor_kwargs when fitting starts.
    model: the model to record: None for the LightningModule, an attribute name of it ("net",
    "encoder.rnn") or a module.   module: the recurrent module: a module, an attribute name of the
    model, or None (the one recurrent module the model holds).   initial: record at step 0, before the
    first optimiser step.   prepare: batch -> a tensor or (inputs, targets), for batches of another shape.
    """

    def __init__(
        self,
        monitor: Monitor | None = None,
        *,
        model: str | nn.Module | None = None,
        module: str | nn.Module | None = None,
        initial: bool = True,
        prepare: Callable[[Any], Batch] | None = None,
        **monitor_kwargs: Any,
    ):
        super().__init__()
        if monitor is not None and (model is not None or module is not None or monitor_kwargs):
            names = ["model"] * (model is not None) + ["module"] * (module is not None) + list(monitor_kwargs)
            raise ConfigError(
                f"MonitorCallback(monitor, {', '.join(f'{n}=...' for n in names)}): expected a Monitor or its "
                "arguments, not both (a Monitor has its own model and settings)"
            )
        if monitor is not None and not isinstance(monitor, Monitor):
            raise ConfigError(f"monitor: expected a harness.Monitor, got {type(monitor).__name__}")
        self.monitor = monitor
        self.model, self.module, self.initial, self.prepare = model, module, initial, prepare
        self.monitor_kwargs = monitor_kwargs
        self._last: int | None = None  # the last step given to the monitor
        self._closed = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._closed, self._last = False, None
        if self.monitor is None:
            model = pl_module if self.model is None else _resolve(pl_module, self.model, "model", pl_module)
            module = None if self.module is None else _resolve(model, self.module, "module", pl_module)
            self.monitor = Monitor(model, module=module, **self.monitor_kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if self.initial and trainer.global_step == 0 and self._last is None:
            self._step(trainer, 0, batch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != self._last:  # accumulating batches leave global_step where it was
            self._step(trainer, trainer.global_step, batch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.close()

    def close(self) -> None:
        """Close the monitor's loggers (once)."""
        if self.monitor is not None and not self._closed:
            self._closed = True
            self.monitor.close()

    def _step(self, trainer: pl.Trainer, step: int, batch: Any) -> None:
        self._last = step
        if not trainer.is_global_zero or self.monitor is None:
            return
        given = None
        if self.monitor.batch is None:  # the monitor keeps the first batch: only that one is prepared
            given = self.prepare(batch) if self.prepare is not None else batch
        self.monitor.step(step, given)


def _resolve(owner: nn.Module, what: str | nn.Module, key: str, pl_module: nn.Module) -> nn.Module:
    """A module given, or named by its (dotted) attribute name on owner."""
    if isinstance(what, nn.Module):
        return what
    if isinstance(what, str):
        try:
            found = operator.attrgetter(what)(owner)
        except AttributeError:
            found = None
        if isinstance(found, nn.Module):
            return found
        raise ConfigError(
            f"{key}={what!r}: {type(owner).__name__} has no submodule {what}; expected an attribute name of "
            f"{'the LightningModule' if owner is pl_module else 'the model'} that holds a torch module"
        )
    raise ConfigError(f"{key}={what!r}: expected a torch module or its attribute name")
