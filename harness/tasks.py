"""Tasks: input sequences and a loss on the network's states.

probe   x_t ~ N(0, 1) i.i.d., h_0 = 0, loss = sum over the batch of r . h_T with r a fixed random unit
        vector. The backward pass is then linear in dL/dh_T, so ||dL/dh_{T-k}|| / ||dL/dh_T|| is the
        pure propagation gain over k steps, and ||dL/dh_T|| = 1 for the rnn and gru.
        The batch is summed, not averaged, so each sample's gradient is that of its own loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass
class TaskBatch:
    inputs: Tensor  # (seq_len, batch, input_size)
    loss: Callable[[Tensor], Tensor]  # top-layer h_T (batch, hidden) -> scalar
    # The exact recorder rescales the carried gradient; that is only right when the loss reads
    # nothing but the final state, which tasks declare here.
    final_state_only: bool = True

    def to(self, device: str | torch.device, dtype: torch.dtype) -> "TaskBatch":
        self.inputs = self.inputs.to(device=device, dtype=dtype)
        return self


def probe(seq_len: int, batch_size: int, input_size: int, hidden_size: int,
          generator: torch.Generator) -> TaskBatch:
    inputs = torch.randn(seq_len, batch_size, input_size, generator=generator, dtype=torch.float64)
    readout = torch.randn(hidden_size, generator=generator, dtype=torch.float64)
    readout /= readout.norm()

    def loss(h_final: Tensor) -> Tensor:
        return (h_final @ readout.to(h_final)).sum()

    return TaskBatch(inputs, loss)


TASKS: dict[str, Callable[..., TaskBatch]] = {"probe": probe}
