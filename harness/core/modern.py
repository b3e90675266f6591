"""Modern recurrent cells: the linear recurrent unit, IndRNN and the minimalRNN.

lru      (Orvieto et al. 2023; NicolasZucchet/minimal-LRU) a complex diagonal linear recurrence
             h_t = lambda ⊙ h_{t-1} + gamma ⊙ (B x_t),     y_t = Re(C h_t) + D ⊙ x_t,
         lambda_j = scale * exp(-exp(nu_j) + i exp(theta_j)), gamma_j = sqrt(1 - |lambda_j / scale|^2)
         (fixed at init, as the paper normalises), ring initialisation: |lambda_j|^2 ~ U[r_min^2, r_max^2],
         phase ~ U[0, max_phase]; B, C complex Glorot-like, D ~ N(0, 1). The state is complex: it is
         kept as its real view (Re h_1, Im h_1, Re h_2, ...: one block of width 2 * hidden_size), so a
         recorded norm is the norm of the complex gradient. Each step is one complex multiply-add,
         O(hidden) (never a dense matrix). y_t, of
         the input's width, feeds the next layer (every layer has input_size channels); the loss and a
         trained readout see the top layer's state.
indrnn   (Li et al. 2018) h_t = act(W x_t + u ⊙ h_{t-1} + b): every unit its own scalar recurrence.
         init default: u ~ U[0, 1] (the paper's), input weights and biases as torch's nn.RNN;
         identity: u = 1 (IndRNN's long-memory start). `scale` multiplies u.
minimal  (minimalRNN, Chen, Pennington & Schoenholz 2018) z_t = act(W_z x_t + b_z),
         u_t = sigmoid(W h_{t-1} + V z_t + b), h_t = u_t ⊙ h_{t-1} + (1 - u_t) ⊙ z_t.
         inits as for the rnn (default, gaussian, orthogonal, identity on W); `scale` multiplies W.

Each network speaks the protocol of harness.core.cells (StackedNet) and initialises itself
(`initialise`); `linear_rate` is ln of the largest |eigenvalue| of the step's linear part where
the step is linear (lru always, indrnn with activation=identity), computed from the parameters
directly (never from a dense Jacobian), else None.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.cells import ACTIVATIONS, StackedNet
from harness.core.errors import NotApplicable


def _uniform_(tensor: Tensor, bound: float, generator: torch.Generator) -> None:
    tensor.uniform_(-bound, bound, generator=generator)


def _normal(shape: tuple[int, ...], std: float, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(like) * std


class LRUNet(StackedNet):
    """A stack of linear recurrent units (see the module docstring)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, r_min: float = 0.0,
                 r_max: float = 1.0, max_phase: float = 2 * math.pi):
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
        return self.scale * torch.exp(torch.complex(-torch.exp(self.param("nu_log", layer)),
                                                    torch.exp(self.param("theta_log", layer))))

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
    def initialise(self, init: str, scale: float, generator: torch.Generator) -> None:
        """The ring initialisation (minimal-LRU's), then |lambda| multiplied by scale."""
        if init != "default":
            raise NotApplicable(f"init={init}: the lru has its own ring initialisation (cell.r_min, cell.r_max, "
                                "cell.max_phase); expected init=default")
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
                self.param(name, layer).copy_(_normal((n, self.input_size), 1 / math.sqrt(2 * self.input_size),
                                                      generator, like))
            for name in ("C_re", "C_im"):
                self.param(name, layer).copy_(_normal((self.input_size, n), 1 / math.sqrt(n), generator, like))
            self.param("D", layer).copy_(_normal((self.input_size,), 1.0, generator, like))
        self.scale.fill_(scale)

    def linear_rate(self) -> float:
        """ln(scale * max |lambda_j|) over every layer (the joint Jacobian is block triangular)."""
        largest = max(torch.exp(-torch.exp(self.param("nu_log", layer))).max().item()
                      for layer in range(self.num_layers))
        return math.log(self.scale.item() * largest) if largest > 0 else -math.inf


