"""Training: optimiser steps on fresh batches, with evaluation and a recorded gradient profile on a
fixed held-out batch at step 0 and every `train.record_every` steps.

    train.steps  train.lr  train.optimizer (sgd | adam | rmsprop)  train.clip_norm  train.clip_value
    train.weight_decay  train.omega  train.flossing_k  train.flossing_every  train.record_every

train.flossing_k > 0 interleaves gradient flossing (Engelken 2023): an optimiser step on the sum of
the squared k largest Lyapunov exponents (harness.core.theory.flossing_loss) before the first step
and every train.flossing_every steps; `flossing_loss` in the loss table.
train.omega > 0 adds Pascanu, Mikolov & Bengio (2013)'s regulariser Omega, weighted by it, to the
training loss (`omega`; the runs train through the explicit cells then, since it needs dL/dh_t).

`grad_norm` in the loss table is the parameters' gradient norm before clipping, averaged over the
steps since the last record. A loss that turns non-finite stops the training; the run is flagged
`diverged`. A run counts as `solved` when its final eval loss is at most SOLVED_FRACTION of the task's
baseline.
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn

if TYPE_CHECKING:  # spec lists this module's optimisers
    from harness.core.spec import TrainSpec

log = logging.getLogger(__name__)

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
}
SOLVED_FRACTION = 0.1


OMEGA_BOUND = 1e-20  # their code's `bound`: steps whose ||dL/dh_t||^2 is below it are left out


def omega(loss: torch.Tensor, hidden: list[torch.Tensor], slopes: list[torch.Tensor],
          weight_hh: torch.Tensor) -> torch.Tensor:
    """Omega = sum_t mean_b (||(d_t * f'_t) W_hh||^2 / ||d_t||^2 - 1)^2 / sum_t mean_b [||d_t||^2 >= bound],
    the regulariser of Pascanu, Mikolov & Bengio (2013) as their published code computes it, for an rnn
    h_t = f(x_t W_ih^T + h_{t-1} W_hh^T + b): d_t = dL/dh_t (the whole gradient, t = 1..T), f'_t the
    activation's slope at step t. It asks every step's backward Jacobian to preserve the norm of the
    gradient it carries. As in their code, d_t and f'_t are held constant: Omega's gradient flows into
    W_hh through the product alone. hidden: h_1..h_T on loss's graph; slopes: f'_t (detached)."""
    grads = torch.autograd.grad(loss, hidden, retain_graph=True)
    return omega_of([d.detach() for d in grads], slopes, weight_hh)


def omega_of(grads: list[torch.Tensor], slopes: list[torch.Tensor], weight_hh: torch.Tensor) -> torch.Tensor:
    """Omega from the gradients d_t = dL/dh_t and slopes f'_t (constants) and W_hh (see omega)."""
    terms, counted = [], []
    for d, slope in zip(grads, slopes):
        carried = d.pow(2).sum(dim=1)
        valid = carried >= OMEGA_BOUND
        ratio = ((d * slope) @ weight_hh).pow(2).sum(dim=1) / torch.where(valid, carried, torch.ones_like(carried))
        terms.append(torch.where(valid, (ratio - 1) ** 2, torch.zeros_like(ratio)).mean())
        counted.append(valid.to(ratio.dtype).mean())
    return torch.stack(terms).sum() / torch.stack(counted).sum().clamp_min(1e-12)


def train(parameters: list[nn.Parameter], settings: TrainSpec, loss_of_fresh_batch: Callable[[], torch.Tensor],
          evaluate: Callable[[int], float], baseline: float,
          floss: Callable[[], torch.Tensor] | None = None) -> Iterator[dict]:
    """Run settings.steps optimiser steps; yield a loss-table row at every record (after `evaluate`,
    which also records the profile at that step). The caller has recorded step 0 itself.
    floss: gradient flossing's objective on a fresh batch (harness.core.theory.flossing_loss); an
    optimiser step on it comes before training step 1 and every settings.flossing_every steps."""
    optimiser = OPTIMIZERS[settings.optimizer](parameters, lr=settings.lr,
                                                  weight_decay=settings.weight_decay)
    steps, every = settings.steps, settings.record_every
    start, losses, norms, flossed = time.perf_counter(), [], [], []
    for step in range(1, steps + 1):
        if floss is not None and (step - 1) % settings.flossing_every == 0:
            optimiser.zero_grad(set_to_none=True)
            objective = floss()
            if torch.isfinite(objective):
                objective.backward()
                nn.utils.clip_grad_norm_(parameters, settings.clip_norm or math.inf)
                optimiser.step()
            flossed.append(objective.item())
        optimiser.zero_grad(set_to_none=True)
        loss = loss_of_fresh_batch()
        if not torch.isfinite(loss):
            log.warning("step %d: training loss %s; training stops (diverged)", step, loss.item())
            yield {"step": step, "train_loss": loss.item(), "diverged": True}
            return
        loss.backward()
        if settings.clip_value is not None:
            nn.utils.clip_grad_value_(parameters, settings.clip_value)
        norm = nn.utils.clip_grad_norm_(parameters, settings.clip_norm or math.inf)
        optimiser.step()
        losses.append(loss.item())
        norms.append(norm.item())
        if step % every == 0 or step == steps:
            eval_loss = evaluate(step)
            elapsed = time.perf_counter() - start
            log.info("step %d/%d  train %.4f  eval %.4f  (baseline %.4f)  %.0f s, ~%.0f s left", step, steps,
                     sum(losses) / len(losses), eval_loss, baseline, elapsed, elapsed / step * (steps - step))
            row = {"step": step, "train_loss": sum(losses) / len(losses), "eval_loss": eval_loss,
                   "grad_norm": sum(norms) / len(norms), "elapsed_s": elapsed, "diverged": False}
            yield {**row, "flossing_loss": sum(flossed) / len(flossed)} if flossed else row
            losses, norms, flossed = [], [], []
