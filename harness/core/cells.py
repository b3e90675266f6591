"""Recurrent cells as explicit step functions, and the stacked network that runs them.

Every time step produces one *joint state* tensor S_t of shape (batch, layers * states * hidden): for
each layer its h (and, for the lstm, its c) side by side. The recorders hook S_t, so one hook sees the
whole of dL/dS_t at step t -- which is what lets the exact recorder rescale the carried gradient
without changing its direction (see harness.core.recorders).

With activation=tanh the cells compute exactly what torch.nn.RNN / LSTM / GRU compute, and the
parameters carry torch's names (weight_ih_l0, ...), so state dicts load across in both directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.errors import ModelError

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
# b_hh is None for a network without biases (torch's bias=False).

def recurrent(h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """h W_hh^T + b_hh, fused into one addmm where there is a bias."""
    return h @ w_hh.t() if b_hh is None else torch.addmm(b_hh, h, w_hh.t())


def rnn_step(xw: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor | None, act: Activation):
    (h,) = state
    return (act(xw + recurrent(h, w_hh, b_hh)),)


def lstm_step(xw: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor | None, act: Activation):
    h, c = state
    i, f, g, o = (xw + recurrent(h, w_hh, b_hh)).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * act(g)
    h = torch.sigmoid(o) * act(c)
    return h, c


def gru_step(xw: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor | None, act: Activation):
    (h,) = state
    x_r, x_z, x_n = xw.chunk(3, dim=1)
    h_r, h_z, h_n = recurrent(h, w_hh, b_hh).chunk(3, dim=1)
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


class StackedNet(nn.Module):
    """What both networks share: the joint state S_t and its blocks (the protocol above)."""
    num_layers: int
    state_names: tuple[str, ...]  # one layer's state blocks, in S_t's order
    block_sizes: tuple[int, ...]  # every block of S_t: layer 0's, then layer 1's, ...

    @property
    def num_parts(self) -> int:
        """How many blocks make up the joint state S_t."""
        return len(self.block_sizes)

    def split(self, state: Tensor) -> tuple[Tensor, ...]:
        """The blocks of a joint state: layer 0's (h[, c]), then layer 1's, ..."""
        return (state,) if self.num_parts == 1 else state.split(list(self.block_sizes), dim=1)

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


class RecurrentNet(StackedNet):
    """A stack of `num_layers` built-in cells, unrolled one explicit step at a time."""

    def __init__(self, cell: str, activation: str, input_size: int, hidden_size: int, num_layers: int,
                 bias: bool = True):
        super().__init__()
        self.cell_name, self.cell = cell, CELLS[cell]
        self.activation, self.act = activation, ACTIVATIONS[activation]
        self.input_size, self.hidden_size, self.num_layers, self.bias = input_size, hidden_size, num_layers, bias
        self.state_names = self.cell.states
        self.block_sizes = (hidden_size,) * (num_layers * len(self.state_names))
        rows = self.cell.gates * hidden_size
        for layer in range(num_layers):
            cols = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(rows, cols)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(rows, hidden_size)))
            for name in ("bias_ih", "bias_hh"):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(rows)) if bias else None)

    def layer_params(self, name: str) -> list[Tensor]:
        """One parameter (e.g. "weight_hh") for every layer, bottom first; None where there is no bias."""
        return [getattr(self, f"{name}_l{layer}") for layer in range(self.num_layers)]

    def input_drive(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """The bottom layer's x_t W_ih^T + b_ih for every step, in one batched matmul. Unbound (not
        indexed), so the backward does not materialise a full (T, B, G*H) gradient at every step."""
        return F.linear(inputs, self.weight_ih_l0, self.bias_ih_l0).unbind(0)

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        """One time step of the whole stack: S_{t-1} and the bottom layer's drive at t -> S_t."""
        per_layer = len(self.state_names)
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


def as_tuple(state: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (state,) if isinstance(state, Tensor) else tuple(state)


def cell_initial_state(cell: nn.Module, batch_size: int) -> tuple[Tensor, ...]:
    """A user cell's h_0: its own initial_state(batch_size) if it has one, else zeros."""
    if hasattr(cell, "initial_state"):
        return as_tuple(cell.initial_state(batch_size))
    p = next(cell.parameters(), None)
    like = {"dtype": p.dtype, "device": p.device} if p is not None else {}
    if not isinstance(getattr(cell, "hidden_size", None), int):
        raise ModelError(f"{type(cell).__name__}: a user cell needs an int attribute hidden_size, or a method "
                         "initial_state(batch_size) returning its zero state")
    zeros = torch.zeros(batch_size, cell.hidden_size, **like)
    return (zeros, zeros.clone()) if isinstance(cell, nn.LSTMCell) else (zeros,)


class CellNet(StackedNet):
    """User cells stacked in layers (see the module docstring for what a cell provides)."""

    def __init__(self, layers: Sequence[nn.Module], input_size: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.num_layers, self.input_size = len(layers), input_size
        first = layers[0]
        self.cell_name = type(first).__name__
        shapes = [[tuple(s.shape) for s in cell_initial_state(cell, 1)] for cell in layers]
        if any(len(shape) != 2 or shape[0] != 1 for layer in shapes for shape in layer):
            raise ModelError(f"{self.cell_name}: initial_state(batch_size) must give (batch_size, width) tensors, "
                             f"got shapes {shapes[0]}")
        self.block_sizes = tuple(shape[1] for layer in shapes for shape in layer)
        per_layer = len(shapes[0])
        self.hidden_size = shapes[0][0][1]
        self.state_names = tuple(getattr(first, "state_names", None) or
                                 ("h", *(f"s{i}" for i in range(1, per_layer))))
        if len(self.state_names) != per_layer or any(len(layer) != per_layer for layer in shapes):
            raise ModelError(f"{self.cell_name}: state_names {self.state_names} do not match its {per_layer} "
                             "state tensors in every layer")

    def initial_state(self, batch_size: int) -> Tensor:
        state = torch.cat([s for cell in self.layers for s in cell_initial_state(cell, batch_size)], dim=1)
        return state.detach().requires_grad_()

    def input_drive(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """A user cell reads x_t itself."""
        return inputs.unbind(0)

    def step(self, state: Tensor, drive: Tensor) -> Tensor:
        blocks, per_layer = self.split(state), len(self.state_names)
        new: list[Tensor] = []
        x = drive
        for layer, cell in enumerate(self.layers):
            previous = blocks[layer * per_layer:(layer + 1) * per_layer]
            out = as_tuple(cell(x, previous[0] if per_layer == 1 else previous))
            if [o.shape for o in out] != [p.shape for p in previous]:
                raise ModelError(f"{self.cell_name}.forward(x_t, state) returned shapes {[tuple(o.shape) for o in out]}; "
                                 f"expected the state's own {[tuple(p.shape) for p in previous]}")
            new.extend(out)
            x = out[0]
        return new[0] if len(new) == 1 else torch.cat(new, dim=1)
