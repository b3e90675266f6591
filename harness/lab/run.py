"""One run: build the model and task from its spec, record the gradient profile (and train), write
the run folder.

    config (a plain, resolved dict) -> columns and RunSpec (harness.core.spec) -> remedies (harness.core.remedies)
      -> build: network + the remedies' on_build, readout, held-out batch (harness.lab.build)
      -> record at init: the profile in segments (harness.core.segments), theory beside it (harness.core.theory),
         per-unit detail (harness.core.detail)
      -> [train (harness.core.train) through whole-sequence layers where the equations are torch's,
          recording every record_every steps; remedies hook in, callbacks (TrainingCallback) watch]
      -> the run folder's tables (harness.core.runfolder)

The run's own bookkeeping (the profiles, the loss table) is a TrainingCallback like any monitor's.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import platform
import sys
import tempfile
import time
from collections import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from harness.core.analysis import fit_profile
from harness.core.cells import StackedNet
from harness.core.detail import Detail, record_detail
from harness.core.errors import ConfigError, NotApplicable
from harness.core.memory import segment_length
from harness.core.provenance import code_identity, git_commit
from harness.core.recorders import Overflow, flush_denormals, leave_out_overflow, status_flags
from harness.core.remedies import Remedy, needs_states, remedies_for
from harness.core.runfolder import META, write_done, write_json
from harness.core.segments import record_profile
from harness.core.sequences import train_forward
from harness.core.spec import RunSpec, config_columns, run_id
from harness.core.tasks import StreamedInputs, TaskBatch, time_chunks
from harness.core.theory import CarriedTangent, carries_lyapunov, closed_form_profile, predictions
from harness.core.train import SOLVED_FRACTION, Evaluation, TrainingCallback, train
from harness.core.zoo.hidden import HiddenNet
from harness.lab.build import Setup, build_network, build_run, import_object, readout
from harness.lab.tables import write_tables

__all__ = [
    "Recording",
    "TrainingCallback",
    "build_network",
    "import_object",
    "input_drive_stats",
    "readout",
    "record",
    "record_failure",
    "run",
    "run_meta",
    "step_bar",
]

log = logging.getLogger(__name__)


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


class Recording(NamedTuple):
    profiles: list[tuple[int, torch.Tensor]]  # (training step, ln-norms (T+1, batch, parts))
    losses: list[dict[str, Any]]  # the loss table's rows (none for the probe)
    flags: list[str]
    extras: dict[str, Any]  # input-drive statistics, theory predictions, final loss
    model: StackedNet
    closed_form: dict[str, np.ndarray]  # closed-form log10 norms at init, indexed by t (theory.closed_form_profile)
    detail: Detail | None  # record.units=true: per-unit, per-gate and weight rows at init (harness.core.detail)


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


def record(run: RunSpec, progress: bool = False, callbacks: Sequence[TrainingCallback] = ()) -> Recording:
    """Build one configuration, record its gradient profile at initialisation and, for a training task,
    every train.record_every steps while it trains. progress: a bar of each recording's steps;
    callbacks: told every record and every training step (harness.core.train.TrainingCallback)."""
    remedies = remedies_for(run)
    setup = build_run(run, remedies)
    session = Session(run, setup, remedies, progress, callbacks)
    extras = session.at_init()
    if run.train.steps:
        session.train()
    losses = session.book.losses
    final = losses[-1]["eval_loss"] if losses else math.nan
    extras.update(
        final_loss=final,
        segment_length=session.segment,
        baseline=session.baseline,
        solved=bool(final <= SOLVED_FRACTION * session.baseline) if losses else None,
        diverged_at=None if session.overflow is None else session.overflow.at,
    )
    order = ["diverged", "nan", "overflow", "underflow", "zero"]
    return Recording(
        session.book.profiles,
        losses,
        [f for f in order if f in session.flags],
        extras,
        setup.model,
        closed_form_profile(setup.model, run, setup.held_out.readout, setup.held_out.inputs),
        session.detail,
    )


def plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a resolved config as plain dicts and lists (a mapping, such as an OmegaConf one, is
    read key by key, which resolves its interpolations; the command line passes plain dicts)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, abc.Sequence) and not isinstance(value, (str, bytes)):
            return [convert(item) for item in value]
        return value

    return convert(config)


def run_meta(config: Mapping[str, Any], choices: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's columns and the start of its meta.json: what it is and where it ran. Raises ConfigError.
    config: the run's resolved config, a plain dict (harness.cli converts Hydra's)."""
    config = plain(config)
    columns = config_columns(config)
    meta: dict[str, Any] = {
        "run_id": run_id(columns),
        "columns": columns,
        "config": config,
        "choices": choices or {},
        "seed": columns["seed"],
        "git_commit": git_commit(),
        "code": code_identity(config),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "hydra": importlib.metadata.version("hydra-core"),
            "numpy": np.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "error": None,
    }
    return columns, meta


