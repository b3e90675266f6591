"""Recurrent cells as explicit step functions, and the stacked network that runs them.

Every time step produces one *joint state* tensor S_t of shape (batch, layers * states * hidden): for
each layer its h (and, for the lstm, its c) side by side. The recorders hook S_t, so one hook sees the
whole of dL/dS_t at step t -- which is what lets the exact recorder rescale the carried gradient
without changing its direction (see harness.gradients).

With activation=tanh the cells compute exactly what torch.nn.RNN / LSTM / GRU compute, and the
parameters carry torch's names (weight_ih_l0, ...), so state dicts load across in both directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


# Each step takes the input projection x_t W_ih^T + b_ih (computed outside, batched when possible),
# the layer's previous state, and returns its new state. Gates are always sigmoid; `act` replaces tanh.

def rnn_step(xw: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor, act: Activation):
    (h,) = state
    return (act(xw + torch.addmm(b_hh, h, w_hh.t())),)


def lstm_step(xw: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor, act: Activation):
    h, c = state
    i, f, g, o = (xw + torch.addmm(b_hh, h, w_hh.t())).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * act(g)
    h = torch.sigmoid(o) * act(c)
    return h, c


def gru_step(xw: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor, act: Activation):
    (h,) = state
    x_r, x_z, x_n = xw.chunk(3, dim=1)
    h_r, h_z, h_n = torch.addmm(b_hh, h, w_hh.t()).chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = act(x_n + r * h_n)  # torch.nn.GRU puts b_hn inside the reset gate's product
    return ((1 - z) * n + z * h,)


@dataclass(frozen=True)
class Cell:
    step: Callable[..., tuple[Tensor, ...]]
    gates: int  # blocks stacked in W_ih and W_hh, in torch's order
    states: tuple[str, ...]  # names of the per-layer state tensors, as they appear in S_t


CELLS: dict[str, Cell] = {
    "rnn": Cell(rnn_step, gates=1, states=("h",)),
    "lstm": Cell(lstm_step, gates=4, states=("h", "c")),  # gates i, f, g, o
    "gru": Cell(gru_step, gates=3, states=("h",)),  # gates r, z, n
}


class RecurrentNet(nn.Module):
    """A stack of `num_layers` cells, unrolled one explicit step at a time."""

    def __init__(self, cell: str, activation: str, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.cell_name, self.cell = cell, CELLS[cell]
        self.act = ACTIVATIONS[activation]
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        rows = self.cell.gates * hidden_size
        for layer in range(num_layers):
            cols = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(rows, cols)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(rows, hidden_size)))
            self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(rows)))
            self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(rows)))

    def layer_params(self, name: str) -> list[Tensor]:
        """One parameter (e.g. "weight_hh") for every layer, bottom first."""
        return [getattr(self, f"{name}_l{layer}") for layer in range(self.num_layers)]

    @property
    def num_parts(self) -> int:
        """How many hidden-sized blocks make up the joint state S_t."""
        return self.num_layers * len(self.cell.states)

    def initial_state(self, batch_size: int) -> Tensor:
        """S_0 = 0, a leaf that requires grad so that dL/dS_0 is recorded too."""
        w = self.weight_hh_l0
        return torch.zeros(batch_size, self.num_parts * self.hidden_size,
                           dtype=w.dtype, device=w.device, requires_grad=True)

    def split(self, state: Tensor) -> tuple[Tensor, ...]:
        """The blocks of a joint state: layer 0's (h[, c]), then layer 1's, ..."""
        return (state,) if self.num_parts == 1 else state.split(self.hidden_size, dim=1)

    def top_hidden(self, state: Tensor) -> Tensor:
        """The top layer's h inside a joint state: what a readout or a loss sees."""
        return self.split(state)[-len(self.cell.states)]

    def input_drive(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """The bottom layer's x_t W_ih^T + b_ih for every step, in one batched matmul. Unbound (not
        indexed), so the backward does not materialise a full (T, B, G*H) gradient at every step."""
        return F.linear(inputs, self.weight_ih_l0, self.bias_ih_l0).unbind(0)

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        """One time step of the whole stack: S_{t-1} and the bottom layer's drive at t -> S_t."""
        per_layer = len(self.cell.states)
        previous = self.split(state)
        new: list[Tensor] = []
        for layer in range(self.num_layers):
            if layer > 0:  # the layer below's fresh h is this layer's input
                drive = F.linear(new[-per_layer], getattr(self, f"weight_ih_l{layer}"),
                                 getattr(self, f"bias_ih_l{layer}"))
            new.extend(self.cell.step(drive, previous[layer * per_layer:(layer + 1) * per_layer],
                                      getattr(self, f"weight_hh_l{layer}"), getattr(self, f"bias_hh_l{layer}"),
                                      self.act))
        return new[0] if len(new) == 1 else torch.cat(new, dim=1)

    def forward(self, inputs: Tensor, state: Tensor) -> list[Tensor]:
        """Unroll over inputs (seq_len, batch, input_size) from S_0 = state; return [S_0, ..., S_T]."""
        states = [state]
        for drive in self.input_drive(inputs):
            states.append(self.step(states[-1], drive))
        return states
