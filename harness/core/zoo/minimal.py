"""The minimalRNN (Chen, Pennington & Schoenholz 2018):

    z_t = act(W_z x_t + b_z),   u_t = sigmoid(W h_{t-1} + V z_t + b),   h_t = u_t ⊙ h_{t-1} + (1 - u_t) ⊙ z_t.

Inits as for the rnn (default, gaussian, orthogonal, identity on W); `scale` multiplies W. Its gate u
is the units view's one gate block (its V z_t part carries the same gradient as W h_{t-1}).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.init import identity_blocks_, init_default, normal, orthogonal_blocks_
from harness.core.meanfield import (
    Biases,
    Units,
    gated_mean_field,
    gated_mean_field_curve,
    minimal_units,
    unit_classes,
)
from harness.core.zoo.hidden import HiddenNet


class MinimalNet(HiddenNet):
    """A stack of minimalRNN layers (see the module docstring)."""

    gate_names = ("u",)

    def __init__(self, activation: str, input_size: int, hidden_size: int, num_layers: int):
        # W_z, b_z are the input projection; then W, V and b of the gate
        super().__init__(
            "minimal",
            activation,
            input_size,
            hidden_size,
            num_layers,
            {
                "weight_hh": (hidden_size, hidden_size),
                "weight_zh": (hidden_size, hidden_size),
                "bias_hh": (hidden_size,),
            },
        )

    def layer_step(self, layer: int, drive: Tensor, h: Tensor) -> Tensor:
        hw = torch.addmm(getattr(self, f"bias_hh_l{layer}"), h, getattr(self, f"weight_hh_l{layer}").t())
        return self.gate_tail(layer, drive, hw, h)

    def gate_tail(self, layer: int, drive: Tensor, hw: Tensor, h: Tensor) -> Tensor:
        """The new h from the gate's recurrent part hw = h W^T + b (harness.core.detail reads its gradient)."""
        z = self.act(drive)
        gate = torch.sigmoid(hw + F.linear(z, getattr(self, f"weight_zh_l{layer}")))
        return gate * h + (1 - gate) * z

    def layer_tail(self, layer: int, drive: Tensor, hw: Tensor, blocks: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (self.gate_tail(layer, drive, hw, blocks[0]),)

    @torch.no_grad()
    def initialise_weights(self, init: str, scale: float, generator: torch.Generator) -> None:
        """torch's nn.RNN default on every parameter, the starting point of every scheme; then, layer by
        layer, for a scheme other than default: inputs N(0, 1/fan_in) and biases 0, W by the scheme
        (drawn in float64 and multiplied by the std, as the lru draws)."""
        init_default(self, generator)
        for layer in range(self.num_layers):
            w = getattr(self, f"weight_hh_l{layer}")
            if init != "default":
                for name in ("weight_ih", "weight_zh"):
                    p = getattr(self, f"{name}_l{layer}")
                    p.copy_(normal(tuple(p.shape), 1 / math.sqrt(p.shape[1]), generator, p))
                for name in ("bias_ih", "bias_hh"):
                    getattr(self, f"{name}_l{layer}").zero_()
            if init == "gaussian":
                w.copy_(normal(tuple(w.shape), 1 / math.sqrt(self.hidden_size), generator, w))
            elif init == "orthogonal":
                orthogonal_blocks_(w, 1, generator)
            elif init == "identity":
                identity_blocks_(w, 1)
            w.mul_(scale)

    def linear_rate(self, inputs: Tensor | None = None, generator: torch.Generator | None = None) -> str:
        return "linear: the minimal cell's gate is not linear"

    def mean_field(self, init: str, scale: float, drive_var: float) -> tuple[float, float] | str:
        """One layer with gaussian W, z's drive x W_z^T of variance drive_var (its bias 0), at the gate
        biases b it holds (harness.core.meanfield's gated cells; Chen, Pennington & Schoenholz 2018)."""
        reason = self._mean_field_reason(init, drive_var)
        if not reason and self.bias_ih_l0.detach().abs().max().item() > 0:
            reason = "mean field: the minimal's is derived with z's bias 0 (init=gaussian)"
        if reason:
            return reason
        units, input_var, biases = self.gated_field(drive_var)
        return gated_mean_field(units, self.activation, scale, input_var, biases)

    def gated_field(self, drive_var: float) -> tuple[Units, float, Biases]:
        """What the gated mean field takes of this network: its wide-limit step, z's drive variance and its
        units' gate-bias classes."""
        return minimal_units, drive_var, unit_classes(self.bias_hh_l0.detach().double().cpu().numpy()[:, None], keep=0)

    def mean_field_curve(
        self,
        init: str,
        scales: np.ndarray,
        drive_var: float,
        forget_bias: float = 0.0,
        chrono_tmax: int | None = None,
    ) -> np.ndarray | str:
        """The mean-field rate at many scales (the phase figure's dense curve), gate bias 0 (init=gaussian;
        the minimal takes neither forget_bias nor chrono); reads no parameters. Else why not."""
        reason = self._mean_field_reason(init, drive_var)
        return reason or gated_mean_field_curve(minimal_units, self.activation, scales, drive_var, ((1.0, (0.0,)),))

    def _mean_field_reason(self, init: str, drive_var: float) -> str:
        """Why the mean field does not apply ("" where it does). Any activation: it reaches the gradient
        only through the input z = act(x W_z^T)."""
        if self.num_layers != 1:
            return "mean field: the minimal's is derived for one layer"
        if init != "gaussian":
            return f"mean field: the minimal's is derived for init=gaussian (Gaussian W), not init={init}"
        if not math.isfinite(drive_var):
            return "mean field: the minimal's needs the input drive variance"
        return ""


def build(name: str, activation: str, input_size: int, hidden_size: int, num_layers: int) -> MinimalNet:
    return MinimalNet(activation, input_size, hidden_size, num_layers)