def record_failure(config: Mapping[str, Any], out_dir: Path, choices: dict[str, Any] | None, error: str) -> None:
    """Mark out_dir as a finished, failed run of config (resolved, plain): for a run whose process died
    before it could say so itself (a crash in native code, a kill), as its supervisor saw it."""
    _, meta = run_meta(config, choices)
    write_json({**meta, "status": "failed", "error": error}, out_dir / META)
    write_done(out_dir)


STARTED: set[tuple] = set()  # what this process has started up for (start_up's keys)


def start_up(run: RunSpec, columns: dict[str, Any]) -> float:
    """Seconds spent on one-time start-up before the first run of its kind in this process: its cell,
    activation, recorder, dtype, device and task, trained or not. What a process does once (imports
    that happen on first use, thread pools, a device's context and kernels, a cell's first call) would
    otherwise count as that first run's wall_time_s (8-11 s against 0.1 s for the runs after it); here
    it is done by a small copy of the run (seq_len 4 at most, batch 2 at most, one training step at
    most, no spectrum, no units), its tables written to a temporary folder (the first parquet write
    starts pyarrow up), timed; the run's own time starts after it. 0.0 for the runs after the first of
    a kind. A copy that fails is left: the run itself then says what is wrong."""
    key = (
        run.cell.name,
        run.cell._target_,
        run.activation,
        run.recorder,
        run.dtype,
        run.device,
        run.task.name,
        run.train.steps > 0,
    )
    if key in STARTED:
        return 0.0
    STARTED.add(key)
    start = time.perf_counter()
    try:
        small = replace(
            run,
            seq_len=min(run.seq_len, 4),
            batch_size=min(run.batch_size, 2),
            train=replace(run.train, steps=min(run.train.steps, 1), record_every=1),
            theory=replace(run.theory, spectrum_k=0),
            record=replace(run.record, units=False),
        )
        with tempfile.TemporaryDirectory() as folder:
            write_tables(record(small), columns, "start-up", Path(folder))
    except Exception:  # noqa: BLE001  ConfigError, NotApplicable, a failure: the run itself reports it
        log.debug("start-up copy of %s failed", run, exc_info=True)
    return time.perf_counter() - start


def run(config: Mapping[str, Any], out_dir: Path, choices: dict[str, Any] | None = None, progress: bool = False) -> str:
    """Run config (resolved, a plain dict) into out_dir and return its status: ok, comma-joined
    numerical flags, failed, or not_applicable (a setting that means nothing for this cell;
    harness.core.errors.NotApplicable).

    A ConfigError propagates (nothing is computed or written); any other exception is recorded in the
    run's metadata as status failed, so that one broken run never stops or hides the others. The
    metadata's wall_time_s is the run's own time; startup_s the one-time start-up before it (start_up).
    """
    columns, meta = run_meta(config, choices)
    rid = meta["run_id"]
    meta["startup_s"], start = 0.0, time.perf_counter()
    try:
        spec = RunSpec.from_columns(columns)
        meta["startup_s"] = start_up(spec, columns)
        start = time.perf_counter()  # the run's own time from here: its start-up is startup_s
        recording = record(spec, progress)
        meta.update(recording.extras)
        profile = write_tables(recording, columns, rid, out_dir)
        meta["status"] = ",".join(recording.flags) or "ok"
    except ConfigError:
        raise
    except NotApplicable as reason:
        meta.update(status="not_applicable", error=str(reason))
    except Exception as error:  # recorded, not raised: see the docstring
        meta.update(status="failed", error=f"{type(error).__name__}: {error}")
        log.exception("run %s failed", rid)
    meta["wall_time_s"] = time.perf_counter() - start
    write_json(meta, out_dir / META)
    write_done(out_dir)
    if meta["status"] not in ("failed", "not_applicable"):
        top = profile[(profile.state == "h") & (profile.layer == columns["num_layers"] - 1) & (profile.step == 0)]
        fit = fit_profile(top.lag.to_numpy(), top.log10_norm.to_numpy())
        log.info(
            "%s: rate %+.4f nats/step (%s), log10 gain %.2f over %d steps, status %s, %.2f s",
            rid,
            fit["rate"],
            fit["regime"],
            fit["log10_gain"],
            columns["seq_len"],
            meta["status"],
            meta["wall_time_s"],
        )
    return meta["status"]
