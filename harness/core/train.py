"""Training: optimiser steps on fresh batches, with evaluation and a recorded gradient profile on a
fixed held-out batch at step 0 and every `train.record_every` steps.

    train.steps  train.lr  train.optimizer (sgd | adam | rmsprop)  train.record_every
    remedies (harness.core.remedies): train.clip_norm  train.clip_value  train.weight_decay
    train.omega  train.flossing_k  train.flossing_every

`grad_norm` in the loss table is the parameters' gradient norm before clip_norm (after clip_value),
averaged over the steps since the last record. A loss that turns non-finite stops the training; the
run is flagged `diverged`. A run counts as `solved` when its final eval loss is at most
SOLVED_FRACTION of the task's baseline.

What watches the training (a monitor, a logger such as TensorBoard or W&B) is a TrainingCallback:
train() tells it every step and every record, and harness.lab.session tells it the record at step 0.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # spec lists this module's optimisers; remedies imports theory, which imports spec
    from harness.core.remedies import Remedy
    from harness.core.spec import TrainSpec
    from harness.core.tasks import TaskBatch

log = logging.getLogger(__name__)

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
}
SOLVED_FRACTION = 0.1


class Evaluation(NamedTuple):
    """What an evaluation at a record gives: the loss on the held-out batch and, where one was
    recorded, the gradient profile's ln-norms (T+1, batch, parts)."""

    loss: float
    log_norms: Tensor | None = None


class TrainingCallback:
    """The seam for whatever watches a training run: a monitor, a logger (TensorBoard, W&B), the
    run's own bookkeeping (harness.lab.session). Subclass it and override what you need; each method is
    a no-op here. Callbacks watch: they must not change what they are given (a row is the loss
    table's own), the parameters, their gradients or any generator, or the run's numbers change.

    Calls, in order: on_record(0, ...) once the run has recorded at initialisation (harness.lab.session;
    train() itself starts at step 1), then for each step 1..train.steps on_step, and on_record after
    it at every train.record_every steps and at the last step. A diverged run stops without an
    on_step for the step whose loss was not finite."""

    def on_step(self, step: int, loss: float, grad_norm: float) -> None:
        """After optimiser step `step`: its training loss (remedies' loss terms included) and the
        gradients' global norm before clip_norm."""

    def on_record(self, step: int, row: dict[str, Any], log_norms: Tensor | None) -> None:
        """At a record: the loss table's row (step, train_loss, eval_loss, grad_norm, elapsed_s and
        what remedies log, such as flossing_loss; step 0 has step, eval_loss, elapsed_s) and the
        profile's ln-norms (T+1, batch, parts) recorded on the held-out batch (None if none was)."""


class Window:
    """The values since the last record, averaged into a loss-table row."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.norms: list[float] = []
        self.logged: dict[str, list[float]] = {}

    def log(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.logged.setdefault(key, []).append(value)

    def row(self, step: int, eval_loss: float, elapsed: float) -> dict[str, Any]:
        row = {
            "step": step,
            "train_loss": sum(self.losses) / len(self.losses),
            "eval_loss": eval_loss,
            "grad_norm": sum(self.norms) / len(self.norms),
            "elapsed_s": elapsed,
        }
        row.update({key: sum(values) / len(values) for key, values in self.logged.items()})
        return row


def train(
    parameters: list[nn.Parameter],
    settings: TrainSpec,
    draw: Callable[[], TaskBatch],
    loss_of: Callable[[TaskBatch], Tensor],
    evaluate: Callable[[int], Evaluation],
    baseline: float,
    remedies: Sequence[Remedy] | None = None,
    callbacks: Sequence[TrainingCallback] = (),
) -> bool:
    """Run settings.steps optimiser steps, each on the loss_of a fresh batch draw(); at every record
    (every settings.record_every steps and the last) evaluate(step) on held-out data, which may also
    record the profile, and tell the callbacks (see TrainingCallback). The caller has recorded
    step 0. Returns whether the training diverged (a non-finite loss stops it).

    remedies (harness.core.remedies; None: those settings names on their own, clipping and weight
    decay): their optimiser_kwargs go to the optimiser; each step runs every before_step (flossing's
    own step), the loss and its backward, every after_backward (clip_value), then measures the
    gradients' global norm (grad_norm) and clips it to the smallest max_grad_norm (clip_norm) in one
    call, and steps the optimiser. Loss terms (Omega) are loss_of's business."""
    if remedies is None:
        from harness.core.remedies import training_remedies  # here: remedies imports theory, which imports spec

        remedies = training_remedies(settings)
    options = {key: value for remedy in remedies for key, value in remedy.optimiser_kwargs().items()}
    optimiser = OPTIMIZERS[settings.optimizer](parameters, lr=settings.lr, **options)
    max_norm = min((remedy.max_grad_norm for remedy in remedies), default=math.inf)
    steps, every = settings.steps, settings.record_every
    start, window = time.perf_counter(), Window()
    for step in range(1, steps + 1):
        for remedy in remedies:
            window.log(remedy.before_step(step, optimiser, parameters, draw))
        optimiser.zero_grad(set_to_none=True)
        loss = loss_of(draw())
        if not torch.isfinite(loss):
            log.warning("step %d: training loss %s; training stops (diverged)", step, loss.item())
            return True
        loss.backward()
        for remedy in remedies:
            remedy.after_backward(parameters)
        norm = nn.utils.clip_grad_norm_(parameters, max_norm)
        optimiser.step()
        window.losses.append(loss.item())
        window.norms.append(norm.item())
        for callback in callbacks:
            callback.on_step(step, window.losses[-1], window.norms[-1])
        if step % every == 0 or step == steps:
            _at_record(step, steps, window, evaluate, start, baseline, callbacks)
            window = Window()
    return False


def _at_record(
    step: int,
    steps: int,
    window: Window,
    evaluate: Callable[[int], Evaluation],
    start: float,
    baseline: float,
    callbacks: Sequence[TrainingCallback],
) -> None:
    """At a record: evaluate(step), log the window's loss-table row and tell the callbacks it."""
    evaluation = evaluate(step)
    elapsed = time.perf_counter() - start
    row = window.row(step, evaluation.loss, elapsed)
    log.info(
        "step %d/%d  train %.4f  eval %.4f  (baseline %.4f)  %.0f s, ~%.0f s left",
        step,
        steps,
        row["train_loss"],
        evaluation.loss,
        baseline,
        elapsed,
        elapsed / step * (steps - step),
    )
    for callback in callbacks:
        callback.on_record(step, row, evaluation.log_norms)
