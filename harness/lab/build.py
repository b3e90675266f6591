"""Building a run: its network (initialised by its build-time remedies), readout, task and held-out
batch, from the typed spec, drawing from one generator seeded with the run's seed in a fixed order:
the weights (init, then chrono), the readout, the held-out batch; then each training batch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from harness.core.cells import CellNet, StackedNet
from harness.core.errors import ConfigError
from harness.core.networks import BUILD_OPTIONS, build
from harness.core.remedies import Remedy, remedies_for
from harness.core.spec import RunSpec
from harness.core.tasks import TASKS, Task, TaskBatch


def import_object(key: str, path: str) -> Any:
    """The object at a dotted import path (a user cell's class); ConfigError if there is none."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            f"{key}={path}: cannot import it ({error}); expected a class importable from the "
            "folder you run in or an installed package"
        ) from None


def build_network(run: RunSpec, generator: torch.Generator, remedies: Sequence[Remedy] | None = None) -> StackedNet:
    """The run's network in float64 on the CPU, initialised: a built-in RecurrentNet, or the user cell
    named by cell._target_ (built with input_size=, hidden_size= and cell.kwargs.*, under the run's
    seed) in a CellNet; then each remedy's on_build in order (None: harness.core.remedies.remedies_for,
    the init scheme and scale, forget bias and chrono first). Raises NotApplicable for a setting that
    means nothing for the cell."""
    cell = run.cell
    if cell._target_ is None:
        options = {k: getattr(cell, k) for k in BUILD_OPTIONS}
        model = build(cell.name, run.activation, run.input_size, run.hidden_size, run.num_layers, options).double()
    else:
        cls = import_object("cell._target_", cell._target_)
        with torch.random.fork_rng(devices=[]):  # the cell's own init, seeded, without touching the caller's RNG
            torch.manual_seed(run.seed)
            layers = [
                cls(
                    input_size=run.input_size if layer == 0 else run.hidden_size,
                    hidden_size=run.hidden_size,
                    **cell.kwargs,
                )
                for layer in range(run.num_layers)
            ]
        model = CellNet(layers, run.input_size).double()
    for remedy in remedies_for(run) if remedies is None else remedies:
        remedy.on_build(model, generator)
    return model


def readout(hidden_size: int, outputs: int, generator: torch.Generator) -> torch.nn.Linear:
    """A trained task's linear readout of the top layer's h, initialised as torch does but seeded."""
    head = torch.nn.Linear(hidden_size, outputs).double()
    bound = 1 / math.sqrt(hidden_size)
    with torch.no_grad():
        for p in head.parameters():
            p.uniform_(-bound, bound, generator=generator)
    return head


class Setup(NamedTuple):
    """A built run, on its device in its dtype."""

    model: StackedNet
    head: torch.nn.Linear | None  # a trained task's readout (None for the probe)
    task: Task
    generator: torch.Generator  # the run's: weights, readout, held-out batch drawn; then training batches
    draw: Callable[[], TaskBatch]  # a fresh batch of the task
    held_out: TaskBatch  # evaluated and recorded on, never trained on
    parameters: list[torch.nn.Parameter]  # the model's, then the readout's
    dtype: torch.dtype


def build_run(run: RunSpec, remedies: Sequence[Remedy]) -> Setup:
    """Build the network (build_network, with remedies' on_build), its readout and the held-out batch,
    in that order of draws. Built in float64 on the CPU, then cast: float32 and float64 runs share
    their weights."""
    dtype, device = getattr(torch, run.dtype), torch.device(run.device)  # spec.DTYPES names torch's dtypes
    generator = torch.Generator().manual_seed(run.seed)
    task = TASKS[run.task.name]
    model = build_network(run, generator, remedies)
    head = readout(model.output_size, task.output_size, generator) if task.output_size else None

    def draw() -> TaskBatch:
        return task.make(
            run.seq_len, run.batch_size, generator, input_size=run.input_size, hidden_size=model.output_size
        ).to(device, dtype)

    held_out = draw()
    model.to(device=device, dtype=dtype)
    parameters = list(model.parameters())
    if head is not None:
        head.to(device=device, dtype=dtype)
        parameters += list(head.parameters())
    return Setup(model, head, task, generator, draw, held_out, parameters, dtype)