class HiddenNet(StackedNet):
    """What indrnn and minimal share: one real h of hidden_size per layer, an activation, an input
    projection x W_ih^T + b_ih (layer l > 0 reading the h of the layer below), and the parameters of
    each layer registered in that order: weight_ih, bias_ih, then the cell's own `recurrent` ones."""

    def __init__(self, cell_name: str, activation: str, input_size: int, hidden_size: int, num_layers: int,
                 recurrent: dict[str, tuple[int, ...]]):
        super().__init__()
        self.cell_name, self.activation, self.act = cell_name, activation, ACTIVATIONS[activation]
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.state_names = ("h",)
        self.block_sizes = (hidden_size,) * num_layers
        for layer in range(num_layers):
            cols = input_size if layer == 0 else hidden_size
            for name, shape in {"weight_ih": (hidden_size, cols), "bias_ih": (hidden_size,), **recurrent}.items():
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape)))

    def input_drive(self, inputs: Tensor) -> tuple[Tensor, ...]:
        return F.linear(inputs, self.weight_ih_l0, self.bias_ih_l0).unbind(0)

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        blocks, new = self.split(state), []
        for layer in range(self.num_layers):
            if layer > 0:
                drive = F.linear(new[-1], getattr(self, f"weight_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}"))
            new.append(self.layer_step(layer, drive, blocks[layer]))
        return new[0] if len(new) == 1 else torch.cat(new, dim=1)

    def layer_step(self, layer: int, drive: Tensor, h: Tensor) -> Tensor:
        """One layer's new h from its input projection and its previous h."""
        raise NotImplementedError


class IndRNNNet(HiddenNet):
    """A stack of IndRNN layers (see the module docstring)."""

    def __init__(self, activation: str, input_size: int, hidden_size: int, num_layers: int):
        super().__init__("indrnn", activation, input_size, hidden_size, num_layers,
                         {"weight_hh": (hidden_size,)})  # u

    def layer_step(self, layer: int, drive: Tensor, h: Tensor) -> Tensor:
        return self.act(drive + getattr(self, f"weight_hh_l{layer}") * h)

    @torch.no_grad()
    def initialise(self, init: str, scale: float, generator: torch.Generator) -> None:
        if init not in ("default", "identity"):
            raise NotApplicable(f"init={init}: an indrnn's recurrence is a vector u; expected init=default "
                                "(u ~ U[0, 1]) or identity (u = 1)")
        bound = 1 / math.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            _uniform_(getattr(self, f"weight_ih_l{layer}"), bound, generator)
            _uniform_(getattr(self, f"bias_ih_l{layer}"), bound, generator)
            u = getattr(self, f"weight_hh_l{layer}")
            if init == "default":
                u.uniform_(0, 1, generator=generator)
            else:
                u.fill_(1.0)
            u.mul_(scale)

    def linear_rate(self) -> float | None:
        if self.activation != "identity":
            return None
        largest = max(getattr(self, f"weight_hh_l{layer}").abs().max().item() for layer in range(self.num_layers))
        return math.log(largest) if largest > 0 else -math.inf


class MinimalNet(HiddenNet):
    """A stack of minimalRNN layers (see the module docstring)."""

    def __init__(self, activation: str, input_size: int, hidden_size: int, num_layers: int):
        # W_z, b_z are the input projection; then W, V and b of the gate
        super().__init__("minimal", activation, input_size, hidden_size, num_layers,
                         {"weight_hh": (hidden_size, hidden_size), "weight_zh": (hidden_size, hidden_size),
                          "bias_hh": (hidden_size,)})

    def layer_step(self, layer: int, drive: Tensor, h: Tensor) -> Tensor:
        hw = torch.addmm(getattr(self, f"bias_hh_l{layer}"), h, getattr(self, f"weight_hh_l{layer}").t())
        return self.gate_tail(layer, drive, hw, h)

    def gate_tail(self, layer: int, drive: Tensor, hw: Tensor, h: Tensor) -> Tensor:
        """The new h from the gate's recurrent part hw = h W^T + b (harness.core.detail reads its gradient)."""
        z = self.act(drive)
        gate = torch.sigmoid(hw + F.linear(z, getattr(self, f"weight_zh_l{layer}")))
        return gate * h + (1 - gate) * z

    @torch.no_grad()
    def initialise(self, init: str, scale: float, generator: torch.Generator) -> None:
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():  # torch's nn.RNN default, the starting point of every scheme
            _uniform_(p, bound, generator)
        for layer in range(self.num_layers):
            w = getattr(self, f"weight_hh_l{layer}")
            if init != "default":  # inputs N(0, 1/fan_in), biases 0, then W by the scheme
                for name in ("weight_ih", "weight_zh"):
                    p = getattr(self, f"{name}_l{layer}")
                    p.copy_(_normal(tuple(p.shape), 1 / math.sqrt(p.shape[1]), generator, p))
                for name in ("bias_ih", "bias_hh"):
                    getattr(self, f"{name}_l{layer}").zero_()
            if init == "gaussian":
                w.copy_(_normal(tuple(w.shape), 1 / math.sqrt(self.hidden_size), generator, w))
            elif init == "orthogonal":
                nn.init.orthogonal_(w, generator=generator)
            elif init == "identity":
                w.copy_(torch.eye(self.hidden_size, dtype=w.dtype))
            w.mul_(scale)

    def linear_rate(self) -> None:
        return None
