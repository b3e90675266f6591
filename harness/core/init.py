"""Recurrent weight initialisation schemes, then the recurrent weights scaled by `scale`.

default     torch's own: every parameter U(-1/sqrt(H), 1/sqrt(H)); with scale=1 this is stock PyTorch.
gaussian    each gate block of W_hh has N(0, 1/H) entries: spectral radius about 1 per block.
orthogonal  each gate block of W_hh is an independent random orthogonal matrix: radius exactly 1.
identity    each gate block of W_hh is I (Le et al. 2015's IRNN with activation=relu).
The last three draw input weights N(0, 1/fan_in) and set biases to 0, so the input drive of a unit
has variance about 1 (per input unit of variance 1) for every hidden size.

Each network initialises itself (its initialise_weights, harness.core.protocol) from the schemes and
draws here: INITS for networks with torch's parameter layout (weight_ih_l<k>, weight_hh_l<k> with gate
blocks, biases), and the draws a cell of its own layout composes its schemes from (uniform_, normal,
orthogonal_blocks_, identity_blocks_). The functions below are what a run calls, in this order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from harness.core.errors import NotApplicable

if TYPE_CHECKING:  # the networks import this module
    from harness.core.cells import CellNet
    from harness.core.protocol import StackedNet
    from harness.core.zoo.classic import RecurrentNet


def _blocks(weight: Tensor, gates: int) -> tuple[Tensor, ...]:
    """Views of the gate blocks stacked in a W_hh, each (H, H)."""
    return weight.chunk(gates, dim=0)


def uniform_(tensor: Tensor, bound: float, generator: torch.Generator) -> None:
    """U(-bound, bound) in place."""
    tensor.uniform_(-bound, bound, generator=generator)


def normal(shape: tuple[int, ...], std: float, generator: torch.Generator, like: Tensor) -> Tensor:
    """N(0, std^2) entries, drawn in float64 and cast as `like`, then times std."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(like) * std


def orthogonal_blocks_(weight: Tensor, gates: int, generator: torch.Generator) -> None:
    """Each gate block of a W_hh an independent random orthogonal matrix, in place."""
    for block in _blocks(weight, gates):
        torch.nn.init.orthogonal_(block, generator=generator)


def identity_blocks_(weight: Tensor, gates: int) -> None:
    """Each gate block of a W_hh the identity, in place."""
    for block in _blocks(weight, gates):
        block.copy_(torch.eye(block.shape[1], dtype=weight.dtype))


def _zero_mean_inputs(model: RecurrentNet, generator: torch.Generator) -> None:
    for w in model.layer_params("weight_ih"):
        w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) / math.sqrt(w.shape[1]))
    for b in model.layer_params("bias_ih") + model.layer_params("bias_hh"):
        if b is not None:
            b.zero_()


def init_default(model: StackedNet, generator: torch.Generator) -> None:
    """torch's nn.RNN default on every parameter of any network, in registration order."""
    bound = 1 / math.sqrt(model.hidden_size)
    for p in model.parameters():  # the order torch.nn.RNN's reset_parameters uses
        uniform_(p, bound, generator)


def init_gaussian(model: RecurrentNet, generator: torch.Generator) -> None:
    _zero_mean_inputs(model, generator)
    for w in model.layer_params("weight_hh"):
        w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) / math.sqrt(model.hidden_size))


def init_orthogonal(model: RecurrentNet, generator: torch.Generator) -> None:
    _zero_mean_inputs(model, generator)
    for w in model.layer_params("weight_hh"):
        orthogonal_blocks_(w, model.cell.gates, generator)


def init_identity(model: RecurrentNet, generator: torch.Generator) -> None:
    _zero_mean_inputs(model, generator)
    for w in model.layer_params("weight_hh"):
        identity_blocks_(w, model.cell.gates)


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
def initialise(
    model: StackedNet,
    init: str,
    scale: float,
    generator: torch.Generator,
    forget_bias: float = 0.0,
    chrono_tmax: int | None = None,
) -> None:
    """Apply scheme `init` and multiply what `scale` scales (initialise_weights), then the gate
    biases (add_forget_bias, chrono), in that order: the order of the generator's draws."""
    initialise_weights(model, init, scale, generator)
    if forget_bias:
        add_forget_bias(model, forget_bias)
    if chrono_tmax:
        chrono(model, chrono_tmax, generator)


@torch.no_grad()
def initialise_weights(model: StackedNet, init: str, scale: float, generator: torch.Generator) -> None:
    """Apply scheme `init`, then multiply what `scale` scales (every W_hh, all gate blocks, for torch's
    cells): the network's own initialise_weights."""
    model.initialise_weights(init, scale, generator)


@torch.no_grad()
def add_forget_bias(model: StackedNet, forget_bias: float) -> None:
    """Add forget_bias to the forget gate's bias (the lstm's b_hh block), so the gate's total bias
    b_ih + b_hh moves by that much (Jozefowicz et al. 2015 use 1); NotApplicable where there is none."""
    model.add_forget_bias(forget_bias)


@torch.no_grad()
def chrono(model: StackedNet, tmax: int, generator: torch.Generator) -> None:
    """Chrono init (Tallec & Ollivier 2018): the gate that keeps the old state gets the total bias
    b = log U[1, tmax - 1], so memories last between 1 and tmax steps (the lstm's forget gate, and its
    input gate -b; the gru's update gate z); NotApplicable where there is none."""
    model.chrono(tmax, generator)
