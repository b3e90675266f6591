"""A user cell for tests/test_sweep.py that crashes its process in native fashion: built with
hidden_size == crash_at_hidden, its first step sends SIGSEGV to its own process, as a bug in a C
extension would; with hidden_size == exit_at_hidden, it ends its process with status 0 (os._exit(0)),
as a library that calls exit would. Any other size is a plain tanh rnn cell."""

import os
import signal

import torch
from torch import nn


class CrashingCell(nn.Module):
    recurrent_weights = ["weight_hh"]

    def __init__(self, input_size: int, hidden_size: int, crash_at_hidden: int = 0, exit_at_hidden: int = 0):
        super().__init__()
        self.hidden_size, self.crash = hidden_size, hidden_size == crash_at_hidden
        self.exit = hidden_size == exit_at_hidden
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size) / input_size**0.5)
        self.weight_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.crash:
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.exit:
            os._exit(0)
        return torch.tanh(x @ self.weight_ih.T + h @ self.weight_hh.T)
