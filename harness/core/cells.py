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
# the tail's Jacobian is elementwise, written out in two parts. `coefficients` turns what the tail
# computed on its way (its `internals`: activated gates, pre-activations) into the Jacobian's
# elementwise factors, for every step of a batch at once or one step at a time; `push` applies them
# to the tangents of xw, hw and the state (dxw None: the inputs do not move), a few products per step.
# `pull` is push's transpose, for the backward: from the cotangent of the new state it returns the
# cotangents of hw and of xw, and of the old state where it enters elementwise (None where only
# through hw), so that dL/dS_{t-1} costs the same few products and the transposed matmuls
# (RecurrentNet.pull_cotangent). `slope` is the activation's derivative. b_hh is None for a network
# without biases (torch's bias=False).

Internals = tuple[Tensor, ...]


def recurrent(h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """h W_hh^T + b_hh, fused into one addmm where there is a bias."""
    return h @ w_hh.t() if b_hh is None else torch.addmm(b_hh, h, w_hh.t())


def plus(dxw: Tensor | None, dhw: Tensor) -> Tensor:
    return dhw if dxw is None else dxw + dhw


def rnn_tail(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation) -> tuple[tuple[Tensor, ...], Internals]:
    pre = xw + hw
    h = act(pre)
    return (h,), (pre, h)


def rnn_coefficients(internals: Internals, slope: Callable) -> tuple[Tensor, ...]:
    return (slope(*internals),)


def rnn_push(coefficients: tuple[Tensor, ...], dxw: Tensor | None, dhw: Tensor, dstate: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (coefficients[0] * plus(dxw, dhw),)


def rnn_pull(coefficients: tuple[Tensor, ...], dstate: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple]:
    # dxw = dhw = act'(pre) dh'; the old h enters only through hw
    dpre = coefficients[0] * dstate[0]
    return dpre, dpre, (None,)


def lstm_tail(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation) -> tuple[tuple[Tensor, ...], Internals]:
    _, c = state
    i, f, g, o = (xw + hw).chunk(4, dim=-1)
    si, sf, so, ag = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), act(g)
    c_new = sf * c + si * ag
    ac = act(c_new)
    return (so * ac, c_new), (si, sf, so, g, ag, c, c_new, ac)


def lstm_coefficients(internals: Internals, slope: Callable) -> tuple[Tensor, ...]:
    """(the factors of dz = dxw + dhw's four blocks in dc' (i, f, g) and dh' (o), f, o act'(c'))."""
    si, sf, so, g, ag, c, c_new, ac = internals
    gates = torch.cat([si * (1 - si) * ag, sf * (1 - sf) * c, si * slope(g, ag), so * (1 - so) * ac], dim=-1)
    return gates, sf, so * slope(c_new, ac)


def lstm_push(coefficients: tuple[Tensor, ...], dxw: Tensor | None, dhw: Tensor, dstate: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    # dc' = f dc + i(1-i) act(g) di + f(1-f) c df + i act'(g) dg;  dh' = o(1-o) act(c') do + o act'(c') dc'
    gates, f, out = coefficients
    d_i, d_f, d_g, d_o = (gates * plus(dxw, dhw)).chunk(4, dim=-1)
    dc_new = torch.addcmul(d_i.add(d_f).add_(d_g), f, dstate[1])
    return torch.addcmul(d_o, out, dc_new), dc_new


def lstm_pull(coefficients: tuple[Tensor, ...], dstate: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple]:
    # lstm_push transposed: what reaches c' is dc' + o act'(c') dh'; the i, f, g blocks of dz take it
    # through their factors, the o block takes dh'; the old c gets f times it, the old h only via hw
    gates, f, out = coefficients
    dh, dc = dstate
    dc_new = torch.addcmul(dc, out, dh)
    dz = gates * torch.cat([dc_new, dc_new, dc_new, dh], dim=-1)
    return dz, dz, (None, f * dc_new)


def gru_tail(xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation) -> tuple[tuple[Tensor, ...], Internals]:
    (h,) = state
    x_r, x_z, x_n = xw.chunk(3, dim=-1)
    h_r, h_z, h_n = hw.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    pre = x_n + r * h_n  # torch.nn.GRU puts b_hn inside the reset gate's product
    n = act(pre)
    return ((1 - z) * n + z * h,), (r, z, pre, n, h_n, h)


def gru_coefficients(internals: Internals, slope: Callable) -> tuple[Tensor, ...]:
    """(the factors of dhw's three blocks (r, z, n) in dh', those of dxw's, z)."""
    r, z, pre, n, h_n, h = internals
    dn = (1 - z) * slope(pre, n)  # dh' per d(pre)
    k_r, k_z = dn * h_n * r * (1 - r), (h - n) * z * (1 - z)
    return torch.cat([k_r, k_z, dn * r], dim=-1), torch.cat([k_r, k_z, dn], dim=-1), z


def gru_push(coefficients: tuple[Tensor, ...], dxw: Tensor | None, dhw: Tensor, dstate: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    # dh' = (1-z) act'(pre) (dx_n + r dh_n + h_n dr) + (h - n) dz + z dh,  dr = r(1-r)(dx_r + dh_r), dz likewise
    of_hw, of_xw, z = coefficients
    d_r, d_z, d_n = (of_hw * dhw if dxw is None else torch.addcmul(of_hw * dhw, of_xw, dxw)).chunk(3, dim=-1)
    return (torch.addcmul(d_r.add(d_z).add_(d_n), z, dstate[0]),)


def gru_pull(coefficients: tuple[Tensor, ...], dstate: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple]:
    # gru_push transposed: each of the three blocks of dhw and dxw takes dh' through its factor; the
    # old h gets z dh' directly, the rest through hw
    of_hw, of_xw, z = coefficients
    (dh,) = dstate
    spread = torch.cat([dh, dh, dh], dim=-1)
    return of_hw * spread, of_xw * spread, (z * dh,)


@dataclass(frozen=True)
class Cell:
    tail: Callable[..., tuple[tuple[Tensor, ...], Internals]]
    coefficients: Callable[[Internals, Callable], tuple[Tensor, ...]]
    push: Callable[..., tuple[Tensor, ...]]
    pull: Callable[..., tuple[Tensor, Tensor, tuple]]
    gates: int  # blocks stacked in W_ih and W_hh, in torch's order
    states: tuple[str, ...]  # names of the per-layer state tensors, as they appear in S_t


CELLS: dict[str, Cell] = {
    "rnn": Cell(rnn_tail, rnn_coefficients, rnn_push, rnn_pull, gates=1, states=("h",)),
    "lstm": Cell(lstm_tail, lstm_coefficients, lstm_push, lstm_pull, gates=4, states=("h", "c")),  # gates i, f, g, o
    "gru": Cell(gru_tail, gru_coefficients, gru_push, gru_pull, gates=3, states=("h",)),  # gates r, z, n
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
        return self.linearised_step(state, drive)[0]

    def linearised_step(self, state: Tensor, drive: Tensor) -> tuple[Tensor, list]:
        """(S_t, what each layer's tail computed on the way, for coefficients): the stack's step, each
        layer reading the fresh h of the layer below."""
        per_layer = len(self.state_names)
        previous = self.split(state)
        new: list[Tensor] = []
        internals = []
        for layer in range(self.num_layers):
            if layer > 0:  # the layer below's fresh h is this layer's input
                drive = F.linear(new[-per_layer], getattr(self, f"weight_ih_l{layer}"),
                                 getattr(self, f"bias_ih_l{layer}"))
            blocks = previous[layer * per_layer:(layer + 1) * per_layer]
            hw = recurrent(blocks[0], getattr(self, f"weight_hh_l{layer}"), getattr(self, f"bias_hh_l{layer}"))
            out, layer_internals = self.cell.tail(drive, hw, blocks, self.act)
            internals.append(layer_internals)
            new.extend(out)
        return self.join(new), internals

    def coefficients(self, internals: list) -> list:
        """Each layer's Jacobian coefficients for push_tangent, from linearised_step's internals: of one
        step, or of many at once with the steps stacked in front (then push_tangent takes one step's)."""
        slope = SLOPES[self.activation]
        return [self.cell.coefficients(layer_internals, slope) for layer_internals in internals]

    def push_tangent(self, coefficients: list, tangent: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """J_t tangent, block by block (split's blocks of a (batch, state) or (k, batch, state) tangent:
        k at once, a Lyapunov spectrum's), from one step's coefficients: one matmul per layer (two
        above the first, whose input moves with the layer below) and the cell's few elementwise
        products. Blocks in and out, so that a tangent carried over many steps is never split and
        joined on the way."""
        per_layer = len(self.state_names)
        pushed: list[Tensor] = []
        drive_tangent = None  # the inputs do not move
        for layer, layer_coefficients in enumerate(coefficients):
            if layer > 0:
                drive_tangent = pushed[-per_layer] @ getattr(self, f"weight_ih_l{layer}").t()
            blocks = tangent[layer * per_layer:(layer + 1) * per_layer]
            pushed.extend(self.cell.push(layer_coefficients, drive_tangent,
                                         blocks[0] @ getattr(self, f"weight_hh_l{layer}").t(), blocks))
        return tuple(pushed)

    def pull_cotangent(self, coefficients: list, cotangent: Tensor) -> Tensor:
        """cotangent J_t (dL/dS_{t-1} from dL/dS_t, (batch, state)), from one step's coefficients:
        push_tangent transposed, top layer first, since a layer's input is the fresh h of the one below."""
        per_layer = len(self.state_names)
        pulled_in = list(self.split(cotangent))  # the new state's blocks; the layer inputs' are added in
        pulled: list[tuple[Tensor, ...]] = []  # each layer's old-state blocks, top layer first
        for layer in reversed(range(self.num_layers)):
            blocks = pulled_in[layer * per_layer:(layer + 1) * per_layer]
            dhw, dxw, dstate = self.cell.pull(coefficients[layer], tuple(blocks))
            w_hh = getattr(self, f"weight_hh_l{layer}")
            first = dhw @ w_hh if dstate[0] is None else torch.addmm(dstate[0], dhw, w_hh)
            pulled.append((first, *dstate[1:]))
            if layer > 0:  # this layer's input is the h below, fresh at this step
                below = (layer - 1) * per_layer
                pulled_in[below] = torch.addmm(pulled_in[below], dxw, getattr(self, f"weight_ih_l{layer}"))
        return self.join([block for layer in reversed(pulled) for block in layer])

    def step_coefficients(self, steps: list[list]) -> list[list]:
        """Each step's coefficients (for push_tangent and pull_cotangent) from many steps' internals
        (linearised_step's), computed all at once: a few large elementwise ops instead of many small."""
        stacked = [tuple(torch.stack(parts) for parts in zip(*layer)) for layer in zip(*steps)]
        # per layer, each step's tuple of coefficients; then regrouped step by step
        per_layer = [list(zip(*(c.unbind(0) for c in layer))) for layer in self.coefficients(stacked)]
        return [list(step) for step in zip(*per_layer)]

    def step_jvp(self, state: Tensor, drive: Tensor, tangent: Tensor) -> tuple[Tensor, Tensor]:
        """(step(state, drive), J tangent) with J = dS_t/dS_{t-1}, no graph beyond the caller's own.
        tangent is (batch, state) or (k, batch, state)."""
        new, internals = self.linearised_step(state, drive)
        return new, self.join(self.push_tangent(self.coefficients(internals), self.split(tangent)))


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
        return self.join(new)
