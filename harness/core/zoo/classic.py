"""rnn, lstm and gru: torch's equations, written out as explicit step functions (RecurrentNet).

With activation=tanh the cells compute exactly what torch.nn.RNN / LSTM / GRU compute, and the
parameters carry torch's names (weight_ih_l0, ...), so state dicts load across in both directions.
`scale` multiplies every W_hh (all gate blocks) after the init scheme (harness.core.init). Each cell's
step functions (tail, coefficients, push, pull) are in harness.core.zoo.steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.errors import NotApplicable
from harness.core.init import INITS
from harness.core.meanfield import (
    Biases,
    Units,
    chrono_biases,
    gated_mean_field,
    gated_mean_field_curve,
    gru_units,
    lstm_units,
    mean_field_critical_scale,
    mean_field_curve,
    mean_field_rate,
    unit_classes,
)
from harness.core.protocol import (
    ACTIVATIONS,
    MEAN_FIELD_NOTE,
    SLOPES,
    StackedNet,
    log_spectral_radius,
)
from harness.core.zoo.steps import (
    Internals,
    gru_coefficients,
    gru_pull,
    gru_push,
    gru_tail,
    lstm_coefficients,
    lstm_pull,
    lstm_push,
    lstm_tail,
    recurrent,
    rnn_coefficients,
    rnn_pull,
    rnn_push,
    rnn_tail,
)


@dataclass(frozen=True)
class Cell:
    tail: Callable[..., tuple[tuple[Tensor, ...], Internals]]
    coefficients: Callable[[Internals, Callable], tuple[Tensor, ...]]
    push: Callable[..., tuple[Tensor, ...]]
    pull: Callable[..., tuple[Tensor, Tensor, tuple]]
    gate_names: tuple[str, ...]  # blocks stacked in W_ih and W_hh, in torch's order
    states: tuple[str, ...]  # names of the per-layer state tensors, as they appear in S_t
    coefficients_per_unit: int  # values its coefficients hold per hidden unit and sample (the memory estimate)
    vanilla: bool = False  # act(x W_ih^T + h W_hh^T + b): linear with activation=identity; mean field's cell
    forget: int | None = None  # the forget gate's block (forget_bias adds to its bias)
    keep: int | None = None  # the block of the gate that keeps the old state (chrono sets its bias b) ...
    opposite: int | None = None  # ... and of the one chrono sets to -b

    @property
    def gates(self) -> int:
        """Blocks stacked in W_ih and W_hh."""
        return len(self.gate_names)


CELLS: dict[str, Cell] = {
    "rnn": Cell(rnn_tail, rnn_coefficients, rnn_push, rnn_pull, ("h",), ("h",), 1, vanilla=True),
    "lstm": Cell(
        lstm_tail,
        lstm_coefficients,
        lstm_push,
        lstm_pull,
        ("i", "f", "g", "o"),
        ("h", "c"),
        6,  # the four gates' factors, f, o act'(c')
        forget=1,
        keep=1,
        opposite=0,
    ),
    "gru": Cell(gru_tail, gru_coefficients, gru_push, gru_pull, ("r", "z", "n"), ("h",), 7, keep=1),  # z keeps h
}


class RecurrentNet(StackedNet):
    """A stack of `num_layers` rnn, lstm or gru cells, unrolled one explicit step at a time."""

    analytic_jacobian = True

    def __init__(
        self, cell: str, activation: str, input_size: int, hidden_size: int, num_layers: int, bias: bool = True
    ):
        super().__init__()
        self.cell_name, self.cell = cell, CELLS[cell]
        self.activation, self.act = activation, ACTIVATIONS[activation]
        self.input_size, self.hidden_size, self.num_layers, self.bias = input_size, hidden_size, num_layers, bias
        self.state_names, self.gate_names = self.cell.states, self.cell.gate_names
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

    def step_values(self) -> tuple[int, int]:
        """(values of one step's coefficients, of its input drive) per sample: what the written-out
        recorder keeps per step, counted from the sizes alone (the memory estimate runs nothing)."""
        return self.num_layers * self.hidden_size * self.cell.coefficients_per_unit, self.cell.gates * self.hidden_size

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
                drive = F.linear(
                    new[-per_layer], getattr(self, f"weight_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}")
                )
            blocks = previous[layer * per_layer : (layer + 1) * per_layer]
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
            blocks = tangent[layer * per_layer : (layer + 1) * per_layer]
            pushed.extend(
                self.cell.push(
                    layer_coefficients, drive_tangent, blocks[0] @ getattr(self, f"weight_hh_l{layer}").t(), blocks
                )
            )
        return tuple(pushed)

    def pull_cotangent(self, coefficients: list, cotangent: Tensor) -> Tensor:
        """cotangent J_t (dL/dS_{t-1} from dL/dS_t, (batch, state)), from one step's coefficients:
        push_tangent transposed, top layer first, since a layer's input is the fresh h of the one below."""
        per_layer = len(self.state_names)
        pulled_in = list(self.split(cotangent))  # the new state's blocks; the layer inputs' are added in
        pulled: list[tuple[Tensor, ...]] = []  # each layer's old-state blocks, top layer first
        for layer in reversed(range(self.num_layers)):
            blocks = pulled_in[layer * per_layer : (layer + 1) * per_layer]
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

    def layer_tail(self, layer: int, drive: Tensor, hw: Tensor, blocks: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """One layer's new state blocks from its input projection and recurrent pre-activation hw."""
        return self.cell.tail(drive, hw, blocks, self.act)[0]

    # -- the protocol (harness.core.protocol) ----------------------------------------------------

    @torch.no_grad()
    def initialise_weights(self, init: str, scale: float, generator: torch.Generator) -> None:
        INITS[init](self, generator)
        for w in self.layer_params("weight_hh"):
            w.mul_(scale)

    def _gate_biases(self, what: str) -> None:
        if not self.bias:
            raise NotApplicable(f"{what} sets gate biases; this network has none (bias=False)")

    @torch.no_grad()
    def add_forget_bias(self, value: float) -> None:
        """Add `value` to the forget gate's b_hh block, so the gate's total bias b_ih + b_hh moves by that
        much (Jozefowicz et al. 2015 use 1)."""
        if self.cell.forget is None:
            return super().add_forget_bias(value)
        self._gate_biases("forget_bias")
        for b in self.layer_params("bias_hh"):
            b.chunk(self.cell.gates, dim=0)[self.cell.forget].add_(value)

    @torch.no_grad()
    def chrono(self, tmax: int, generator: torch.Generator) -> None:
        """The gate that keeps the old state (the lstm's forget gate f, the gru's update gate z:
        h' = (1 - z) n + z h) gets the total bias b = log U[1, tmax - 1], so memories last between 1 and
        tmax steps; the lstm's input gate gets -b."""
        if self.cell.keep is None:
            return super().chrono(tmax, generator)
        self._gate_biases("chrono init")
        gates, keep, opposite = self.cell.gates, self.cell.keep, self.cell.opposite
        for b_ih, b_hh in zip(self.layer_params("bias_ih"), self.layer_params("bias_hh")):
            bias = torch.log(1 + torch.rand(self.hidden_size, generator=generator, dtype=b_hh.dtype) * (tmax - 2))
            for b in (b_ih, b_hh):
                b.chunk(gates, dim=0)[keep].zero_()
            b_hh.chunk(gates, dim=0)[keep].copy_(bias)
            if opposite is not None:
                for b in (b_ih, b_hh):
                    b.chunk(gates, dim=0)[opposite].zero_()
                b_hh.chunk(gates, dim=0)[opposite].copy_(-bias)

    @property
    def dense_eigenvalues(self) -> bool:
        return self.cell.vanilla and self.num_layers == 1 and self.activation == "identity"

    def linear_rate(self, inputs: Tensor | None = None, generator: torch.Generator | None = None) -> float | str:
        """A one-layer rnn with activation=identity multiplies the gradient by W_hh^T every step: ln of
        the spectral radius of the (scaled) W_hh."""
        if not self.dense_eigenvalues:
            return "linear: needs a one-layer rnn with activation=identity"
        return log_spectral_radius(self.weight_hh_l0)

    def mean_field(self, init: str, scale: float, drive_var: float) -> tuple[float, float] | str:
        """A one-layer rnn with gaussian or orthogonal W_hh (harness.core.meanfield); a one-layer gru or
        lstm with gaussian W_hh and tanh, at the gate biases it holds (forget_bias, chrono), from its drive
        variance less their squares (harness.core.meanfield's gated cells)."""
        if self.cell.vanilla:
            if not (self.num_layers == 1 and init in ("gaussian", "orthogonal")):
                return MEAN_FIELD_NOTE
            return (
                mean_field_rate(self.activation, scale, drive_var),
                mean_field_critical_scale(self.activation, drive_var),
            )
        reason = self._gated_mean_field_reason(init, drive_var) or self._candidate_bias_reason()
        if reason:
            return reason
        units, input_var, biases = self.gated_field(drive_var)
        return gated_mean_field(units, self.activation, scale, input_var, biases)

    def mean_field_curve(
        self,
        init: str,
        scales: np.ndarray,
        drive_var: float,
        forget_bias: float = 0.0,
        chrono_tmax: int | None = None,
    ) -> np.ndarray | str:
        """The mean-field rate at many scales (the phase figure's dense curve), for a run's settings and
        the input_drive_var it recorded; reads no parameters (the gate biases the settings give in
        expectation: GatedField.expected). Else why not, as mean_field says."""
        if self.cell.vanilla:
            if not (self.num_layers == 1 and init in ("gaussian", "orthogonal")):
                return MEAN_FIELD_NOTE
            return mean_field_curve(self.activation, np.asarray(scales, dtype=float), drive_var)
        reason = self._gated_mean_field_reason(init, drive_var)
        if reason:
            return reason
        field = GATED[self.cell_name]
        biases, square_mean = field.expected(forget_bias, chrono_tmax)
        return gated_mean_field_curve(field.units, self.activation, scales, drive_var - square_mean, biases)

    def _gated_mean_field_reason(self, init: str, drive_var: float) -> str:
        """Why the gated mean field does not apply to this gru or lstm ("" where it does)."""
        name = self.cell_name
        if self.num_layers != 1:
            return f"mean field: the {name}'s is derived for one layer"
        if init != "gaussian":
            return f"mean field: the {name}'s is derived for init=gaussian (Gaussian W_hh), not init={init}"
        if self.activation != "tanh":  # the candidate (and the lstm's cell output) of both papers
            return f"mean field: the {name}'s derivation covers activation=tanh, not {self.activation}"
        if not math.isfinite(drive_var):
            return f"mean field: the {name}'s needs the input drive variance"
        return ""

    def _candidate_bias_reason(self) -> str:
        """init=gaussian zeroes the candidate's bias (forget_bias and chrono move gate biases only); the
        derivation takes it 0."""
        if self.bias:
            for b in (self.bias_ih_l0, self.bias_hh_l0):
                if b.detach().chunk(self.cell.gates)[GATED[self.cell_name].candidate].abs().max().item() > 0:
                    return f"mean field: the {self.cell_name}'s is derived with its candidate's bias 0 (init=gaussian)"
        return ""

    def gated_field(self, drive_var: float) -> tuple[Units, float, Biases]:
        """What the gated mean field takes of this gru or lstm: its wide-limit step, the input's own drive
        variance (drive_var less the biases' squares) and its units' gate-bias classes."""
        field = GATED[self.cell_name]
        per_unit, square_mean = self._gate_biases_per_unit()
        return field.units, drive_var - square_mean, unit_classes(per_unit, field.keep)

    def _gate_biases_per_unit(self) -> tuple[np.ndarray, float]:
        """(units x gates: each unit's total gate biases b_ih + b_hh in GatedField.gates' order; the mean
        over W_ih's rows of the total bias squared, which input_drive_var holds beyond the input's own)."""
        rows = self.cell.gates * self.hidden_size
        total = (
            (self.bias_ih_l0 + self.bias_hh_l0).detach().double().cpu()
            if self.bias
            else torch.zeros(rows, dtype=torch.float64)
        )
        blocks = total.chunk(self.cell.gates)
        per_unit = torch.stack([blocks[index] for index in GATED[self.cell_name].gates], dim=1).numpy()
        return per_unit, float((total**2).mean())


@dataclass(frozen=True)
class GatedField:
    """What the gated mean field (harness.core.meanfield) needs of the gru and lstm."""

    units: Units  # the wide-limit step
    gates: tuple[int, ...]  # the gate blocks whose biases it takes, in its Biases order
    keep: int  # ... of which the one that keeps the state (classes of units are sorted by it)
    candidate: int  # the candidate's block (its bias must be 0)
    expected: Callable[[float, int | None], tuple[Biases, float]]  # (forget_bias, chrono_tmax) -> classes, E[b^2]


def _lstm_expected(forget_bias: float, chrono_tmax: int | None) -> tuple[Biases, float]:
    """forget_bias adds to f; chrono (which overrides it) gives f b and i -b per unit."""
    if chrono_tmax:
        values, square = chrono_biases(chrono_tmax)
        return tuple((1 / len(values), (-float(b), float(b), 0.0)) for b in values), 2 * square / 4
    return ((1.0, (0.0, float(forget_bias), 0.0)),), forget_bias**2 / 4


def _gru_expected(forget_bias: float, chrono_tmax: int | None) -> tuple[Biases, float]:
    """chrono gives z b per unit."""
    if chrono_tmax:
        values, square = chrono_biases(chrono_tmax)
        return tuple((1 / len(values), (0.0, float(b))) for b in values), square / 3
    return ((1.0, (0.0, 0.0)),), 0.0


GATED = {  # lstm blocks (i, f, g, o): biases (i, f, o); gru blocks (r, z, n): biases (r, z)
    "lstm": GatedField(lstm_units, gates=(0, 1, 3), keep=1, candidate=2, expected=_lstm_expected),
    "gru": GatedField(gru_units, gates=(0, 1), keep=1, candidate=2, expected=_gru_expected),
}


def build(name: str, activation: str, input_size: int, hidden_size: int, num_layers: int) -> RecurrentNet:
    """rnn, lstm or gru (harness.core.networks' rows)."""
    return RecurrentNet(name, activation, input_size, hidden_size, num_layers)
