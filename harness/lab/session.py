"""A built run on its held-out batch (harness.lab.build's Setup) as a Session: it records the profile
at a step, the theory and per-unit detail at initialisation, and trains, telling its callbacks; the
Book among them keeps the run's profiles and loss table. Beside it what a recording shows and uses:
the progress bar of its steps (step_bar) and the input drive mean-field theory reads
(input_drive_stats). harness.lab.run.record drives a Session and gathers what it kept.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from harness.core.cells import StackedNet
from harness.core.detail import Detail, record_detail
from harness.core.memory import segment_length
from harness.core.recorders import Overflow, flush_denormals, leave_out_overflow, status_flags
from harness.core.remedies import Remedy, needs_states
from harness.core.segments import record_profile
from harness.core.sequences import train_forward
from harness.core.spec import RunSpec
from harness.core.tasks import StreamedInputs, TaskBatch, time_chunks
from harness.core.theory import CarriedTangent, carries_lyapunov, predictions
from harness.core.train import Evaluation, TrainingCallback, train
from harness.core.zoo.hidden import HiddenNet
from harness.lab.build import Setup

__all__ = ["Book", "Session", "input_drive_stats", "step_bar"]


def input_drive_stats(model: StackedNet, inputs: torch.Tensor | StreamedInputs) -> tuple[float, float]:
    """Mean over the bottom layer's units of E[(W_ih x_t + b_ih + b_hh)^2] over the run's inputs, and
    its coefficient of variation across units (mean-field theory assumes every unit sees the same).
    For torch's equations (rnn, gru, lstm) both biases sit in every pre-activation; a hidden-state cell
    (minimal, indrnn) reads its inputs through W_ih and b_ih alone (the minimal's z drive). NaN for the
    others (lru, input-gated cells, a user cell). Chunk by chunk: inputs may stream."""
    if model.analytic_jacobian:
        bias = None if not model.bias else model.bias_ih_l0 + model.bias_hh_l0
    elif isinstance(model, HiddenNet):
        bias = model.bias_ih_l0
    else:
        return math.nan, math.nan
    per_unit = torch.zeros(model.weight_ih_l0.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for chunk in time_chunks(inputs):
            drive = torch.nn.functional.linear(chunk, model.weight_ih_l0, bias)
            per_unit += drive.double().pow(2).sum(dim=(0, 1)).cpu()
    per_unit /= inputs.shape[0] * inputs.shape[1]
    mean = per_unit.mean().item()
    spread = per_unit.std().item() if per_unit.numel() > 1 else 0.0  # one unit: nothing varies across units
    return mean, (spread / mean if mean > 0 else float("nan"))


@contextlib.contextmanager
def step_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int], object] | None]:
    """A progress bar of a recording's steps on stderr (tqdm: steps done, steps/s, time left), shown
    after 2 s on a terminal; elsewhere one summary line for a recording that took longer than that."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(
        total=total,
        unit="step",
        desc=description,
        delay=2,
        leave=False,
        file=sys.stderr,
        disable=None,
        dynamic_ncols=True,
    ) as bar:  # disable=None: off where stderr is no terminal
        yield bar.update
    elapsed = time.perf_counter() - start
    if not sys.stderr.isatty() and elapsed > 2:
        print(f"{description}: {total} steps in {elapsed:.1f} s ({total / elapsed:.0f} steps/s)", file=sys.stderr)


class Book(TrainingCallback):
    """The run's own bookkeeping, through the training seam: the profile at every record and, for a
    trained task (the probe's readout is no training loss), the loss table's rows."""

    def __init__(self, keeps_losses: bool):
        self.keeps_losses = keeps_losses
        self.profiles: list[tuple[int, torch.Tensor]] = []
        self.losses: list[dict[str, Any]] = []

    def on_record(self, step: int, row: dict[str, Any], log_norms: torch.Tensor | None) -> None:
        self.profiles.append((step, log_norms))
        if self.keeps_losses:
            self.losses.append(row)


