"""A training monitor: the gradient profile through time of your own model, recorded while it trains.

    monitor = harness.Monitor(model, module=model.lstm, loss=loss_fn, sources=16,
                              loggers=[harness.loggers.TensorBoard("runs/lm")])
    for step, (x, y) in enumerate(loader):
        ...; optimizer.step()
        monitor.step(step, (x, y))          # records every `every` steps on the first batch it saw

Every `every` training steps the monitor calls harness.record on one fixed batch (the one given, else
the first it sees), cut to `sequences` sequences, and hands the result (a Snapshot) to each logger.
It never touches what training uses: parameters' .grad (harness.record takes gradients with
torch.autograd.grad, which accumulates nothing), the optimiser, torch's RNG state (saved and restored
around each recording), or the model's train/eval mode and buffers (it records in eval mode, so
dropout draws nothing and batch norm updates nothing, and restores each module's mode). A run with and
without it ends with bit-identical weights (tests/test_monitor.py).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from harness.core import spec
from harness.core.errors import ConfigError
from harness.core.spec import RECORDING, VALIDATORS
from harness.lab.profile import GradientProfile, check_horizon_decades

if TYPE_CHECKING:
    import pandas as pd

    from harness.lab.api import Lengths


@dataclass(frozen=True)
class Snapshot:
    """One recording during training: the training step, the profile and its fits per block.

    A monitor's snapshots are one run, named by its first snapshot: `columns` and `run_id` are the
    profile's with the training's `recording` (harness.lab.monitor.training of the first snapshot's:
    what the columns do not say, the initial weights and the batch), so one training is one run
    wherever it is logged, and two are two. The profile keeps its own: saved alone (profile.save), each
    snapshot is a recording of its own, the first one too (another run than the training's log)."""

    step: int  # the training step it was recorded at
    profile: GradientProfile
    fits: list[dict[str, Any]]  # per (layer, state): layer, state, rate, half_life, horizon, ... (GradientProfile.fit)
    recording: str | None = None  # the training's recording (None: the profile's own, as outside a monitor)

    @property
    def columns(self) -> dict[str, Any]:
        return self.profile.columns | ({RECORDING: self.recording} if self.recording else {})

    @property
    def run_id(self) -> str:
        return spec.run_id(self.columns)

    def frame(self) -> pd.DataFrame:
        """The profile's long table with `step` the training step (as a command-line training run's),
        its run's run_id and recording."""
        frame = self.profile.to_frame().assign(step=self.step, run_id=self.run_id)
        return frame.assign(**{RECORDING: self.recording}) if self.recording else frame


def training(first: str) -> str:
    """The recording that names a monitored training: a hash of its first snapshot's (the same
    recording, saved alone, is not the training's log)."""
    return hashlib.sha1(f"training {first}".encode()).hexdigest()[:12]


class Logger(Protocol):
    """Where snapshots go (harness.lab.loggers: TensorBoard, WandB, Parquet)."""

    def log(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


Batch = Tensor | Sequence[Tensor]  # inputs, or (inputs, targets, ...)


class Monitor:
    """Record the model's gradient profile every `every` training steps (see the module docstring).

    model, module, loss, sources, recorder, seed, horizon_decades: as harness.record's.
    batch: the fixed batch, inputs or (inputs, targets); None: the first one step() is given.
    every: record when step % every == 0.   sequences: the batch is cut to its first `sequences`.
    batch_dim: the inputs' batch dimension; None: 0 for a batch-first module or a cell the model loops
    over, else 1 (torch's (seq_len, batch, ...) layout).
    targets_batch_dim: the targets'; None: batch_dim where they have the batch size there, else 0 (a
    classifier's (batch,) labels); refused where both have it and the batch is cut (T == batch).
    lengths: each sequence's length in the fixed batch (harness.record's lengths=), cut with it.
    loggers: each gets every snapshot (log) and is closed by close().
    """

    def __init__(
        self,
        model: nn.Module,
        batch: Batch | None = None,
        every: int = 100,
        module: nn.Module | None = None,
        loss: Callable[..., Tensor] | None = None,
        sources: int | None = None,
        sequences: int = 8,
        batch_dim: int | None = None,
        targets_batch_dim: int | None = None,
        loggers: Sequence[Logger] = (),
        recorder: str = "auto",
        seed: int = 0,
        horizon_decades: float = 3.0,
        name: str = "monitor",
        lengths: Lengths | None = None,
    ):
        for key, value in (("every", every), ("sequences", sequences)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r}: expected an integer >= 1")
        for key, value in (("batch_dim", batch_dim), ("targets_batch_dim", targets_batch_dim)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{key}={value!r}: expected an integer >= 0, or None")
        check_recording(recorder, seed, horizon_decades, lengths, sources)
        loggers = check_loggers(loggers)
        self.model, self.module, self.loss, self.sources = model, module, loss, sources
        self.every, self.sequences, self.batch_dim = every, sequences, batch_dim
        self.targets_batch_dim = targets_batch_dim
        self.loggers, self.recorder, self.seed = loggers, recorder, seed
        self.horizon_decades, self.name = horizon_decades, name
        self.lengths = copy.deepcopy(lengths)  # the fixed batch's (a copy: never the caller's), cut with it
        self.batch: tuple[Tensor, ...] | None = None
        self.snapshots: list[Snapshot] = []
        if batch is not None:
            self.batch, self.lengths = self._fixed(batch, self.lengths)

    def step(self, step: int, batch: Batch | None = None, lengths: Lengths | None = None) -> Snapshot | None:
        """Call after optimizer.step(): records when step % every == 0 (the first batch given is kept, and
        `lengths`, its sequences' lengths where padded, with it; as Monitor's lengths=)."""
        if self.batch is None:
            if batch is None:
                raise ConfigError("Monitor.step: no batch yet; expected Monitor(model, batch) or step(step, batch)")
            if lengths is not None:
                if self.lengths is not None:
                    raise ConfigError(
                        "Monitor.step: lengths given to Monitor and to step; expected them once, with the batch"
                    )
                from harness.lab.api import check_lengths  # imported where used, as record() is

                check_lengths(lengths, self.sources)
            self.batch, self.lengths = self._fixed(batch, self.lengths if lengths is None else copy.deepcopy(lengths))
        if step % self.every:
            return None
        return self.record(step)

    def record(self, step: int) -> Snapshot:
        """Record now, whatever the step; log it and keep it."""
        if self.batch is None:
            raise ConfigError("Monitor.record: no batch yet; expected Monitor(model, batch) or step(step, batch)")
        from harness.lab.api import record

        inputs, *rest = self.batch
        with _untouched(self.model):
            profile = record(
                self.model,
                inputs,
                loss=self.loss,
                targets=rest[0] if rest else None,
                module=self.module,
                recorder=self.recorder,
                sources=self.sources,
                seed=self.seed,
                name=self.name,
                lengths=self.lengths,
            )
        run = self.snapshots[0].recording if self.snapshots else training(profile.columns[RECORDING])
        snapshot = Snapshot(step, profile, profile.fits(horizon_decades=self.horizon_decades), run)
        self.snapshots.append(snapshot)
        for logger in self.loggers:
            logger.log(snapshot)
        return snapshot

    def frame(self) -> pd.DataFrame:
        """Every snapshot's profile table, `step` the training step."""
        import pandas as pd

        if not self.snapshots:  # nothing recorded yet: an empty table, not an error from pandas
            return pd.DataFrame()
        return pd.concat([snapshot.frame() for snapshot in self.snapshots], ignore_index=True)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()

    def _fixed(self, batch: Batch, lengths: Lengths | None) -> tuple[tuple[Tensor, ...], Lengths | None]:
        """The batch cut to `sequences` along its batch dimension, detached and copied (training may
        reuse the tensors in place), and its lengths cut with it."""
        tensors = (batch,) if isinstance(batch, (Tensor, PackedSequence)) else tuple(batch)
        if any(isinstance(t, PackedSequence) for t in tensors):
            raise ConfigError(
                "batch: a PackedSequence, which the monitor cannot cut to `sequences`; expected the padded batch, "
                "which the model packs itself"
            )
        if not tensors or not all(isinstance(t, Tensor) for t in tensors):
            raise ConfigError(f"batch: expected a tensor or a sequence of tensors, got {type(batch).__name__}")
        dim = self.batch_dim if self.batch_dim is not None else _batch_dim(self.model, self.module)
        inputs, *targets = tensors[:2]
        if inputs.dim() <= dim:
            raise ConfigError(f"batch_dim={dim}: the inputs' shape {tuple(inputs.shape)} has no dimension {dim}")
        size = inputs.shape[dim]
        n = min(self.sequences, size)
        dims = [dim, *(self._targets_dim(t, tuple(inputs.shape), dim, n) for t in targets)]
        if lengths is not None:
            from harness.lab.api import check_count  # imported where used, as record() is

            check_count(lengths, size, f" (its dimension {dim})")
            lengths = lengths[:n]
        return tuple(t.narrow(d, 0, n).detach().clone() for t, d in zip((inputs, *targets), dims)), lengths

    def _targets_dim(self, targets: Tensor, inputs: tuple[int, ...], dim: int, n: int) -> int:
        """The targets' batch dimension: targets_batch_dim if given, else the inputs' where the targets
        have the batch size there ((seq_len, batch) targets share the inputs' layout), else their first (a
        classifier's (batch,) labels). ConfigError where neither has it, or where both have it and a cut is
        to be made (T == batch: (batch, seq_len) targets would be cut along time, silently)."""
        size = inputs[dim]
        if self.targets_batch_dim is not None:
            candidates = [self.targets_batch_dim]
        else:
            candidates = [d for d in dict.fromkeys((dim, 0)) if targets.dim() > d and targets.shape[d] == size]
        if len(candidates) > 1 and n < size:
            raise ConfigError(
                f"targets_batch_dim=None: the targets' shape {tuple(targets.shape)} has the inputs' batch size "
                f"{size} in dimensions {candidates[0]} and {candidates[1]}; expected targets_batch_dim= naming "
                "the one to cut"
            )
        if not candidates or targets.dim() <= candidates[0] or targets.shape[candidates[0]] != size:
            raise ConfigError(
                f"batch_dim={dim}: the targets' shape {tuple(targets.shape)} has no dimension of the inputs' batch "
                f"size {size} (inputs {inputs}) where expected; expected targets batched along dimension {dim} "
                "or 0, or targets_batch_dim= naming theirs"
            )
        return candidates[0]


def check_recording(recorder: str, seed: Any, horizon_decades: Any, lengths: Any, sources: Any) -> None:
    """ConfigError, in one line naming the argument, for a recording setting harness.record would refuse
    at the first recording, mid-training (recorder, seed, lengths) or the fits after it (horizon_decades)."""
    from harness.lab.api import check_lengths, check_recorder  # imported where used, as record() is

    check_recorder(recorder)
    check_lengths(lengths, sources)
    VALIDATORS["seed"]("seed", seed)
    check_horizon_decades(horizon_decades)


def check_loggers(loggers: Any) -> list[Logger]:
    """The loggers as a list; ConfigError where it is one logger alone or holds something that cannot log."""
    if hasattr(loggers, "log"):
        raise ConfigError(f"loggers={type(loggers).__name__}: expected a list of loggers, e.g. loggers=[logger]")
    try:
        loggers = list(loggers)
    except TypeError:
        raise ConfigError(f"loggers={type(loggers).__name__}: expected a list of loggers") from None
    for logger in loggers:
        if not (callable(getattr(logger, "log", None)) and callable(getattr(logger, "close", None))):
            raise ConfigError(
                f"loggers: {type(logger).__name__} has no log(snapshot) and close(); expected harness.loggers' "
                "TensorBoard, WandB, Parquet or an object with both"
            )
    return loggers


def _batch_dim(model: nn.Module, module: nn.Module | None) -> int:
    """0 for a batch-first recurrent module (or a cell the model loops over), else 1."""
    from harness.lab.module import find_recurrent

    recurrent = module if module is not None else find_recurrent(model)
    return 1 if isinstance(recurrent, nn.RNNBase) and not recurrent.batch_first else 0


@contextlib.contextmanager
def _untouched(model: nn.Module) -> Iterator[None]:
    """Eval mode and torch's RNG state for the duration; every module's mode and the RNG restored."""
    modes = [(m, m.training) for m in model.modules()]
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
