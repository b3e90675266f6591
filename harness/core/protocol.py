"""The network protocol: what every network the harness unrolls answers for itself, built in or a user's.

Every time step produces one *joint state* tensor S_t of shape (batch, layers * states * width): for
each layer its h (and, for the lstm, its c) side by side. The recorders hook S_t, so one hook sees the
whole of dL/dS_t at step t -- which is what lets the exact recorder rescale the carried gradient
without changing its direction (see harness.core.recorders).

A network (StackedNet) answers, besides unrolling (initial_state, input_drive, step, split, join):

    scale        initialise_weights(init, scale, generator): the scheme, then what `scale` multiplies
                 (its CellType.scaled says what that is); add_forget_bias, chrono: gate biases, or
                 NotApplicable naming the cells that take them
    theory       linear_rate(inputs, generator): the step's linear rate, or why there is none (the note
                 a table shows); mean_field(init, scale, drive_var): (rate, critical scale), or why not;
                 closed_form_profile(readout, seq_len, inputs): closed-form log10 norms on the probe ({}: none);
                 linear_lyapunov: its Lyapunov exponent is its linear rate; dense_eigenvalues: whether
                 linear_rate eigendecomposes a dense matrix (the memory estimate counts it)
    units view   gate_names: the gate blocks of its recurrent pre-activation hw = h W_hh^T + b_hh, for
                 the gates and weights rows (None: units rows only); such a network has weight_ih_l<k>,
                 bias_ih_l<k>, weight_hh_l<k>, bias_hh_l<k> per layer and layer_tail(layer, drive, hw, blocks)
    written out  analytic_jacobian: it writes out its step's Jacobian (linearised_step, step_coefficients,
                 push_tangent, pull_cotangent, step_jvp; step_values: their sizes), so the exact recorder
                 runs without autograd's graph, a Lyapunov tangent rides the recording, and gradient
                 flossing can run

A built-in cell also has a row (a CellType) in harness.core.networks: its name, the module that builds
it, its options, the keys only some cells take, its colour and place in figures, and its memory per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.errors import NotApplicable
from harness.core.networks import cells_taking, join_names

Activation = Callable[[Tensor], Tensor]

ACTIVATIONS: dict[str, Activation] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01, torch's default
    "gelu": F.gelu,  # the exact (erf) form
    "softsign": F.softsign,
}


# Each activation's derivative, from its input u and output y (for the cells' JVPs).
SLOPES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "tanh": lambda u, y: 1 - y * y,
    "relu": lambda u, y: (u > 0).to(u.dtype),
    "sigmoid": lambda u, y: y * (1 - y),
    "identity": lambda u, y: torch.ones_like(u),
    "leaky_relu": lambda u, y: torch.where(u > 0, torch.ones_like(u), torch.full_like(u, 0.01)),
    "gelu": lambda u, y: torch.special.ndtr(u) + u * torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi),
    "softsign": lambda u, y: 1 / (1 + u.abs()) ** 2,
}

MEAN_FIELD_NOTE = "mean field: needs a one-layer rnn with init=gaussian or orthogonal"


def only_for(key: str) -> str:
    """'the lstm and gru': the built-in cells that take a cell-only key (harness.core.networks)."""
    return f"the {join_names(cells_taking(key))}"


def log_spectral_radius(matrix: Tensor) -> float:
    """ln of the largest |eigenvalue| of a square matrix, computed in float64 on the CPU."""
    return math.log(torch.linalg.eigvals(matrix.detach().double().cpu()).abs().max().item())


def diagonal_law(weights: Tensor, gains: Tensor, seq_len: int) -> tuple[Tensor, np.ndarray]:
    """(k at t = 0..T, log10 ||dL/dh_{T-k}||) for a linear diagonal step: ||dL/dh_{T-k}||^2 =
    sum_j w_j g_j^(2k), summed stably in logs (zero gains and zero weights are -inf terms)."""
    lag = torch.arange(seq_len, -1, -1, dtype=torch.float64)
    log_terms = weights.log().unsqueeze(0) + 2 * lag.unsqueeze(1) * gains.log().unsqueeze(0)
    return lag, (0.5 * torch.logsumexp(log_terms, dim=1) / math.log(10)).numpy()


class StackedNet(nn.Module):
    """What every network shares: the joint state S_t and its blocks, and the protocol above."""

    cell_name: str
    num_layers: int
    state_names: tuple[str, ...]  # one layer's state blocks, in S_t's order
    block_sizes: tuple[int, ...]  # every block of S_t: layer 0's, then layer 1's, ...
    gate_names: tuple[str, ...] | None = None  # the units view's gate blocks; None: units rows only
    analytic_jacobian: ClassVar[bool] = False  # it writes out its step's Jacobian (see the module docstring)
    linear_lyapunov: ClassVar[bool] = False  # its largest Lyapunov exponent is its linear rate

    @property
    def num_parts(self) -> int:
        """How many blocks make up the joint state S_t."""
        return len(self.block_sizes)

    def split(self, state: Tensor) -> tuple[Tensor, ...]:
        """The blocks of a joint state: layer 0's (h[, c]), then layer 1's, ..."""
        return (state,) if self.num_parts == 1 else state.split_with_sizes(self.block_sizes, dim=-1)

    def join(self, blocks: Sequence[Tensor]) -> Tensor:
        """The joint state of its blocks: split's inverse."""
        return blocks[0] if len(blocks) == 1 else torch.cat(list(blocks), dim=-1)

    @property
    def output_size(self) -> int:
        """The width of what the loss sees: the top layer's first block."""
        return self.block_sizes[-len(self.state_names)]

    def top_hidden(self, state: Tensor) -> Tensor:
        """The top layer's first block (its h) inside a joint state: what a readout or a loss sees."""
        return self.split(state)[-len(self.state_names)]

    def initial_state(self, batch_size: int) -> Tensor:
        """S_0 = 0, a leaf that requires grad so that dL/dS_0 is recorded too."""
        p = next(self.parameters())
        return torch.zeros(batch_size, sum(self.block_sizes), dtype=p.dtype, device=p.device, requires_grad=True)

    def forward(self, inputs: Tensor, state: Tensor) -> list[Tensor]:
        """Unroll over inputs (seq_len, batch, input_size) from S_0 = state; return [S_0, ..., S_T]."""
        states = [state]
        for drive in self.input_drive(inputs):
            states.append(self.step(states[-1], drive))
        return states

    def input_drive(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """What each step reads of its input x_t, for every step (a batched projection, or x_t itself)."""
        raise NotImplementedError

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        """One time step of the whole stack: S_{t-1} and the bottom layer's drive at t -> S_t."""
        raise NotImplementedError

    # -- what `scale` multiplies, and the gate biases --------------------------------------------

    def initialise_weights(self, init: str, scale: float, generator: torch.Generator) -> None:
        """Apply scheme `init` (harness.core.init), then multiply what `scale` scales; NotApplicable
        for a scheme that means nothing for this network."""
        raise NotImplementedError

    def add_forget_bias(self, value: float) -> None:
        """Add `value` to the forget gate's bias (Jozefowicz et al. 2015)."""
        raise NotApplicable(f"forget_bias applies to {only_for('cell.forget_bias')} only")

    def chrono(self, tmax: int, generator: torch.Generator) -> None:
        """Chrono init (Tallec & Ollivier 2018) of the gate that keeps the old state."""
        raise NotApplicable(f"chrono init applies to {only_for('cell.chrono_tmax')} only")

    # -- theory (harness.core.theory) ------------------------------------------------------------

    def linear_rate(self, inputs: Tensor | None = None, generator: torch.Generator | None = None) -> float | str:
        """ln of the largest gain of the step's linear part per step where the step is linear, from the
        parameters; else why not (theory_note). inputs and generator: for a network that finds out by
        probing its own step (a user cell)."""
        raise NotImplementedError

    def mean_field(self, init: str, scale: float, drive_var: float) -> tuple[float, float] | str:
        """(mean-field rate, critical scale) at input drive variance drive_var; else why not."""
        return MEAN_FIELD_NOTE

    def closed_form_profile(self, readout: Tensor, seq_len: int, inputs: Tensor | None = None) -> dict[str, np.ndarray]:
        """Closed-form log10 ||dL/dh_{T-k}|| on the probe with readout c and the probe's inputs (a cell
        whose factors depend on them reads them), indexed by t = T - k, where one exists (one layer); {}
        where none does."""
        return {}

    @property
    def dense_eigenvalues(self) -> bool:
        """Whether linear_rate eigendecomposes a dense matrix as wide as a layer (the memory estimate
        counts its copies)."""
        return False
