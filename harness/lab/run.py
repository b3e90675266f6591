"""One run: build the model and task from its spec, record the gradient profile (and train), write
the run folder.

    config (a plain, resolved dict) -> columns and RunSpec (harness.core.spec) -> remedies (harness.core.remedies)
      -> build: network + the remedies' on_build, readout, held-out batch (harness.lab.build)
      -> record at init: the profile in segments (harness.core.segments), theory beside it (harness.core.theory),
         per-unit detail (harness.core.detail)
      -> [train (harness.core.train) through whole-sequence layers where the equations are torch's,
          recording every record_every steps; remedies hook in, callbacks (TrainingCallback) watch]
      -> the run folder's tables (harness.core.runfolder)

Here: record (a built run's Session, harness.lab.session, driven and gathered into a Recording), the
process's one-time start-up before a run (start_up), a run into its folder (run) and its meta.json
(run_meta; record_failure for a run whose process died). The run's own bookkeeping (the profiles, the
loss table) is a TrainingCallback like any monitor's (harness.lab.session.Book).
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import platform
import tempfile
import time
from collections import abc
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from harness.core.analysis import fit_profile
from harness.core.cells import StackedNet
from harness.core.detail import Detail
from harness.core.errors import ConfigError, NotApplicable
from harness.core.provenance import code_identity, git_commit
from harness.core.remedies import remedies_for
from harness.core.runfolder import META, write_done, write_json
from harness.core.spec import RunSpec, config_columns, run_id
from harness.core.theory import closed_form_profile
from harness.core.train import SOLVED_FRACTION, TrainingCallback
from harness.lab.build import build_network, build_run, import_object, readout
from harness.lab.session import Session
from harness.lab.tables import write_tables

__all__ = [
    "Recording",
    "TrainingCallback",
    "build_network",
    "import_object",
    "readout",
    "record",
    "record_failure",
    "run",
    "run_meta",
]

log = logging.getLogger(__name__)


class Recording(NamedTuple):
    profiles: list[tuple[int, torch.Tensor]]  # (training step, ln-norms (T+1, batch, parts))
    losses: list[dict[str, Any]]  # the loss table's rows (none for the probe)
    flags: list[str]
    extras: dict[str, Any]  # input-drive statistics, theory predictions, final loss
    model: StackedNet
    closed_form: dict[str, np.ndarray]  # closed-form log10 norms at init, indexed by t (theory.closed_form_profile)
    detail: Detail | None  # record.units=true: per-unit, per-gate and weight rows at init (harness.core.detail)


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
