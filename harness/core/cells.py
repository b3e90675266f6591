"""User cells: any torch module whose forward(x_t, state) returns the new state, stacked in layers
(CellNet), speaking the network protocol of harness.core.protocol like the built-in cells.

A user cell provides forward(x_t, state) -> new state (a tensor, or a tuple of them for several state
blocks, e.g. an LSTMCell's (h, c)), an int attribute hidden_size or a method initial_state(batch_size),
and optionally state_names (its blocks' names) and recurrent_weights (the parameters `scale`
multiplies). It initialises itself; theory finds its linear rate from its step's own Jacobian.

This module also keeps the names the built-in cells had here: the protocol's StackedNet, ACTIVATIONS
and SLOPES (harness.core.protocol), and torch's equations, RecurrentNet and CELLS
(harness.core.zoo.classic).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from harness.core.errors import ModelError
from harness.core.init import initialise_user_cell
from harness.core.protocol import ACTIVATIONS, SLOPES, Activation, StackedNet, log_spectral_radius
from harness.core.zoo.classic import CELLS, Cell, RecurrentNet
from harness.core.zoo.steps import recurrent

__all__ = [
    "ACTIVATIONS",
    "SLOPES",
    "Activation",
    "CELLS",
    "Cell",
    "CellNet",
    "MAX_JACOBIAN_STATE",
    "RecurrentNet",
    "StackedNet",
    "affine_step_rate",
    "as_tuple",
    "cell_initial_state",
    "check_state_kinds",
    "recurrent",
]


def as_tuple(state: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (state,) if isinstance(state, Tensor) else tuple(state)


def cell_initial_state(cell: nn.Module, batch_size: int) -> tuple[Tensor, ...]:
    """A user cell's h_0: its own initial_state(batch_size) if it has one, else zeros; in the dtype and on
    the device of the cell's parameters (a cell's `torch.zeros(batch_size, n)` is float32 on the CPU
    whatever the cell was cast to, e.g. the float64 copy the autograd recorder runs)."""
    p = next(cell.parameters(), None)
    like = {"dtype": p.dtype, "device": p.device} if p is not None else {}
    if hasattr(cell, "initial_state"):
        return tuple(s.to(**like) if s.is_floating_point() else s for s in as_tuple(cell.initial_state(batch_size)))
    if not isinstance(getattr(cell, "hidden_size", None), int):
        raise ModelError(
            f"{type(cell).__name__}: a user cell needs an int attribute hidden_size, or a method "
            "initial_state(batch_size) returning its zero state"
        )
    zeros = torch.zeros(batch_size, cell.hidden_size, **like)
    return (zeros, zeros.clone()) if isinstance(cell, nn.LSTMCell) else (zeros,)


def check_state_kinds(name: str, state: Sequence[Tensor]) -> None:
    """ModelError, in one line, for a state holding anything but real floating-point tensors: the harness
    joins a cell's state into one such tensor and records the gradient of each block."""
    kinds = sorted({str(s.dtype) for s in state if not s.is_floating_point()})
    if kinds:
        raise ModelError(
            f"{name}: its state holds {', '.join(kinds)} tensors; expected real floating-point state tensors only "
            "(the harness joins them into one and records each one's gradient; a flag or a counter belongs outside)"
        )


class CellNet(StackedNet):
    """User cells stacked in layers (see the module docstring for what a cell provides)."""

    def __init__(self, layers: Sequence[nn.Module], input_size: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.num_layers, self.input_size = len(layers), input_size
        first = layers[0]
        self.cell_name = type(first).__name__
        initial = [cell_initial_state(cell, 1) for cell in layers]
        check_state_kinds(self.cell_name, [s for layer in initial for s in layer])
        shapes = [[tuple(s.shape) for s in layer] for layer in initial]
        if any(len(shape) != 2 or shape[0] != 1 for layer in shapes for shape in layer):
            raise ModelError(
                f"{self.cell_name}: initial_state(batch_size) must give (batch_size, width) tensors, "
                f"got shapes {shapes[0]}"
            )
        self.block_sizes = tuple(shape[1] for layer in shapes for shape in layer)
        per_layer = len(shapes[0])
        self.hidden_size = shapes[0][0][1]
        self.state_names = tuple(getattr(first, "state_names", None) or ("h", *(f"s{i}" for i in range(1, per_layer))))
        if len(self.state_names) != per_layer or any(len(layer) != per_layer for layer in shapes):
            raise ModelError(
                f"{self.cell_name}: state_names {self.state_names} do not match its {per_layer} "
                "state tensors in every layer"
            )

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
            previous = blocks[layer * per_layer : (layer + 1) * per_layer]
            out = as_tuple(cell(x, previous[0] if per_layer == 1 else previous))
            if [o.shape for o in out] != [p.shape for p in previous]:
                raise ModelError(
                    f"{self.cell_name}.forward(x_t, state) returned shapes {[tuple(o.shape) for o in out]}; "
                    f"expected the state's own {[tuple(p.shape) for p in previous]}"
                )
            check_state_kinds(self.cell_name, out)
            new.extend(out)
            x = out[0]
        return self.join(new)

    def initialise_weights(self, init: str, scale: float, generator: torch.Generator) -> None:
        """The cell initialised itself; `scale` multiplies its recurrent_weights (harness.core.init)."""
        initialise_user_cell(self, init, scale)

    def linear_rate(self, inputs: Tensor | None = None, generator: torch.Generator | None = None) -> float | str:
        """The same as a built-in linear cell's, from the step's own Jacobian where the step is affine in
        its state with a Jacobian that does not depend on the input (affine_step_rate: it draws a random
        state from `generator`); else the reason, for theory_note."""
        return affine_step_rate(self, inputs, generator)


MAX_JACOBIAN_STATE = 1024  # a dense Jacobian of the step beyond this many state entries is not worth it


def affine_step_rate(model: StackedNet, inputs: Tensor, generator: torch.Generator) -> float | str:
    """ln rho(J) for a step that is affine in its state with a constant Jacobian J (the same at the origin
    and at a random state, and for two inputs); else why not, as theory_note says it."""
    size = sum(model.block_sizes)
    if size > MAX_JACOBIAN_STATE:
        return f"linear: needs a step Jacobian of at most {MAX_JACOBIAN_STATE} state entries, this one has {size}"
    x = inputs[0:1][0, :1].detach()

    def jacobian_at(state: Tensor, drive: Tensor) -> Tensor:
        with torch.enable_grad():
            return torch.autograd.functional.jacobian(lambda s: model.step(s, drive), state).reshape(size, size)

    origin = jacobian_at(torch.zeros(1, size, dtype=x.dtype, device=x.device), x)
    random_state = torch.randn(1, size, generator=generator, dtype=torch.float64).to(x)
    tolerance = 1e-6 * max(origin.abs().max().item(), 1e-30)
    if not torch.allclose(origin, jacobian_at(random_state, x), rtol=0, atol=tolerance):
        return "linear: needs a step affine in its state (its Jacobian changes with the state)"
    if not torch.allclose(
        origin, jacobian_at(torch.zeros_like(random_state), torch.zeros_like(x)), rtol=0, atol=tolerance
    ):
        return (
            "linear: the step is affine in its state but its Jacobian depends on the input "
            "(an input-gated cell: no one constant rate; see theory_lyapunov)"
        )
    return log_spectral_radius(origin)
