"""Recurrent weight initialisation schemes, then the recurrent weights scaled by `scale`.

default     torch's own: every parameter U(-1/sqrt(H), 1/sqrt(H)); with scale=1 this is stock PyTorch.
gaussian    each gate block of W_hh has N(0, 1/H) entries: spectral radius about 1 per block.
orthogonal  each gate block of W_hh is an independent random orthogonal matrix: radius exactly 1.
identity    each gate block of W_hh is I (Le et al. 2015's IRNN with activation=relu).
The last three draw input weights N(0, 1/fan_in) and set biases to 0, so the input drive of a unit
has variance about 1 (per input unit of variance 1) for every hidden size.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from harness.core.cells import CellNet, RecurrentNet, StackedNet
from harness.core.errors import NotApplicable


def _blocks(weight: Tensor, gates: int) -> tuple[Tensor, ...]:
    """Views of the gate blocks stacked in a W_hh, each (H, H)."""
    return weight.chunk(gates, dim=0)


def _zero_mean_inputs(model: RecurrentNet, generator: torch.Generator) -> None:
    for w in model.layer_params("weight_ih"):
        w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) / math.sqrt(w.shape[1]))
    for b in model.layer_params("bias_ih") + model.layer_params("bias_hh"):
        if b is not None:
            b.zero_()


def init_default(model: RecurrentNet, generator: torch.Generator) -> None:
    bound = 1 / math.sqrt(model.hidden_size)
    for p in model.parameters():  # the order torch.nn.RNN's reset_parameters uses
        p.uniform_(-bound, bound, generator=generator)


def init_gaussian(model: RecurrentNet, generator: torch.Generator) -> None:
    _zero_mean_inputs(model, generator)
    for w in model.layer_params("weight_hh"):
        w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) / math.sqrt(model.hidden_size))


def init_orthogonal(model: RecurrentNet, generator: torch.Generator) -> None:
    _zero_mean_inputs(model, generator)
    for w in model.layer_params("weight_hh"):
        for block in _blocks(w, model.cell.gates):
            torch.nn.init.orthogonal_(block, generator=generator)


def init_identity(model: RecurrentNet, generator: torch.Generator) -> None:
    _zero_mean_inputs(model, generator)
    for w in model.layer_params("weight_hh"):
        for block in _blocks(w, model.cell.gates):
            block.copy_(torch.eye(model.hidden_size, dtype=w.dtype))


INITS: dict[str, Callable[[RecurrentNet, torch.Generator], None]] = {
    "default": init_default,
    "gaussian": init_gaussian,
    "orthogonal": init_orthogonal,
    "identity": init_identity,
}


@torch.no_grad()
def initialise_user_cell(model: CellNet, init: str, scale: float) -> None:
    """A user cell initialises itself (init=default); `scale` multiplies the parameters it names in
    `recurrent_weights`. Any other setting is not applicable to it, never guessed."""
    if init != "default":
        raise NotApplicable(f"init={init} applies to the built-in cells; a user cell initialises itself (init=default)")
    if scale == 1.0:
        return
    for cell in model.layers:
        names = getattr(cell, "recurrent_weights", None)
        if not names:
            raise NotApplicable(f"scale={scale}: {type(cell).__name__} names no recurrent_weights to scale")
        parameters = dict(cell.named_parameters())
        for name in names:
            parameters[name].mul_(scale)


@torch.no_grad()
def initialise(model: StackedNet, init: str, scale: float, generator: torch.Generator,
               forget_bias: float = 0.0, chrono_tmax: int | None = None) -> None:
    """Apply scheme `init` and multiply every W_hh (all gate blocks) by `scale` (initialise_weights),
    then the gate biases (add_forget_bias, chrono), in that order: the order of the generator's draws."""
    initialise_weights(model, init, scale, generator)
    if forget_bias:
        add_forget_bias(model, forget_bias)
    if chrono_tmax:
        chrono(model, chrono_tmax, generator)


@torch.no_grad()
def initialise_weights(model: StackedNet, init: str, scale: float, generator: torch.Generator) -> None:
    """Apply scheme `init`, then multiply every W_hh (all gate blocks) by `scale`."""
    if isinstance(model, CellNet):
        return initialise_user_cell(model, init, scale)
    if not isinstance(model, RecurrentNet):  # lru, indrnn, minimal (harness.core.modern) know their schemes
        return model.initialise(init, scale, generator)
    INITS[init](model, generator)
    for w in model.layer_params("weight_hh"):
        w.mul_(scale)


def _gate_biases(model: StackedNet, what: str, cells: tuple[str, ...]) -> RecurrentNet:
    """The model, if its gate biases can be set (`what` names the setting); else NotApplicable."""
    if not isinstance(model, RecurrentNet) or model.cell_name not in cells:
        raise NotApplicable(f"{what} applies to the {' and '.join(cells)} only")
    if not model.bias:
        raise NotApplicable(f"{what} sets gate biases; this network has none (bias=False)")
    return model


@torch.no_grad()
def add_forget_bias(model: StackedNet, forget_bias: float) -> None:
    """Add forget_bias to the lstm forget gate's b_hh block, so the gate's total bias b_ih + b_hh
    moves by that much (Jozefowicz et al. 2015 use 1)."""
    for b in _gate_biases(model, "forget_bias", ("lstm",)).layer_params("bias_hh"):
        _blocks(b, 4)[1].add_(forget_bias)


@torch.no_grad()
def chrono(model: StackedNet, tmax: int, generator: torch.Generator) -> None:
    """Chrono init (Tallec & Ollivier 2018): the gate that keeps the old state gets the total bias
    b = log U[1, tmax - 1], so memories last between 1 and tmax steps: the lstm's forget gate (and its
    input gate to -b), the gru's update gate z (h' = (1 - z) n + z h)."""
    model = _gate_biases(model, "chrono init", ("lstm", "gru"))
    keep = 1  # the lstm's forget gate f, the gru's update gate z: the second block of both
    for b_ih, b_hh in zip(model.layer_params("bias_ih"), model.layer_params("bias_hh")):
        bias = torch.log(1 + torch.rand(model.hidden_size, generator=generator, dtype=b_hh.dtype) * (tmax - 2))
        for b in (b_ih, b_hh):
            _blocks(b, model.cell.gates)[keep].zero_()
        _blocks(b_hh, model.cell.gates)[keep].copy_(bias)
        if model.cell_name == "lstm":  # input gate i = -b
            for b in (b_ih, b_hh):
                _blocks(b, 4)[0].zero_()
            _blocks(b_hh, 4)[0].copy_(-bias)