class Session:
    """A built run on its held-out batch: records the profile at a step (evaluate), the theory and
    detail at initialisation (at_init), trains (train), telling its callbacks, the Book first."""

    def __init__(
        self,
        run: RunSpec,
        setup: Setup,
        remedies: Sequence[Remedy],
        progress: bool,
        callbacks: Sequence[TrainingCallback] = (),
    ):
        self.run, self.setup, self.remedies, self.progress = run, setup, remedies, progress
        model = setup.model
        self.fast = train_forward(model) if model.analytic_jacobian and not needs_states(remedies) else None
        self.segment = segment_length(
            model,
            run.seq_len,
            run.batch_size,
            setup.dtype.itemsize,
            run.recorder,
            run.memory.fraction,
            run.memory.segment,
        )
        self.baseline = setup.task.baseline(run.seq_len)
        self.book = Book(keeps_losses=bool(setup.task.output_size))
        self.callbacks = [self.book, *callbacks]
        self.flags: set[str] = set()
        self.overflow: Overflow | None = None  # of the first recording whose forward pass overflowed
        self.detail: Detail | None = None

    def output_loss(self, batch: TaskBatch) -> Callable[[torch.Tensor], torch.Tensor]:
        """The task's loss of the top layer's outputs it reads (through the readout, if trained)."""
        head = self.setup.head
        return lambda outputs: batch.loss(outputs if head is None else head(outputs))

    def evaluate(self, step: int, tangent: CarriedTangent | None = None) -> Evaluation:
        """Record the profile on the held-out batch (carrying the Lyapunov tangent, if given)."""
        run, held_out = self.run, self.setup.held_out
        with (
            flush_denormals(),
            step_bar(
                self.progress, 2 * run.seq_len, f"recording (training step {step})" if run.train.steps else "recording"
            ) as update,
        ):
            log_norms, loss, finite = record_profile(
                self.setup.model,
                held_out.inputs,
                self.output_loss(held_out),
                held_out.final_state_only,
                run.recorder,
                self.segment,
                update,
                tangent,
            )
        log_norms, overflow = leave_out_overflow(log_norms, finite, self.setup.model, held_out.inputs)
        self.flags.update(status_flags(log_norms, finite, run.recorder, overflow))
        self.overflow = overflow if self.overflow is None or self.overflow.at is None else self.overflow
        return Evaluation(loss.item(), log_norms)

    def at_init(self) -> dict[str, Any]:
        """Record at initialisation, then the theory beside it and the per-unit detail; their extras.
        The recording visits the trajectory the largest Lyapunov exponent follows (same inputs,
        S_0 = 0), so it carries the exponent's tangent where it can; its first tangent is drawn
        here, where predictions would have drawn it, so every later draw is unchanged."""
        run, model, held_out, generator = self.run, self.setup.model, self.setup.held_out, self.setup.generator
        drive_var, drive_cv = input_drive_stats(model, held_out.inputs)
        tangent = (
            CarriedTangent(model, run.seq_len, run.batch_size, generator, next(model.parameters()))
            if carries_lyapunov(model, run)
            else None
        )
        initial = self.evaluate(0, tangent)
        for callback in self.callbacks:
            callback.on_record(0, {"step": 0, "eval_loss": initial.loss, "elapsed_s": 0.0}, initial.log_norms)
        with flush_denormals():
            theory = predictions(
                model,
                run,
                held_out.inputs,
                drive_var,
                generator,
                carried_lyapunov=None if tangent is None else tangent.exponent(),
                diverged_at=None if self.overflow is None else self.overflow.at,
            )
        if run.record.units:
            inputs = (
                held_out.inputs[0 : run.seq_len] if isinstance(held_out.inputs, StreamedInputs) else held_out.inputs
            )
            with flush_denormals():
                self.detail = record_detail(model, inputs, self.output_loss(held_out))
        return {"input_drive_var": drive_var, "input_drive_var_cv": drive_cv, **theory}

    def train_loss(self, batch: TaskBatch) -> torch.Tensor:
        """The training loss of a batch: through whole-sequence layers where the equations are torch's
        (harness.core.sequences: its own on the CPU for the rnn and gru, torch's fused modules otherwise;
        the same parameters; tested equal to the explicit cells), else the explicit cells; plus the
        remedies' loss terms (Omega, harness.core.remedies) on the explicit cells' states."""
        model = self.setup.model
        with flush_denormals():
            if self.fast is not None:
                outputs = self.fast(batch.inputs)  # (T, B, H): the top layer's h at every step
                return self.output_loss(batch)(outputs[-1:] if batch.final_state_only else outputs)
            states = model(batch.inputs, model.initial_state(self.run.batch_size))
            steps = states[-1:] if batch.final_state_only else states[1:]
            loss = self.output_loss(batch)(torch.stack([model.top_hidden(state) for state in steps]))
            terms = [remedy.loss_term(batch.inputs, states, loss) for remedy in self.remedies]
            for term in terms:
                if term is not None:
                    loss = loss + term
            return loss

    def train(self) -> None:
        """Train for train.steps (harness.core.train.train); a diverged run is flagged."""
        setup = self.setup
        if train(
            setup.parameters,
            self.run.train,
            setup.draw,
            self.train_loss,
            self.evaluate,
            self.baseline,
            self.remedies,
            self.callbacks,
        ):
            self.flags.add("diverged")
