"""A user cell for the harness: a leaky-integrator RNN, defined outside the package.

    h_t = (1 - leak) h_{t-1} + leak * act(W_in x_t + W_hh h_{t-1} + b)

Run it from the command line through a config that names it (see examples/conf/cell/leaky.yaml):

    cd examples && python -m harness -m cell=leaky scale=0.5,1,2 seq_len=200
    cd examples && python -m harness cell._target_=leaky_cell.LeakyCell     # without a YAML file

or from Python:

    python examples/leaky_cell.py
"""

import torch
from torch import nn


class LeakyCell(nn.Module):
    """forward(x_t, h) -> h: the whole protocol a user cell needs (harness.core.cells)."""

    recurrent_weights = ["weight_hh"]  # what `scale` multiplies

    def __init__(self, input_size: int, hidden_size: int, leak: float = 0.5, activation: str = "tanh"):
        super().__init__()
        self.hidden_size, self.leak = hidden_size, leak
        self.act = {"tanh": torch.tanh, "identity": lambda u: u}[activation]
        self.weight_in = nn.Parameter(torch.randn(hidden_size, input_size) / input_size**0.5)
        self.weight_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) / hidden_size**0.5)
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # (batch, input), (batch, hidden)
        return (1 - self.leak) * h + self.leak * self.act(x @ self.weight_in.T + h @ self.weight_hh.T + self.bias)


if __name__ == "__main__":
    import harness

    torch.manual_seed(0)
    profile = harness.record(LeakyCell(8, 32, leak=0.2), torch.randn(300, 16, 8))
    print(profile.fit())
