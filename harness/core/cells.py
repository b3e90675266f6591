"""Recurrent cells as explicit step functions, and the stacked network that runs them.

Every time step produces one *joint state* tensor S_t of shape (batch, layers * states * hidden): for
each layer its h (and, for the lstm, its c) side by side. The recorders hook S_t, so one hook sees the
whole of dL/dS_t at step t -- which is what lets the exact recorder rescale the carried gradient
without changing its direction (see harness.core.recorders).

With activation=tanh the cells compute exactly what torch.nn.RNN / LSTM / GRU compute, and the
parameters carry torch's names (weight_ih_l0, ...), so state dicts load across in both directions.
"""
from __future__ import annotations

import math
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


# Each activation's derivative, from its input u and output y (for harness.core.cells' JVPs).
SLOPES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "tanh": lambda u, y: 1 - y * y,
    "relu": lambda u, y: (u > 0).to(u.dtype),
    "sigmoid": lambda u, y: y * (1 - y),
    "identity": lambda u, y: torch.ones_like(u),
    "leaky_relu": lambda u, y: torch.where(u > 0, torch.ones_like(u), torch.full_like(u, 0.01)),
    "gelu": lambda u, y: torch.special.ndtr(u) + u * torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi),
    "softsign": lambda u, y: 1 / (1 + u.abs()) ** 2,
}

# A cell's step is its recurrent matmul hw = h W_hh^T + b_hh followed by an elementwise `tail`
# (xw, hw, state) -> new state, where xw = x_t W_ih^T + b_ih is computed outside (batched when
# possible). Gates are always sigmoid; `act` replaces tanh. The split is what lets a tangent be pushed
# through a step at the cost of one more matmul (RecurrentNet.step_jvp): the matmuls are linear, and
# each tail has its Jacobian-vector product written out (`tail_jvp`: the new state and its tangent
# from the tangents of xw, hw and the state; `slope` is the activation's derivative).
# b_hh is None for a network without biases (torch's bias=False).

def recurrent(h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """h W_hh^T + b_hh, fused into one addmm where there is a bias."""
    return h @ w_hh.t() if b_hh is None else torch.addmm(b_hh, h, w_hh.t())


def rnn_tail(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation) -> tuple[Tensor, ...]:
    return (act(xw + hw),)


def rnn_tail_jvp(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation, slope: Callable,
                 dxw: Tensor, dhw: Tensor, dstate: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    pre = xw + hw
    h = act(pre)
    return (h,), (slope(pre, h) * (dxw + dhw),)


def lstm_tail(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation) -> tuple[Tensor, ...]:
    _, c = state
    i, f, g, o = (xw + hw).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * act(g)
    h = torch.sigmoid(o) * act(c)
    return h, c


def lstm_tail_jvp(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation, slope: Callable,
                  dxw: Tensor, dhw: Tensor, dstate: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    (_, c), (_, dc) = state, dstate
    i, f, g, o = (xw + hw).chunk(4, dim=-1)
    di, df, dg, do = (dxw + dhw).chunk(4, dim=-1)
    si, sf, so, ag = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), act(g)
    c_new = sf * c + si * ag
    dc_new = sf * (1 - sf) * df * c + sf * dc + si * (1 - si) * di * ag + si * slope(g, ag) * dg
    ac = act(c_new)
    return (so * ac, c_new), (so * (1 - so) * do * ac + so * slope(c_new, ac) * dc_new, dc_new)


def gru_tail(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation) -> tuple[Tensor, ...]:
    (h,) = state
    x_r, x_z, x_n = xw.chunk(3, dim=-1)
    h_r, h_z, h_n = hw.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = act(x_n + r * h_n)  # torch.nn.GRU puts b_hn inside the reset gate's product
    return ((1 - z) * n + z * h,)


def gru_tail_jvp(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation, slope: Callable,
                 dxw: Tensor, dhw: Tensor, dstate: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    (h,), (dh,) = state, dstate
    (x_r, x_z, x_n), (dx_r, dx_z, dx_n) = xw.chunk(3, dim=-1), dxw.chunk(3, dim=-1)
    (h_r, h_z, h_n), (dh_r, dh_z, dh_n) = hw.chunk(3, dim=-1), dhw.chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    dr, dz = r * (1 - r) * (dx_r + dh_r), z * (1 - z) * (dx_z + dh_z)
    pre = x_n + r * h_n
    n = act(pre)
    dn = slope(pre, n) * (dx_n + dr * h_n + r * dh_n)
    return ((1 - z) * n + z * h,), ((1 - z) * dn + z * dh + dz * (h - n),)


@dataclass(frozen=True)
class Cell:
    tail: Callable[..., tuple[Tensor, ...]]
    tail_jvp: Callable[..., tuple[tuple[Tensor, ...], tuple[Tensor, ...]]]
    gates: int  # blocks stacked in W_ih and W_hh, in torch's order
    states: tuple[str, ...]  # names of the per-layer state tensors, as they appear in S_t

    def step(self, xw: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor | None,
             act: Activation) -> tuple[Tensor, ...]:
        return self.tail(xw, recurrent(state[0], w_hh, b_hh), state, act)


CELLS: dict[str, Cell] = {
    "rnn": Cell(rnn_tail, rnn_tail_jvp, gates=1, states=("h",)),
    "lstm": Cell(lstm_tail, lstm_tail_jvp, gates=4, states=("h", "c")),  # gates i, f, g, o
    "gru": Cell(gru_tail, gru_tail_jvp, gates=3, states=("h",)),  # gates r, z, n
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
        return (state,) if self.num_parts == 1 else state.split(list(self.block_sizes), dim=-1)

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

    def step_jvp(self, state: Tensor, drive: Tensor, tangent: Tensor) -> tuple[Tensor, Tensor]:
        """(step(state, drive), J tangent) with J = dS_t/dS_{t-1}: the matmuls applied to the tangent,
        then each cell's written-out tail JVP. No graph is built; one more matmul per layer and step.
        tangent is (batch, state) or (k, batch, state): k tangents at once (a Lyapunov spectrum's)."""
        per_layer = len(self.state_names)
        previous, pushed_in = self.split(state), self.split(tangent)
        new: list[Tensor] = []
        pushed: list[Tensor] = []
        drive_tangent = torch.zeros_like(drive)  # the inputs do not move
        for layer in range(self.num_layers):
            w_hh, b_hh = getattr(self, f"weight_hh_l{layer}"), getattr(self, f"bias_hh_l{layer}")
            if layer > 0:  # the layer below's fresh h is this layer's input
                w_ih = getattr(self, f"weight_ih_l{layer}")
                drive = F.linear(new[-per_layer], w_ih, getattr(self, f"bias_ih_l{layer}"))
                drive_tangent = pushed[-per_layer] @ w_ih.t()
            blocks = previous[layer * per_layer:(layer + 1) * per_layer]
            block_tangents = pushed_in[layer * per_layer:(layer + 1) * per_layer]
            hw, hw_tangent = recurrent(blocks[0], w_hh, b_hh), block_tangents[0] @ w_hh.t()
            out, out_tangent = self.cell.tail_jvp(drive, hw, blocks, self.act, SLOPES[self.activation],
                                                  drive_tangent, hw_tangent, block_tangents)
            new.extend(out)
            pushed.extend(out_tangent)
        join = (lambda parts: parts[0]) if len(new) == 1 else (lambda parts: torch.cat(parts, dim=-1))
        return join(new), join(pushed)


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
