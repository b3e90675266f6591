"""The linear recurrent unit (Orvieto et al. 2023; NicolasZucchet/minimal-LRU): a complex diagonal
linear recurrence

    h_t = lambda ⊙ h_{t-1} + gamma ⊙ (B x_t),     y_t = Re(C h_t) + D ⊙ x_t,

lambda_j = scale * exp(-exp(nu_j) + i exp(theta_j)), gamma_j = sqrt(1 - |lambda_j / scale|^2) (fixed at
init, as the paper normalises), ring initialisation: |lambda_j|^2 ~ U[r_min^2, r_max^2], phase ~
U[0, max_phase]; B, C complex Glorot-like, D ~ N(0, 1). The state is complex: it is kept as its real
view (Re h_1, Im h_1, Re h_2, ...: one block of width 2 * hidden_size), so a recorded norm is the norm
of the complex gradient. Each step is one complex multiply-add, O(hidden) (never a dense matrix). y_t,
of the input's width, feeds the next layer (every layer has input_size channels); the loss and a
trained readout see the top layer's state. `scale` multiplies |lambda|.

Linear and diagonal: its linear rate and its Lyapunov exponent are both ln(scale max|lambda_j|), from
the eigenvalues, and on the probe its whole profile has a closed form (closed_form_profile).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.errors import NotApplicable
from harness.core.init import normal
from harness.core.protocol import StackedNet, diagonal_law


class LRUNet(StackedNet):
    """A stack of linear recurrent units (see the module docstring)."""

    linear_lyapunov = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
    ):
        super().__init__()
        self.cell_name, self.activation = "lru", None
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.state_names = ("h",)
        self.block_sizes = (2 * hidden_size,) * num_layers
        self.register_buffer("scale", torch.ones(()))
        for layer in range(num_layers):
            for name in ("nu_log", "theta_log", "gamma_log"):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(hidden_size)))
            for name in ("B_re", "B_im"):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(hidden_size, input_size)))
            for name in ("C_re", "C_im"):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(input_size, hidden_size)))
            self.register_parameter(f"D_l{layer}", nn.Parameter(torch.empty(input_size)))

    def param(self, name: str, layer: int) -> Tensor:
        return getattr(self, f"{name}_l{layer}")

    def eigenvalues(self, layer: int) -> Tensor:
        """lambda of a layer, scale included (complex, hidden_size)."""
        return self.scale * torch.exp(
            torch.complex(-torch.exp(self.param("nu_log", layer)), torch.exp(self.param("theta_log", layer)))
        )

    def drive(self, x: Tensor, layer: int) -> Tensor:
        """gamma ⊙ (B x) in the state's real layout: (..., 2 * hidden_size)."""
        gamma = torch.exp(self.param("gamma_log", layer))
        real, imag = F.linear(x, self.param("B_re", layer)) * gamma, F.linear(x, self.param("B_im", layer)) * gamma
        return torch.stack([real, imag], dim=-1).flatten(-2)

    def input_drive(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """Per step [gamma ⊙ B x_t (2 * hidden_size), x_t]: x_t itself for y_t's D ⊙ x_t term."""
        return torch.cat([self.drive(inputs, 0), inputs], dim=-1).unbind(0)

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        blocks, new = self.split(state), []
        drive, x = drive.split([2 * self.hidden_size, self.input_size], dim=-1)
        for layer in range(self.num_layers):
            if layer > 0:  # the layer below's y_t = Re(C h_t) + D ⊙ x_t is this layer's input
                below = torch.view_as_complex(new[-1].unflatten(-1, (-1, 2)))
                c = torch.complex(self.param("C_re", layer - 1), self.param("C_im", layer - 1))
                x = (below @ c.T).real + self.param("D", layer - 1) * x
                drive = self.drive(x, layer)
            h = torch.view_as_complex(blocks[layer].unflatten(-1, (-1, 2)))
            pushed = torch.view_as_complex(drive.contiguous().unflatten(-1, (-1, 2)))  # complex views need even strides
            new.append(torch.view_as_real(self.eigenvalues(layer) * h + pushed).flatten(-2))
        return new[0] if len(new) == 1 else torch.cat(new, dim=1)

    @torch.no_grad()
    def initialise_weights(self, init: str, scale: float, generator: torch.Generator) -> None:
        """The ring initialisation (minimal-LRU's), then |lambda| multiplied by scale."""
        if init != "default":
            raise NotApplicable(
                f"init={init}: the lru has its own ring initialisation (cell.r_min, cell.r_max, "
                "cell.max_phase); expected init=default"
            )
        like, n = self.nu_log_l0, self.hidden_size
        for layer in range(self.num_layers):
            uniform = torch.rand(n, generator=generator, dtype=torch.float64)
            modulus_sq = uniform * (self.r_max**2 - self.r_min**2) + self.r_min**2
            # |lambda| = exp(-exp(nu)): nu = log(-log|lambda|) = log(-log(modulus^2) / 2); |lambda| = 1 is nu = -inf
            self.param("nu_log", layer).copy_(torch.log(-0.5 * torch.log(modulus_sq)))
            phase = torch.rand(n, generator=generator, dtype=torch.float64) * self.max_phase
            self.param("theta_log", layer).copy_(torch.log(phase))
            self.param("gamma_log", layer).copy_(0.5 * torch.log1p(-modulus_sq))
            for name in ("B_re", "B_im"):
                self.param(name, layer).copy_(
                    normal((n, self.input_size), 1 / math.sqrt(2 * self.input_size), generator, like)
                )
            for name in ("C_re", "C_im"):
                self.param(name, layer).copy_(normal((self.input_size, n), 1 / math.sqrt(n), generator, like))
            self.param("D", layer).copy_(normal((self.input_size,), 1.0, generator, like))
        self.scale.fill_(scale)

    def linear_rate(self, inputs: Tensor | None = None, generator: torch.Generator | None = None) -> float:
        """ln(scale * max |lambda_j|) over every layer (the joint Jacobian is block triangular), from the
        eigenvalues: never a dense Jacobian, so hidden 8192 is cheap."""
        largest = max(
            torch.exp(-torch.exp(self.param("nu_log", layer))).max().item() for layer in range(self.num_layers)
        )
        return math.log(self.scale.item() * largest) if largest > 0 else -math.inf

    def closed_form_profile(self, readout: Tensor, seq_len: int, inputs: Tensor | None = None) -> dict[str, np.ndarray]:
        """theory_log10_norm: this run's exact law, ||dL/dh_{T-k}||^2 = sum_j |c_j|^2 (scale |lambda_j|)^(2k);
        theory_ring_log10_norm: its expectation over the ring, for |lambda|^2 ~ U[a, b]:
        E|lambda|^(2k) = (b^(k+1) - a^(k+1)) / ((k+1)(b - a)); with a = 0, b = 1 the squared norm falls
        as 1/(k+1), a power law of exponent -1/2 in the norm."""
        gains = self.scale.item() * torch.exp(-torch.exp(self.nu_log_l0.detach().double().cpu()))
        weights = readout.double().cpu().view(-1, 2).pow(2).sum(1)  # |c_j|^2 = Re^2 + Im^2 (the state's layout)
        lag, law = diagonal_law(weights, gains, seq_len)
        a, b = self.r_min**2, self.r_max**2
        expectation = (b ** (lag + 1) - a ** (lag + 1)) / ((lag + 1) * (b - a))
        log_ring = weights.sum().log() + 2 * lag * math.log(self.scale.item()) + expectation.log()
        return {"theory_log10_norm": law, "theory_ring_log10_norm": (0.5 * log_ring / math.log(10)).numpy()}


def build(name: str, activation: str, input_size: int, hidden_size: int, num_layers: int, **options: float) -> LRUNet:
    if activation != "tanh":
        raise NotApplicable(f"activation={activation}: the lru is linear; it has no activation to replace")
    return LRUNet(input_size, hidden_size, num_layers, **options)
