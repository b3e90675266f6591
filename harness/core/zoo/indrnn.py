"""IndRNN (Li et al. 2018): h_t = act(W x_t + u ⊙ h_{t-1} + b), every unit its own scalar recurrence.

init default: u ~ U[0, 1] (the paper's), input weights and biases as torch's nn.RNN; identity: u = 1
(IndRNN's long-memory start). `scale` multiplies u. With activation=identity unit j's gain over k
steps is |u_j|^k: the linear rate is ln max|u_j|, and on the probe the profile has a closed form.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from harness.core.errors import NotApplicable
from harness.core.init import uniform_
from harness.core.protocol import diagonal_law
from harness.core.zoo.hidden import HiddenNet


class IndRNNNet(HiddenNet):
    """A stack of IndRNN layers (see the module docstring)."""

    def __init__(self, activation: str, input_size: int, hidden_size: int, num_layers: int):
        super().__init__("indrnn", activation, input_size, hidden_size, num_layers, {"weight_hh": (hidden_size,)})  # u

    def layer_step(self, layer: int, drive: Tensor, h: Tensor) -> Tensor:
        return self.act(drive + getattr(self, f"weight_hh_l{layer}") * h)

    @torch.no_grad()
    def initialise_weights(self, init: str, scale: float, generator: torch.Generator) -> None:
        if init not in ("default", "identity"):
            raise NotApplicable(
                f"init={init}: an indrnn's recurrence is a vector u; expected init=default "
                "(u ~ U[0, 1]) or identity (u = 1)"
            )
        bound = 1 / math.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            uniform_(getattr(self, f"weight_ih_l{layer}"), bound, generator)
            uniform_(getattr(self, f"bias_ih_l{layer}"), bound, generator)
            u = getattr(self, f"weight_hh_l{layer}")
            if init == "default":
                u.uniform_(0, 1, generator=generator)
            else:
                u.fill_(1.0)
            u.mul_(scale)

    def linear_rate(self, inputs: Tensor | None = None, generator: torch.Generator | None = None) -> float | str:
        """ln max|u_j| over every layer, with activation=identity."""
        if self.activation != "identity":
            return "linear: needs a linear step (the indrnn with activation=identity)"
        largest = max(getattr(self, f"weight_hh_l{layer}").abs().max().item() for layer in range(self.num_layers))
        return math.log(largest) if largest > 0 else -math.inf

    def closed_form_profile(self, readout: Tensor, seq_len: int, inputs: Tensor | None = None) -> dict[str, np.ndarray]:
        """With activation=identity, this run's exact law: ||dL/dh_{T-k}||^2 = sum_j c_j^2 |u_j|^(2k)."""
        if self.activation != "identity":
            return {}
        gains = self.weight_hh_l0.detach().double().cpu().abs()
        return {"theory_log10_norm": diagonal_law(readout.double().cpu().pow(2), gains, seq_len)[1]}


def build(name: str, activation: str, input_size: int, hidden_size: int, num_layers: int) -> IndRNNNet:
    return IndRNNNet(activation, input_size, hidden_size, num_layers)
