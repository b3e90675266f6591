"""Training: optimiser steps on fresh batches, with evaluation and a recorded gradient profile on a
fixed held-out batch at step 0 and every `train.record_every` steps.

    train.steps  train.lr  train.optimizer (sgd | adam | rmsprop)  train.clip_norm  train.clip_value
    train.weight_decay  train.record_every

`grad_norm` in the loss table is the parameters' gradient norm before clipping, averaged over the
steps since the last record. A loss that turns non-finite stops the training; the run is flagged
`diverged`. A run counts as `solved` when its final eval loss is at most SOLVED_FRACTION of the task's
baseline.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
}
SOLVED_FRACTION = 0.1


def train(parameters: list[nn.Parameter], settings: dict, loss_of_fresh_batch: Callable[[], torch.Tensor],
          evaluate: Callable[[int], float], baseline: float) -> Iterator[dict]:
    """Run settings["steps"] optimiser steps; yield a loss-table row at every record (after `evaluate`,
    which also records the profile at that step). The caller has recorded step 0 itself."""
    optimiser = OPTIMIZERS[settings["optimizer"]](parameters, lr=settings["lr"],
                                                  weight_decay=settings["weight_decay"])
    steps, every = settings["steps"], settings["record_every"]
    start, losses, norms = time.perf_counter(), [], []
    for step in range(1, steps + 1):
        optimiser.zero_grad(set_to_none=True)
        loss = loss_of_fresh_batch()
        if not torch.isfinite(loss):
            log.warning("step %d: training loss %s; training stops (diverged)", step, loss.item())
            yield {"step": step, "train_loss": loss.item(), "diverged": True}
            return
        loss.backward()
        if settings["clip_value"] is not None:
            nn.utils.clip_grad_value_(parameters, settings["clip_value"])
        norm = nn.utils.clip_grad_norm_(parameters, settings["clip_norm"] or math.inf)
        optimiser.step()
        losses.append(loss.item())
        norms.append(norm.item())
        if step % every == 0 or step == steps:
            eval_loss = evaluate(step)
            elapsed = time.perf_counter() - start
            log.info("step %d/%d  train %.4f  eval %.4f  (baseline %.4f)  %.0f s, ~%.0f s left", step, steps,
                     sum(losses) / len(losses), eval_loss, baseline, elapsed, elapsed / step * (steps - step))
            yield {"step": step, "train_loss": sum(losses) / len(losses), "eval_loss": eval_loss,
                   "grad_norm": sum(norms) / len(norms), "elapsed_s": elapsed, "diverged": False}
            losses, norms = [], []
