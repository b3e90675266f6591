"""What indrnn and minimal share: one real h of hidden_size per layer (HiddenNet). Declares no cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.protocol import ACTIVATIONS, StackedNet


class HiddenNet(StackedNet):
    """One real h of hidden_size per layer, an activation, an input projection x W_ih^T + b_ih (layer
    l > 0 reading the h of the layer below), and the parameters of each layer registered in that
    order: weight_ih, bias_ih, then the cell's own `recurrent` ones."""

    def __init__(
        self,
        cell_name: str,
        activation: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        recurrent: dict[str, tuple[int, ...]],
    ):
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
