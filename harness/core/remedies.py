"""Remedies against vanishing and exploding gradients, each a small object with the hooks that the
build (harness.lab.build) and the training loop (harness.core.train.train) call.

    remedy          from the spec                         hooks it uses
    Init            init.name, scale (always)             on_build: the scheme, then W_hh times scale
    ForgetBias      cell.forget_bias (lstm)               on_build
    Chrono          cell.chrono_tmax (lstm, gru)          on_build (draws from the run's generator)
    Omega           train.omega (one-layer rnn)           on_build (applies?), needs_states, loss_term
    Flossing        train.flossing_k, flossing_every      on_build (applies?), before_step
    ClipValue       train.clip_value                      after_backward
    ClipNorm        train.clip_norm                       max_grad_norm
    WeightDecay     train.weight_decay                    optimiser_kwargs

`remedies_for(run)` lists a run's remedies in the order their hooks run: the build-time ones first,
weights, then forget bias, then chrono (the order of the generator's draws), so every run draws the
same numbers as before remedies were objects. A remedy that means nothing for the network raises
NotApplicable from on_build, before anything is computed.

A new remedy is one class here (override the hooks it needs; the others do nothing) and one line in
remedies_for; its config keys live in harness.core.spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from harness.core.cells import SLOPES, RecurrentNet, StackedNet, recurrent
from harness.core.errors import NotApplicable
from harness.core.init import add_forget_bias, chrono, initialise_weights
from harness.core.networks import cells_taking
from harness.core.recorders import flush_denormals
from harness.core.theory import flossing_loss

if TYPE_CHECKING:
    from harness.core.spec import RunSpec, TrainSpec
    from harness.core.tasks import TaskBatch


class Remedy:
    """The hooks, each a no-op here. The build calls on_build in list order; train() reads
    optimiser_kwargs and max_grad_norm once, and every step calls before_step, then (through the
    caller's loss) loss_term, then after_backward; see harness.core.train.train for the order."""

    needs_states = False  # loss_term needs h_t of the explicit cells (no fused whole-sequence training)
    max_grad_norm = math.inf  # the gradients' global norm is clipped to the smallest of these

    def on_build(self, model: StackedNet, generator: torch.Generator) -> None:
        """The network is built: initialise or change it (drawing from generator, if at all), or raise
        NotApplicable if the remedy means nothing for it."""

    def optimiser_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the optimiser."""
        return {}

    def loss_term(self, inputs: Tensor, states: list[Tensor], loss: Tensor) -> Tensor | None:
        """A term added to the training loss, or None. states: the explicit cells' S_0..S_T on the
        batch `inputs` (only asked for when needs_states); loss: the task's loss on them."""
        return None

    def before_step(
        self, step: int, optimiser: torch.optim.Optimizer, parameters: list[nn.Parameter], draw: Callable[[], TaskBatch]
    ) -> dict[str, float]:
        """Before training step `step` (1, 2, ...): steps of its own, say; returns the values to log
        (averaged over the steps since the last record into the loss table's columns)."""
        return {}

    def after_backward(self, parameters: list[nn.Parameter]) -> None:
        """The training loss's gradients are in: change them entry by entry, before their global
        norm is measured (the loss table's grad_norm) and clipped to max_grad_norm."""


@dataclass
class Init(Remedy):
    """init=default | gaussian | orthogonal | identity, then every W_hh times scale (harness.core.init)."""

    name: str
    scale: float

    def on_build(self, model: StackedNet, generator: torch.Generator) -> None:
        initialise_weights(model, self.name, self.scale, generator)


@dataclass
class ForgetBias(Remedy):
    """cell.forget_bias: added to the lstm forget gate's bias (Gers et al. 2000; Jozefowicz et al. 2015)."""

    value: float

    def on_build(self, model: StackedNet, generator: torch.Generator) -> None:
        add_forget_bias(model, self.value)


@dataclass
class Chrono(Remedy):
    """cell.chrono_tmax: chrono init of the keep gate's bias (Tallec & Ollivier 2018; lstm, gru)."""

    tmax: int

    def on_build(self, model: StackedNet, generator: torch.Generator) -> None:
        chrono(model, self.tmax, generator)


OMEGA_BOUND = 1e-20  # their code's `bound`: steps whose ||dL/dh_t||^2 is below it are left out


def omega(loss: Tensor, hidden: list[Tensor], slopes: list[Tensor], weight_hh: Tensor) -> Tensor:
    """Omega = sum_t mean_b (||(d_t * f'_t) W_hh||^2 / ||d_t||^2 - 1)^2 / sum_t mean_b [||d_t||^2 >= bound],
    the regulariser of Pascanu, Mikolov & Bengio (2013) as their published code computes it, for an rnn
    h_t = f(x_t W_ih^T + h_{t-1} W_hh^T + b): d_t = dL/dh_t (the whole gradient, t = 1..T), f'_t the
    activation's slope at step t. It asks every step's backward Jacobian to preserve the norm of the
    gradient it carries. As in their code, d_t and f'_t are held constant: Omega's gradient flows into
    W_hh through the product alone. hidden: h_1..h_T on loss's graph; slopes: f'_t (detached)."""
    grads = torch.autograd.grad(loss, hidden, retain_graph=True)
    return omega_of([d.detach() for d in grads], slopes, weight_hh)


def omega_of(grads: list[Tensor], slopes: list[Tensor], weight_hh: Tensor) -> Tensor:
    """Omega from the gradients d_t = dL/dh_t and slopes f'_t (constants) and W_hh (see omega)."""
    terms, counted = [], []
    for d, slope in zip(grads, slopes):
        carried = d.pow(2).sum(dim=1)
        valid = carried >= OMEGA_BOUND
        ratio = ((d * slope) @ weight_hh).pow(2).sum(dim=1) / torch.where(valid, carried, torch.ones_like(carried))
        terms.append(torch.where(valid, (ratio - 1) ** 2, torch.zeros_like(ratio)).mean())
        counted.append(valid.to(ratio.dtype).mean())
    return torch.stack(terms).sum() / torch.stack(counted).sum().clamp_min(1e-12)


@dataclass
class Omega(Remedy):
    """train.omega: weight times Pascanu et al. (2013)'s Omega added to the training loss; the run
    trains through the explicit cells, since Omega needs dL/dh_t. A one-layer rnn only."""

    weight: float
    model: RecurrentNet | None = field(default=None, repr=False)
    needs_states = True

    def on_build(self, model: StackedNet, generator: torch.Generator) -> None:
        if not (model.analytic_jacobian and model.cell_name in cells_taking("train.omega") and model.num_layers == 1):
            raise NotApplicable("train.omega: Pascanu et al.'s Omega regulariser is defined for a one-layer rnn")
        self.model = model

    def loss_term(self, inputs: Tensor, states: list[Tensor], loss: Tensor) -> Tensor:
        model = self.model
        w_hh, b_hh = model.weight_hh_l0, model.bias_hh_l0
        with torch.no_grad():  # f'_t at each step's pre-activation, held constant as Omega asks
            drives = model.input_drive(inputs)
            slopes = [
                SLOPES[model.activation](pre, model.act(pre))
                for pre in (drive + recurrent(h, w_hh, b_hh) for drive, h in zip(drives, states[:-1]))
            ]
        return self.weight * omega(loss, states[1:], slopes, w_hh)


@dataclass
class Flossing(Remedy):
    """train.flossing_k: gradient flossing (Engelken 2023), an optimiser step on the sum of the squared
    k largest Lyapunov exponents of a fresh batch (harness.core.theory.flossing_loss), its gradients
    clipped to train.clip_norm, before step 1 and every `every` steps; logs `flossing_loss`. Its
    tangents come from a generator of its own, seeded with the run's seed; its batches from the run's."""

    k: int
    every: int
    clip_norm: float | None
    seed: int
    model: RecurrentNet | None = field(default=None, repr=False)
    generator: torch.Generator | None = field(default=None, repr=False)

    def on_build(self, model: StackedNet, generator: torch.Generator) -> None:
        if not model.analytic_jacobian:
            raise NotApplicable("train.flossing_k: gradient flossing needs the built-in cells' JVPs (rnn, lstm, gru)")
        self.model, self.generator = model, torch.Generator().manual_seed(self.seed)

    def before_step(
        self, step: int, optimiser: torch.optim.Optimizer, parameters: list[nn.Parameter], draw: Callable[[], TaskBatch]
    ) -> dict[str, float]:
        if (step - 1) % self.every:
            return {}
        optimiser.zero_grad(set_to_none=True)
        with flush_denormals():
            objective = flossing_loss(self.model, draw().inputs, self.k, self.generator)
        if torch.isfinite(objective):
            objective.backward()
            nn.utils.clip_grad_norm_(parameters, self.clip_norm or math.inf)
            optimiser.step()
        return {"flossing_loss": objective.item()}


@dataclass
class ClipValue(Remedy):
    """train.clip_value: every gradient entry clipped to [-value, value], before the norm is measured."""

    value: float

    def after_backward(self, parameters: list[nn.Parameter]) -> None:
        nn.utils.clip_grad_value_(parameters, self.value)


@dataclass
class ClipNorm(Remedy):
    """train.clip_norm: the gradients' global norm clipped to it (Pascanu et al. 2013)."""

    max_grad_norm: float


@dataclass
class WeightDecay(Remedy):
    """train.weight_decay: the optimiser's L2 penalty."""

    value: float

    def optimiser_kwargs(self) -> dict[str, Any]:
        return {"weight_decay": self.value}


def training_remedies(settings: TrainSpec) -> list[Remedy]:
    """The remedies a training loop applies on its own, without a model: clipping and weight decay."""
    remedies: list[Remedy] = []
    if settings.clip_value is not None:
        remedies.append(ClipValue(settings.clip_value))
    if settings.clip_norm is not None:
        remedies.append(ClipNorm(settings.clip_norm))
    if settings.weight_decay:
        remedies.append(WeightDecay(settings.weight_decay))
    return remedies


def remedies_for(run: RunSpec) -> list[Remedy]:
    """A run's remedies in hook order: the build-time ones (weights, forget bias, chrono: the order
    of the generator's draws), then Omega (at any steps: it is checked even for a recording at init),
    flossing (when the run trains), clipping and weight decay."""
    remedies: list[Remedy] = [Init(run.init.name, run.scale)]
    if run.cell.forget_bias:
        remedies.append(ForgetBias(run.cell.forget_bias))
    if run.cell.chrono_tmax:
        remedies.append(Chrono(run.cell.chrono_tmax))
    if run.train.omega:
        remedies.append(Omega(run.train.omega))
    if run.train.flossing_k and run.train.steps:
        settings = run.train
        remedies.append(Flossing(settings.flossing_k, settings.flossing_every, settings.clip_norm, run.seed))
    return remedies + training_remedies(run.train)


def needs_states(remedies: Sequence[Remedy]) -> bool:
    """Whether any remedy's loss term needs the explicit cells' states."""
    return any(remedy.needs_states for remedy in remedies)
