"""The selective state space recurrence of Mamba (Gu & Dao 2023), run one step at a time: per channel
d = 1..hidden_size, a state of N = cell.state_size entries,

    h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t−1}[d, n] + Δ_t[d] B_t[n] u_t[d],     y_t[d] = Σ_n C_t[n] h_t[d, n],

    Δ_t = softplus(W_Δ x_t + b_Δ),   u_t = W_u x_t,   B_t = W_B x_t,   C_t = W_C x_t,   A = −exp(A_log),

(zero-order hold for A, Euler for B, as Mamba discretises; no convolution, gate or D skip). The state
h_t is recorded as one block of hidden_size × N per layer, channel-major (h[d, 0..N−1], then d + 1); a
probe or a readout reads it whole, as the lru's is read; y_t (hidden_size) is what the layer above reads.

Initialisation, Mamba's: A the S4D-real A[d, n] = −(n + 1); b_Δ the inverse softplus of Δ drawn
log-uniform in [cell.dt_min, cell.dt_max] (defaults 0.001, 0.1), so that Δ starts there (with the input
term W_Δ x_t around it); the projections (no bias) U(±1/√fan_in), as nn.Linear's. Only init=default.
`scale` multiplies exp(Δ_t A), the factor the state keeps: dh_t/dh_{t−1} = diag(scale exp(Δ_t A)), and
its theory is the input-gated cells' (harness.core.zoo.input_gated).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.zoo.input_gated import InputGatedNet, check_activation, uniform


class SelectiveNet(InputGatedNet):
    """A stack of selective state space layers (see the module docstring); weight_ih rows: Δ, u, B, C."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        state_size: int = 16,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
    ):
        self.state_size, self.dt_min, self.dt_max = state_size, dt_min, dt_max
        super().__init__("selective", input_size, hidden_size, num_layers, hidden_size * state_size)

    def parameter_shapes(self, fan_in: int) -> dict[str, tuple[int, ...]]:
        width = 2 * self.hidden_size + 2 * self.state_size
        return {
            "weight_ih": (width, fan_in),
            "dt_bias": (self.hidden_size,),
            "A_log": (self.hidden_size, self.state_size),
        }

    def project(self, layer: int, x: Tensor) -> Tensor:
        dt_bias = self.param("dt_bias", layer)
        bias = torch.cat([dt_bias, dt_bias.new_zeros(self.hidden_size + 2 * self.state_size)])
        return F.linear(x, self.param("weight_ih", layer), bias)

    def split_projection(self, projected: Tensor) -> tuple[Tensor, ...]:
        """(Δ_t, u_t, B_t, C_t) of a layer's pre-activations."""
        n, h = self.state_size, self.hidden_size
        pre_dt, u, b, c = projected.split([h, h, n, n], dim=-1)
        return F.softplus(pre_dt), u, b, c

    def decay(self, layer: int, dt: Tensor) -> Tensor:
        """Δ_t A, (..., hidden_size, N)."""
        return dt.unsqueeze(-1) * -torch.exp(self.param("A_log", layer))

    def gates(self, layer: int, projected: Tensor) -> tuple[Tensor, Tensor]:
        dt, u, b, _ = self.split_projection(projected)
        push = (dt * u).unsqueeze(-1) * b.unsqueeze(-2)
        return torch.exp(self.decay(layer, dt)).flatten(-2), push.flatten(-2)

    def log_factor(self, layer: int, projected: Tensor) -> Tensor:
        return self.decay(layer, self.split_projection(projected)[0]).flatten(-2)

    def output(self, layer: int, projected: Tensor, h: Tensor) -> Tensor:
        c = self.split_projection(projected)[3]
        return (h.unflatten(-1, (self.hidden_size, self.state_size)) * c.unsqueeze(-2)).sum(-1)

    def initialise_layer(self, layer: int, fan_in: int, generator: torch.Generator) -> None:
        weight, dt_bias, a_log = (self.param(name, layer) for name in ("weight_ih", "dt_bias", "A_log"))
        weight.copy_(uniform(tuple(weight.shape), 1 / math.sqrt(fan_in), generator, weight))
        low, high = math.log(self.dt_min), math.log(self.dt_max)
        dt = torch.exp(torch.rand(self.hidden_size, generator=generator, dtype=torch.float64) * (high - low) + low)
        dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(b) = dt
        a_log.copy_(torch.log(torch.arange(1, self.state_size + 1, dtype=torch.float64)).expand_as(a_log))


def build(
    name: str, activation: str, input_size: int, hidden_size: int, num_layers: int, **options: float
) -> SelectiveNet:
    check_activation("selective", activation)
    return SelectiveNet(input_size, hidden_size, num_layers, **options)
