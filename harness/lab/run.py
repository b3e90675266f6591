"""One run: build the model and task from a config, record the gradient profile (and train), write
the run folder.

    columns (harness.core.spec) -> network (built-in or user cell) + initialise -> task batch
      -> recording in segments (harness.core.segments, the exact or autograd recorder) -> profile table
      -> theory beside it (harness.core.theory)
      -> [train through whole-sequence layers where the equations are torch's, recording every record_every steps]
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from harness.core.analysis import fit_profile
from harness.core.cells import SLOPES, CellNet, RecurrentNet, StackedNet, recurrent
from harness.core.detail import Detail, record_detail
from harness.core.errors import ConfigError, NotApplicable
from harness.core.spec import DTYPES, RunSpec, config_columns, run_id
from harness.core.provenance import code_identity, git_commit
from harness.core.recorders import flush_denormals, status_flags
from harness.core.memory import segment_length
from harness.core.segments import record_profile
from harness.core.sequences import train_forward
from harness.core.init import initialise
from harness.core.networks import LRU_OPTIONS, build
from harness.core.runfolder import (GATES, LOSSES, META, PROFILE, UNITS, detail_frames, profile_frame, write_done,
                                    write_json, write_parquet)
from harness.core.tasks import TASKS, StreamedInputs, TaskBatch, time_chunks
from harness.core.theory import CarriedTangent, carries_lyapunov, closed_form_profile, flossing_loss, predictions
from harness.core.train import SOLVED_FRACTION, omega, train

log = logging.getLogger(__name__)


def input_drive_stats(model: StackedNet, inputs: torch.Tensor | StreamedInputs) -> tuple[float, float]:
    """Mean over the bottom layer's units of E[(W_ih x_t + b_ih + b_hh)^2] over the run's inputs, and
    its coefficient of variation across units (mean-field theory assumes every unit sees the same).
    NaN for a user cell, whose input weights are its own business. Chunk by chunk: inputs may stream."""
    if not isinstance(model, RecurrentNet):
        return math.nan, math.nan
    bias = None if not model.bias else model.bias_ih_l0 + model.bias_hh_l0
    per_unit = torch.zeros(model.weight_ih_l0.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for chunk in time_chunks(inputs):
            drive = torch.nn.functional.linear(chunk, model.weight_ih_l0, bias)
            per_unit += drive.double().pow(2).sum(dim=(0, 1)).cpu()
    per_unit /= inputs.shape[0] * inputs.shape[1]
    mean = per_unit.mean().item()
    spread = per_unit.std().item() if per_unit.numel() > 1 else 0.0  # one unit: nothing varies across units
    return mean, (spread / mean if mean > 0 else float("nan"))


def readout(hidden_size: int, outputs: int, generator: torch.Generator) -> torch.nn.Linear:
    """A trained task's linear readout of the top layer's h, initialised as torch does but seeded."""
    head = torch.nn.Linear(hidden_size, outputs).double()
    bound = 1 / math.sqrt(hidden_size)
    with torch.no_grad():
        for p in head.parameters():
            p.uniform_(-bound, bound, generator=generator)
    return head


class Recording(NamedTuple):
    profiles: list[tuple[int, torch.Tensor]]  # (training step, ln-norms (T+1, batch, parts))
    losses: list[dict[str, Any]]  # the loss table's rows (none for the probe)
    flags: list[str]
    extras: dict[str, Any]  # input-drive statistics, theory predictions, final loss
    model: StackedNet
    closed_form: dict[str, np.ndarray]  # closed-form log10 norms at init, indexed by t (theory.closed_form_profile)
    detail: Detail | None  # record.units=true: per-unit, per-gate and weight rows at init (harness.core.detail)


def import_object(key: str, path: str) -> Any:
    """The object at a dotted import path (a user cell's class); ConfigError if there is none."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{key}={path}: cannot import it ({error}); expected a class importable from the "
                          "folder you run in or an installed package") from None


def build_network(run: RunSpec, generator: torch.Generator) -> StackedNet:
    """The run's network in float64 on the CPU, initialised: a built-in RecurrentNet, or the user cell
    named by cell._target_ (built with input_size=, hidden_size= and cell.kwargs.*, under the run's
    seed) in a CellNet. Raises NotApplicable for a setting that means nothing for the cell."""
    cell = run.cell
    sizes = run.input_size, run.hidden_size, run.num_layers
    settings = (run.init.name, run.scale, generator, cell.forget_bias, cell.chrono_tmax)
    if cell._target_ is None:
        options = {k: getattr(cell, k) for k in LRU_OPTIONS}
        model = build(cell.name, run.activation, *sizes, options).double()
    else:
        cls = import_object("cell._target_", cell._target_)
        with torch.random.fork_rng(devices=[]):  # the cell's own init, seeded, without touching the caller's RNG
            torch.manual_seed(run.seed)
            layers = [cls(input_size=run.input_size if layer == 0 else run.hidden_size, hidden_size=run.hidden_size,
                          **cell.kwargs) for layer in range(run.num_layers)]
        model = CellNet(layers, run.input_size).double()
    initialise(model, *settings)
    return model


