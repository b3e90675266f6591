"""Tasks: input sequences, targets, a loss on the network's outputs, and the loss of a known baseline.

probe           x_t ~ N(0, 1) i.i.d., h_0 = 0, loss = sum over the batch of r . h_T with r a fixed random
                unit vector (no training). Inputs of more than MAX_HELD_INPUTS bytes are streamed
                (StreamedInputs): generated chunk by chunk when asked for, never held whole. The
                backward pass is then linear in dL/dh_T, so
                ||dL/dh_{T-k}|| / ||dL/dh_T|| is the pure propagation gain over k steps. The batch is
                summed, not averaged, so each sample's gradient is that of its own loss.
adding          (Le et al. 2015; Arjovsky et al. 2016) 2 channels: values U[0, 1] and a mask with one 1
                in each half; target the sum of the two marked values; MSE on the last output.
                Baseline: always predicting 1 gives Var(U1 + U2) = 1/6 = 0.167.
copy            (Arjovsky et al. 2016) 10 symbols from 8, then seq_len - 1 blanks, a delimiter, and 10
                blanks during which the network must recall the 10 symbols: seq_len + 20 steps in all,
                one-hot over 10 channels (blank, 8 symbols, delimiter); cross-entropy at every step.
                Baseline: blanks, then uniform guesses: 10 ln 8 / (seq_len + 20).
temporal_order  (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013) distractors a, b, c, d, with X or Y
                at one step in [0.1 T, 0.2 T) and one in [0.5 T, 0.6 T); the class is the ordered pair
                (XX, XY, YX, YY); one-hot over 6 channels; cross-entropy on the last output.
                Baseline: chance, ln 4.
random_walk     a random walk s_t (N(0, 1) steps) seen through noise, x_t = s_t + N(0, 0.5^2); predict
                x_{t+1} at every step; MSE. Baseline: repeating the last value, 1 + 2 (0.5^2) = 1.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # a hint only: the tasks need none of the network code to run
    from harness.core.protocol import StackedNet

CHUNK = 256  # steps of inputs streamed (and of input drives computed) together, aligned to t = 0
MAX_HELD_INPUTS = 1 << 30  # bytes of float64 inputs held whole; a larger probe streams them


class StreamedInputs:
    """Probe inputs x_t ~ N(0, 1) for steps too many to hold: generated CHUNK steps at a time, chunk c
    from its own seed (derived from the run's generator), so any slice gives the same numbers however
    it is asked for and only the chunks asked for exist. Sliced like a (seq_len, batch, input_size)
    tensor along time; tests/test_segments.py checks slices against the materialised tensor."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        base_seed: int,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ):
        self.shape, self.base_seed, self.dtype, self.device = torch.Size(shape), base_seed, dtype, torch.device(device)

    def chunk(self, index: int) -> Tensor:
        seed = (self.base_seed + index * 0x9E3779B97F4A7C15) % (1 << 63)  # chunk seeds far apart
        steps = min(CHUNK, self.shape[0] - index * CHUNK)
        # Drawn in float32 whatever the run's dtype: 5x faster than float64 (40 -> 8 us a step at batch
        # 32, input 64, and a long recording draws every chunk twice), and the same values in a
        # float32 and a float64 run of one seed.
        x = torch.randn(steps, *self.shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
        return x.to(device=self.device, dtype=self.dtype)

    def __getitem__(self, steps: slice) -> Tensor:
        begin, end, stride = steps.indices(self.shape[0])
        if stride != 1:
            raise IndexError("streamed inputs are sliced by contiguous ranges of steps")
        chunks = range(begin // CHUNK, -(-end // CHUNK)) if end > begin else range(0)
        parts = [self.chunk(c) for c in chunks]
        if not parts:
            return torch.empty(0, *self.shape[1:], dtype=self.dtype, device=self.device)
        offset = begin - chunks[0] * CHUNK
        return torch.cat(parts)[offset : offset + end - begin]

    def to(self, device: str | torch.device, dtype: torch.dtype) -> StreamedInputs:
        return StreamedInputs(tuple(self.shape), self.base_seed, dtype, device)


def time_chunks(inputs: Tensor | StreamedInputs) -> Iterator[Tensor]:
    """The inputs CHUNK steps at a time (held or streamed)."""
    for begin in range(0, inputs.shape[0], CHUNK):
        yield inputs[begin : begin + CHUNK]


def step_drives(net: StackedNet, inputs: Tensor | StreamedInputs) -> Iterator[Tensor]:
    """Each step's input drive (net.input_drive, harness.core.protocol), computed CHUNK steps at a time,
    aligned to t = 0, as the recording computes them: the same drives, never all of them held at once."""
    for chunk in time_chunks(inputs):
        yield from net.input_drive(chunk)


@dataclass
class TaskBatch:
    inputs: Tensor | StreamedInputs  # (steps, batch, input_size); a probe too long to hold streams them
    targets: Tensor | None  # the task's targets; None for the probe
    # The loss of the network's outputs (steps, batch, output): the readout of the top layer's h at
    # every step, or at the last step only where final_state_only.
    loss: Callable[[Tensor], Tensor]
    # The exact recorder rescales the carried gradient; that is only right when the loss reads
    # nothing but the final state, which tasks declare here.
    final_state_only: bool = True
    readout: Tensor | None = None  # the probe's fixed readout r: dL/dh_T (closed-form theory needs it)

    def to(self, device: str | torch.device, dtype: torch.dtype) -> TaskBatch:
        self.inputs = self.inputs.to(device, dtype)
        if self.targets is not None:
            self.targets = self.targets.to(device=device, dtype=dtype if self.targets.is_floating_point() else None)
        return self


@dataclass(frozen=True)
class Task:
    make: Callable[..., TaskBatch]  # (seq_len, batch_size, generator, input_size=, hidden_size=)
    input_size: int | None  # None: the config's input_size
    output_size: int | None  # None: no trained readout (the probe reads h_T directly)
    baseline: Callable[[int], float]  # seq_len -> the documented baseline loss
    final_state_only: bool = True  # its loss reads the last step only (what the exact recorder needs)


def probe(seq_len: int, batch_size: int, generator: torch.Generator, *, input_size: int, hidden_size: int) -> TaskBatch:
    if seq_len * batch_size * input_size * 8 <= MAX_HELD_INPUTS:
        inputs = torch.randn(seq_len, batch_size, input_size, generator=generator, dtype=torch.float64)
    else:  # streamed: x_t generated chunk by chunk when a recording asks for it
        base_seed = int(torch.randint(1 << 62, (1,), generator=generator))
        inputs = StreamedInputs((seq_len, batch_size, input_size), base_seed)
    readout = torch.randn(hidden_size, generator=generator, dtype=torch.float64)
    readout /= readout.norm()

    def loss(outputs: Tensor) -> Tensor:
        return (outputs[-1] @ readout.to(outputs)).sum()

    return TaskBatch(inputs, None, loss, readout=readout)


def _mse_last(targets: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda outputs: F.mse_loss(outputs[-1].squeeze(-1), targets.to(outputs))


def _cross_entropy_last(targets: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda outputs: F.cross_entropy(outputs[-1], targets)


def adding(seq_len: int, batch_size: int, generator: torch.Generator, **_: int) -> TaskBatch:
    values = torch.rand(seq_len, batch_size, generator=generator, dtype=torch.float64)
    half = max(seq_len // 2, 1)
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, max(seq_len, half + 1), (batch_size,), generator=generator).clamp_max(seq_len - 1)
    mask = torch.zeros(seq_len, batch_size, dtype=torch.float64)
    samples = torch.arange(batch_size)
    mask[first, samples] = 1.0
    mask[second, samples] = 1.0
    targets = (values * mask).sum(0)
    return TaskBatch(torch.stack([values, mask], dim=-1), targets, _mse_last(targets))


COPY_SYMBOLS, COPY_LENGTH = 8, 10  # 8 data symbols; 10 of them to recall
BLANK, DELIMITER = 0, COPY_SYMBOLS + 1


def copy(seq_len: int, batch_size: int, generator: torch.Generator, **_: int) -> TaskBatch:
    steps = seq_len + 2 * COPY_LENGTH
    symbols = torch.randint(1, COPY_SYMBOLS + 1, (COPY_LENGTH, batch_size), generator=generator)
    tokens = torch.full((steps, batch_size), BLANK, dtype=torch.long)
    tokens[:COPY_LENGTH] = symbols
    tokens[seq_len + COPY_LENGTH - 1] = DELIMITER
    targets = torch.full((steps, batch_size), BLANK, dtype=torch.long)
    targets[-COPY_LENGTH:] = symbols
    inputs = F.one_hot(tokens, COPY_SYMBOLS + 2).double()

    def loss(outputs: Tensor) -> Tensor:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))

    return TaskBatch(inputs, targets, loss, final_state_only=False)


ORDER_SYMBOLS = 6  # distractors a, b, c, d; relevant X, Y


def temporal_order(seq_len: int, batch_size: int, generator: torch.Generator, **_: int) -> TaskBatch:
    tokens = torch.randint(0, 4, (seq_len, batch_size), generator=generator)
    relevant = torch.randint(0, 2, (2, batch_size), generator=generator)  # 0: X, 1: Y
    windows = [(0.1, 0.2), (0.5, 0.6)]
    samples = torch.arange(batch_size)
    for which, (start, end) in enumerate(windows):
        low, high = int(start * seq_len), max(int(end * seq_len), int(start * seq_len) + 1)
        position = torch.randint(low, high, (batch_size,), generator=generator)
        tokens[position, samples] = 4 + relevant[which]
    targets = 2 * relevant[0] + relevant[1]
    return TaskBatch(F.one_hot(tokens, ORDER_SYMBOLS).double(), targets, _cross_entropy_last(targets))


WALK_NOISE = 0.5


def random_walk(seq_len: int, batch_size: int, generator: torch.Generator, **_: int) -> TaskBatch:
    walk = torch.randn(seq_len + 1, batch_size, generator=generator, dtype=torch.float64).cumsum(0)
    seen = walk + WALK_NOISE * torch.randn(walk.shape, generator=generator, dtype=torch.float64)
    targets = seen[1:]

    def loss(outputs: Tensor) -> Tensor:
        return F.mse_loss(outputs.squeeze(-1), targets.to(outputs))

    return TaskBatch(seen[:-1].unsqueeze(-1), targets, loss, final_state_only=False)


TASKS: dict[str, Task] = {
    "probe": Task(probe, input_size=None, output_size=None, baseline=lambda seq_len: math.nan),
    "adding": Task(adding, 2, 1, baseline=lambda seq_len: 1 / 6),
    "copy": Task(
        copy,
        COPY_SYMBOLS + 2,
        COPY_SYMBOLS + 2,
        baseline=lambda seq_len: COPY_LENGTH * math.log(COPY_SYMBOLS) / (seq_len + 2 * COPY_LENGTH),
        final_state_only=False,
    ),
    "temporal_order": Task(temporal_order, ORDER_SYMBOLS, 4, baseline=lambda seq_len: math.log(4)),
    "random_walk": Task(random_walk, 1, 1, baseline=lambda seq_len: 1 + 2 * WALK_NOISE**2, final_state_only=False),
}
