"""Input-gated linear cells: a state whose step is

    h_t = scale * a_t ⊙ h_{t-1} + b_t,        a_t and b_t read off the layer's input x_t alone,

so the step's Jacobian dh_t/dh_{t-1} = diag(scale a_t) is diagonal and depends on the inputs only. Here
the minGRU and minLSTM of Feng et al. 2024 ("Were RNNs All We Needed?"), their parallel-mode equations
run one step at a time (the log-space variant is not needed), and the base they share with the
selective state space cell (harness.core.zoo.selective):

    mingru    z_t = σ(W_z x_t + b_z),   h̃_t = W_h x_t + b_h,   h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t
    minlstm   f_t = σ(W_f x_t + b_f),   i_t = σ(W_i x_t + b_i),   f′_t = f_t / (f_t + i_t),
              i′_t = i_t / (f_t + i_t),   h̃_t = W_h x_t + b_h,   h_t = f′_t ⊙ h_{t−1} + i′_t ⊙ h̃_t

Every projection is torch's nn.Linear, initialised as torch does (weights and biases U(±1/√fan_in)),
drawn in float64. Layer l > 0 reads the h of the layer below. `scale` multiplies the factor a_t (1 − z_t,
f′_t): scale 1 is the published cell, and the factor is what decides how the gradient decays.

Theory, exact per run. On the probe (dL/dh_T = r), for each sample, ||dL/dh_{T−k}|| = ||r ⊙ Π_{j=T−k+1..T}
scale a_j|| (closed_form_profile, summed in logs: any range); the largest Lyapunov exponent of the
(block-triangular, for a stack) Jacobian product is the largest over channels and layers of the time
average of ln(scale a_t), straight from the factors along the run's own trajectory (linear_rate; batch
median, as the Lyapunov exponent of every other cell is reported). The step is linear in its state, so
that rate is also its linear rate: theory_linear and theory_lyapunov both hold it, as the lru's both
hold ln max|λ|.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.errors import NotApplicable
from harness.core.protocol import StackedNet
from harness.core.tasks import StreamedInputs, time_chunks


def uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator, like: Tensor) -> Tensor:
    """U(-bound, bound) entries, drawn in float64 and cast as `like` (a float32 and a float64 run of one
    seed start from the same weights)."""
    return ((torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound).to(like)


class InputGatedNet(StackedNet):
    """A stack of input-gated layers (see the module docstring): a subclass says what a layer projects
    from its input (parameter_shapes, project), its factor a_t and push b_t (gates), ln a_t (log_factor),
    what the layer above reads (output) and how the parameters start (initialise_layer)."""

    linear_lyapunov = True  # the step is linear in its state: its exponent comes from the factors

    def __init__(self, cell_name: str, input_size: int, hidden_size: int, num_layers: int, state_width: int):
        super().__init__()
        self.cell_name, self.activation = cell_name, None
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.state_names = ("h",)
        self.block_sizes = (state_width,) * num_layers
        self.register_buffer("scale", torch.ones(()))
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            for name, shape in self.parameter_shapes(fan_in).items():
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape)))

    # -- what a subclass says ----------------------------------------------------------------------

    def parameter_shapes(self, fan_in: int) -> dict[str, tuple[int, ...]]:
        """One layer's parameters (registered as <name>_l<layer>, in this order) for an input of fan_in."""
        raise NotImplementedError

    def project(self, layer: int, x: Tensor) -> Tensor:
        """The layer's pre-activations from its input x (any leading dimensions)."""
        return F.linear(x, self.param("weight_ih", layer), self.param("bias_ih", layer))

    def gates(self, layer: int, projected: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t) of h_t = scale * a_t ⊙ h_{t-1} + b_t, as the published equations compute them."""
        raise NotImplementedError

    def log_factor(self, layer: int, projected: Tensor) -> Tensor:
        """ln a_t, computed stably (for the theory)."""
        raise NotImplementedError

    def output(self, layer: int, projected: Tensor, h: Tensor) -> Tensor:
        """What the layer above reads: the layer's h."""
        return h

    def initialise_layer(self, layer: int, fan_in: int, generator: torch.Generator) -> None:
        """nn.Linear's own init of every parameter of the layer, in registration order."""
        bound = 1 / math.sqrt(fan_in)
        for name in self.parameter_shapes(fan_in):
            p = self.param(name, layer)
            p.copy_(uniform(tuple(p.shape), bound, generator, p))

    # -- the network ----------------------------------------------------------------------------------

    def param(self, name: str, layer: int) -> Tensor:
        return getattr(self, f"{name}_l{layer}")

    def input_drive(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """The bottom layer's pre-activations, every step at once."""
        return self.project(0, inputs).unbind(0)

    def advance(self, state: Tensor, drive: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(S_t, each layer's pre-activations at t) from S_{t-1} and the bottom layer's drive."""
        blocks, new, projections = self.split(state), [], [drive]
        for layer in range(self.num_layers):
            if layer > 0:
                projections.append(self.project(layer, self.output(layer - 1, projections[-1], new[-1])))
            factor, push = self.gates(layer, projections[-1])
            new.append(torch.addcmul(push, self.scale * factor, blocks[layer]))
        return self.join(new), projections

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        return self.advance(state, drive)[0]

    @torch.no_grad()
    def initialise_weights(self, init: str, scale: float, generator: torch.Generator) -> None:
        """The cell's own initialisation (initialise_layer), then the factor a_t multiplied by scale."""
        if init != "default":
            raise NotApplicable(
                f"init={init}: the {self.cell_name} has no recurrent weight matrix (its state factor is read "
                "off the input); expected init=default"
            )
        for layer in range(self.num_layers):
            self.initialise_layer(layer, self.input_size if layer == 0 else self.hidden_size, generator)
        self.scale.fill_(scale)

    # -- theory ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def log_factors(self, inputs: Tensor | StreamedInputs) -> Iterator[Tensor]:
        """ln a_t of every layer side by side, (batch, state) in float64, for t = 1..T along the trajectory
        the recording follows (S_0 = 0; the layers above read the layers below); without ln scale."""
        p = next(self.parameters())
        state = self.initial_state(inputs.shape[1]).detach()
        for chunk in time_chunks(inputs):
            for drive in self.input_drive(chunk.to(p)):
                state, projections = self.advance(state, drive)
                yield torch.cat([self.log_factor(k, x.double()) for k, x in enumerate(projections)], dim=-1)

    def linear_rate(self, inputs: Tensor | None = None, generator: torch.Generator | None = None) -> float | str:
        """The largest Lyapunov exponent from the factors: per sample, the largest over channels (and
        layers) of the time average of ln(scale a_t) over the T steps, then the batch median."""
        if inputs is None:
            return f"linear: the {self.cell_name}'s factors are read off its inputs; expected the run's inputs"
        total = sum(self.log_factors(inputs))
        per_sample = total.max(dim=-1).values / inputs.shape[0] + log(self.scale.item())
        return float(per_sample.median())

    def closed_form_profile(
        self, readout: Tensor, seq_len: int, inputs: Tensor | StreamedInputs | None = None
    ) -> dict[str, np.ndarray]:
        """theory_log10_norm: this run's exact law on its probe's inputs, for one layer: per sample
        ||dL/dh_{T-k}|| = ||r ⊙ Π_{j=T-k+1..T} scale a_j||, summed in logs; the table keeps the batch
        median (nearest rank, as the measured median is). {}: no inputs of seq_len steps."""
        if inputs is None or inputs.shape[0] != seq_len or self.num_layers != 1:
            return {}
        log_r = 2 * readout.double().abs().log().to(next(self.parameters()).device)
        # The sum of ln a_j over j > t, walked down from the whole sum by a second pass (the factors
        # themselves would be T x batch x state to keep); exp of its double, weighted by r_j^2, summed.
        suffix = sum(self.log_factors(inputs))
        norms = [torch.logsumexp(log_r + 2 * suffix, dim=-1)]
        for log_a in self.log_factors(inputs):
            suffix = suffix - log_a
            norms.append(torch.logsumexp(log_r + 2 * suffix, dim=-1))
        lag = torch.arange(seq_len, -1, -1, dtype=torch.float64, device=suffix.device).unsqueeze(1)
        scaled = torch.where(lag > 0, lag * log(self.scale.item()), torch.zeros_like(lag))  # scale 0: 0^0 = 1
        log10 = ((0.5 * torch.stack(norms) + scaled) / math.log(10)).cpu().numpy()
        return {"theory_log10_norm": np.nanquantile(log10, 0.5, axis=1, method="nearest")}


def log(value: float) -> float:
    """ln, with ln 0 = -inf."""
    return math.log(value) if value > 0 else -math.inf


def check_activation(name: str, activation: str) -> None:
    if activation != "tanh":
        raise NotApplicable(f"activation={activation}: the {name} has no activation to replace")


class MinGRUNet(InputGatedNet):
    """A stack of minGRU layers (see the module docstring); weight_ih rows: z, then h̃."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__("mingru", input_size, hidden_size, num_layers, hidden_size)

    def parameter_shapes(self, fan_in: int) -> dict[str, tuple[int, ...]]:
        return {"weight_ih": (2 * self.hidden_size, fan_in), "bias_ih": (2 * self.hidden_size,)}

    def gates(self, layer: int, projected: Tensor) -> tuple[Tensor, Tensor]:
        pre_z, candidate = projected.chunk(2, dim=-1)
        z = torch.sigmoid(pre_z)
        return 1 - z, z * candidate

    def log_factor(self, layer: int, projected: Tensor) -> Tensor:
        return F.logsigmoid(-projected[..., : self.hidden_size])  # 1 - σ(u) = σ(-u)


class MinLSTMNet(InputGatedNet):
    """A stack of minLSTM layers (see the module docstring); weight_ih rows: f, i, then h̃."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__("minlstm", input_size, hidden_size, num_layers, hidden_size)

    def parameter_shapes(self, fan_in: int) -> dict[str, tuple[int, ...]]:
        return {"weight_ih": (3 * self.hidden_size, fan_in), "bias_ih": (3 * self.hidden_size,)}

    def gates(self, layer: int, projected: Tensor) -> tuple[Tensor, Tensor]:
        pre_f, pre_i, candidate = projected.chunk(3, dim=-1)
        f, i = torch.sigmoid(pre_f), torch.sigmoid(pre_i)
        return f / (f + i), i / (f + i) * candidate

    def log_factor(self, layer: int, projected: Tensor) -> Tensor:
        pre_f, pre_i, _ = projected.chunk(3, dim=-1)
        log_f, log_i = F.logsigmoid(pre_f), F.logsigmoid(pre_i)
        return log_f - torch.logaddexp(log_f, log_i)


def build(name: str, activation: str, input_size: int, hidden_size: int, num_layers: int) -> InputGatedNet:
    """mingru or minlstm (harness.core.networks' rows)."""
    check_activation(name, activation)
    return {"mingru": MinGRUNet, "minlstm": MinLSTMNet}[name](input_size, hidden_size, num_layers)