@contextlib.contextmanager
def step_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int], object] | None]:
    """A progress bar of a recording's steps on stderr (tqdm: steps done, steps/s, time left), shown
    after 2 s on a terminal; elsewhere one summary line for a recording that took longer than that."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(total=total, unit="step", desc=description, delay=2, leave=False, file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:  # disable=None: off where stderr is no terminal
        yield bar.update
    elapsed = time.perf_counter() - start
    if not sys.stderr.isatty() and elapsed > 2:
        print(f"{description}: {total} steps in {elapsed:.1f} s ({total / elapsed:.0f} steps/s)", file=sys.stderr)


def record(run: RunSpec, progress: bool = False) -> Recording:
    """Build one configuration, record its gradient profile at initialisation and, for a training task,
    every train.record_every steps while it trains. progress: a bar of each recording's steps."""
    dtype, device = DTYPES[run.dtype], torch.device(run.device)
    generator = torch.Generator().manual_seed(run.seed)
    task = TASKS[run.task.name]
    # Built in float64 on the CPU, then cast: float32 and float64 runs share their weights.
    model = build_network(run, generator)
    head = readout(model.output_size, task.output_size, generator) if task.output_size else None

    def draw() -> TaskBatch:
        return task.make(run.seq_len, run.batch_size, generator, input_size=run.input_size,
                         hidden_size=model.output_size).to(device, dtype)

    held_out = draw()  # evaluated and recorded on, never trained on
    model.to(device=device, dtype=dtype)
    parameters = list(model.parameters())
    if head is not None:
        head.to(device=device, dtype=dtype)
        parameters += list(head.parameters())

    def output_loss(batch: TaskBatch) -> Callable[[torch.Tensor], torch.Tensor]:
        """The task's loss of the top layer's outputs it reads (through the readout, if trained)."""
        return lambda outputs: batch.loss(outputs if head is None else head(outputs))

    omega_weight = run.train.omega
    if omega_weight and not (isinstance(model, RecurrentNet) and model.cell_name == "rnn" and model.num_layers == 1):
        raise NotApplicable("train.omega: Pascanu et al.'s Omega regulariser is defined for a one-layer rnn")
    fast = train_forward(model) if isinstance(model, RecurrentNet) and not omega_weight else None

    def task_loss(batch: TaskBatch) -> torch.Tensor:
        """The training loss of a batch: through whole-sequence layers where the equations are torch's
        (harness.core.sequences: its own on the CPU for the rnn and gru, torch's fused modules otherwise;
        the same parameters; tested equal to the explicit cells), else the explicit cells; plus
        train.omega times Omega (harness.core.train.omega) where asked for."""
        if fast is not None:
            outputs = fast(batch.inputs)  # (T, B, H): the top layer's h at every step
            return output_loss(batch)(outputs[-1:] if batch.final_state_only else outputs)
        states = model(batch.inputs, model.initial_state(run.batch_size))
        steps = states[-1:] if batch.final_state_only else states[1:]
        loss = output_loss(batch)(torch.stack([model.top_hidden(state) for state in steps]))
        if not omega_weight:
            return loss
        w_hh, b_hh = model.weight_hh_l0, model.bias_hh_l0
        with torch.no_grad():  # f'_t at each step's pre-activation, held constant as Omega asks
            drives = model.input_drive(batch.inputs)
            slopes = [SLOPES[model.activation](pre, model.act(pre)) for pre in
                      (drive + recurrent(h, w_hh, b_hh) for drive, h in zip(drives, states[:-1]))]
        return loss + omega_weight * omega(loss, states[1:], slopes, w_hh)

    segment = segment_length(model, run.seq_len, run.batch_size, dtype.itemsize, run.recorder,
                             run.memory.fraction, run.memory.segment)
    profiles, flags = [], set()

    def record_at(step: int, tangent: CarriedTangent | None = None) -> float:
        with flush_denormals(), step_bar(progress, 2 * run.seq_len, f"recording (training step {step})"
                                         if run.train.steps else "recording") as update:
            log_norms, loss, finite = record_profile(model, held_out.inputs, output_loss(held_out),
                                                     held_out.final_state_only, run.recorder, segment, update,
                                                     tangent)
        profiles.append((step, log_norms))
        flags.update(status_flags(log_norms, finite, run.recorder))
        return loss.item()

    drive_var, drive_cv = input_drive_stats(model, held_out.inputs)
    # The recording at initialisation visits the trajectory the largest Lyapunov exponent follows
    # (same inputs, S_0 = 0), so it carries the exponent's tangent where it can; its first tangent is
    # drawn here, where predictions would have drawn it, so every later draw is unchanged.
    tangent = CarriedTangent(model, run.seq_len, run.batch_size, generator, next(model.parameters())) \
        if carries_lyapunov(model, run) else None
    initial_loss = record_at(0, tangent)
    with flush_denormals():
        theory = predictions(model, run, held_out.inputs, drive_var, generator,
                             carried_lyapunov=None if tangent is None else tangent.exponent())
    detail = None
    if run.record.units:
        inputs = held_out.inputs[0:run.seq_len] if isinstance(held_out.inputs, StreamedInputs) else held_out.inputs
        with flush_denormals():
            detail = record_detail(model, inputs, output_loss(held_out))
    # A loss table belongs to a trained task: the probe's readout is no training loss.
    losses = [{"step": 0, "eval_loss": initial_loss, "elapsed_s": 0.0}] if task.output_size else []
    baseline = task.baseline(run.seq_len)
    if run.train.steps:
        def loss_of_fresh_batch() -> torch.Tensor:
            batch = draw()
            with flush_denormals():
                return task_loss(batch)
        floss = None
        if run.train.flossing_k:
            if not isinstance(model, RecurrentNet):
                raise NotApplicable("train.flossing_k: gradient flossing needs the built-in cells' JVPs (rnn, lstm, gru)")
            flossing_generator = torch.Generator().manual_seed(run.seed)  # its tangents; draw() keeps its own

            def flossing_objective() -> torch.Tensor:
                with flush_denormals():
                    return flossing_loss(model, draw().inputs, run.train.flossing_k, flossing_generator)
            floss = flossing_objective
        for row in train(parameters, run.train, loss_of_fresh_batch, record_at, baseline, floss):
            if row.pop("diverged"):
                flags.add("diverged")
                break
            losses.append(row)
    final = losses[-1]["eval_loss"] if losses else math.nan
    extras = {"input_drive_var": drive_var, "input_drive_var_cv": drive_cv, **theory, "final_loss": final,
              "segment_length": segment,
              "baseline": baseline, "solved": bool(final <= SOLVED_FRACTION * baseline) if losses else None}
    order = ["diverged", "nan", "overflow", "underflow", "zero"]
    return Recording(profiles, losses, [f for f in order if f in flags], extras, model,
                     closed_form_profile(model, run, held_out.readout), detail)


def run_meta(cfg: DictConfig | dict[str, Any], choices: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's columns and the start of its meta.json: what it is and where it ran. Raises ConfigError."""
    config = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    columns = config_columns(config)
    meta: dict[str, Any] = {
        "run_id": run_id(columns), "columns": columns, "config": config,
        "choices": choices or {}, "seed": columns["seed"], "git_commit": git_commit(),
        "code": code_identity(config),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "hydra": importlib.metadata.version("hydra-core"), "numpy": np.__version__},
        "torch_threads": torch.get_num_threads(), "error": None,
    }
    return columns, meta


def record_failure(cfg: DictConfig | dict[str, Any], out_dir: Path, choices: dict[str, Any] | None,
                   error: str) -> None:
    """Mark out_dir as a finished, failed run of cfg: for a run whose process died before it could
    say so itself (a crash in native code, a kill), as its supervisor saw it."""
    _, meta = run_meta(cfg, choices)
    write_json({**meta, "status": "failed", "error": error}, out_dir / META)
    write_done(out_dir)


def run(cfg: DictConfig | dict[str, Any], out_dir: Path, choices: dict[str, Any] | None = None,
        progress: bool = False) -> str:
    """Run cfg into out_dir and return its status: ok, comma-joined numerical flags, failed, or
    not_applicable (a setting that means nothing for this cell; harness.core.init.NotApplicable).

    A ConfigError propagates (nothing is computed or written); any other exception is recorded in the
    run's metadata as status failed, so that one broken run never stops or hides the others.
    """
    columns, meta = run_meta(cfg, choices)
    rid = meta["run_id"]
    start = time.perf_counter()
    try:
        recording = record(RunSpec.from_columns(columns), progress)
        meta.update(recording.extras)
        profile = pd.concat([profile_frame(log_norms, rid, columns, recording.model.state_names, step)
                             for step, log_norms in recording.profiles], ignore_index=True)
        at_init = (profile.step == 0) & (profile.state == "h") & (profile.layer == columns["num_layers"] - 1)
        for name, log10_norm in recording.closed_form.items():  # theory beside the measurement it predicts
            profile.loc[at_init, name] = log10_norm[profile.t[at_init].to_numpy()]
        write_parquet(profile, out_dir / PROFILE)
        if recording.losses:
            write_parquet(pd.DataFrame(recording.losses).assign(run_id=rid), out_dir / LOSSES)
        if recording.detail is not None:
            units, gates = detail_frames(recording.detail, rid, recording.model.state_names,
                                         recording.model.block_sizes)
            write_parquet(units, out_dir / UNITS)
            if gates is not None:
                write_parquet(gates, out_dir / GATES)
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
        log.info("%s: rate %+.4f nats/step (%s), log10 gain %.2f over %d steps, status %s, %.2f s",
                 rid, fit["rate"], fit["regime"], fit["log10_gain"], columns["seq_len"],
                 meta["status"], meta["wall_time_s"])
    return meta["status"]
