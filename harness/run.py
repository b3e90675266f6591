"""One run: build the model and task from a config, record the gradient profile, write the run folder.

    config -> RecurrentNet + initialise -> task batch -> forward T steps -> recorder -> profile table
"""
from __future__ import annotations

import functools
import logging
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from harness.analysis import fit_profile
from harness.cells import RecurrentNet
from harness.config import DTYPES, ROOT, ConfigError, config_columns, run_id
from harness.gradients import flush_denormals, record_log_norms
from harness.init import initialise
from harness.results import DONE, META, PROFILE, profile_frame, write_json, write_parquet
from harness.tasks import TASKS
from harness.theory import predictions

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (with -dirty if it has local changes), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def input_drive_stats(model: RecurrentNet, inputs: torch.Tensor) -> tuple[float, float]:
    """Mean over the bottom layer's units of E[(W_ih x_t + b_ih + b_hh)^2] over the run's inputs, and
    its coefficient of variation across units (mean-field theory assumes every unit sees the same)."""
    with torch.no_grad():
        drive = torch.nn.functional.linear(inputs, model.weight_ih_l0, model.bias_ih_l0 + model.bias_hh_l0)
        per_unit = drive.double().pow(2).mean(dim=(0, 1))
    mean = per_unit.mean().item()
    return mean, (per_unit.std().item() / mean if mean > 0 else float("nan"))


def status_flags(log_norms: torch.Tensor, states_finite: bool, recorder: str) -> list[str]:
    """Numerical trouble as data. The loss's own step t = T is left out: there the lstm's c (and any
    block the loss does not read) has a gradient that is exactly 0 by construction."""
    before_loss = log_norms[:-1]
    flags = [] if states_finite else ["diverged"]  # the forward pass itself reached inf or nan
    if torch.isnan(before_loss).any():
        flags.append("nan")
    if torch.isposinf(before_loss).any():
        flags.append("overflow")
    if torch.isneginf(before_loss).any():
        # autograd: underflow (or a true zero); exact: the gradient is exactly zero (e.g. dead relus)
        flags.append("underflow" if recorder == "autograd" else "zero")
    return flags


def record(columns: dict[str, Any]) -> tuple[torch.Tensor, list[str], dict[str, float], RecurrentNet]:
    """Build, run and record one configuration; return ln-norms (T+1, batch, parts), flags, extras
    (the input drive's statistics and the theory's predictions, harness.theory)."""
    dtype, device = DTYPES[columns["dtype"]], torch.device(columns["device"])
    generator = torch.Generator().manual_seed(columns["seed"])
    # Initialise in float64 on the CPU, then cast: float32 and float64 runs share their weights.
    model = RecurrentNet(columns["cell"], columns["activation"], columns["input_size"],
                         columns["hidden_size"], columns["num_layers"]).double()
    initialise(model, columns["init"], columns["scale"], generator, columns.get("cell.forget_bias", 0.0))
    batch = TASKS[columns["task"]](columns["seq_len"], columns["batch_size"], columns["input_size"],
                                   columns["hidden_size"], generator)
    if columns["recorder"] == "exact" and not batch.final_state_only:
        raise ConfigError(f"recorder=exact: task={columns['task']} has a loss on every step; "
                          "expected recorder=autograd")
    model.to(device=device, dtype=dtype)
    batch.to(device, dtype)
    drive_var, drive_cv = input_drive_stats(model, batch.inputs)
    with flush_denormals():
        states = model(batch.inputs, model.initial_state(columns["batch_size"]))
        loss = batch.loss(model.top_hidden(states[-1]))
        log_norms = record_log_norms(loss, states, model.num_parts, columns["recorder"])
        states_finite = bool(torch.isfinite(states[-1]).all() and torch.isfinite(loss))
        theory = predictions(model, columns, batch.inputs, drive_var, generator)
    flags = status_flags(log_norms, states_finite, columns["recorder"])
    return log_norms, flags, {"input_drive_var": drive_var, "input_drive_var_cv": drive_cv, **theory}, model


def run(cfg: DictConfig, out_dir: Path, choices: dict[str, Any] | None = None) -> str:
    """Run cfg into out_dir and return its status: ok, comma-joined numerical flags, or failed.

    A ConfigError propagates (nothing is computed or written); any other exception is recorded in the
    run's metadata as status failed, so that one broken run never stops or hides the others.
    """
    columns = config_columns(cfg)
    rid = run_id(columns)
    meta: dict[str, Any] = {
        "run_id": rid, "columns": columns, "config": OmegaConf.to_container(cfg, resolve=True),
        "choices": choices or {}, "seed": columns["seed"], "git_commit": git_commit(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "hydra": hydra.__version__, "numpy": np.__version__},
        "torch_threads": torch.get_num_threads(), "error": None,
    }
    start = time.perf_counter()
    try:
        log_norms, flags, extras, model = record(columns)
        meta.update(extras)
        profile = profile_frame(log_norms, rid, columns, model.cell.states)
        write_parquet(profile, out_dir / PROFILE)
        meta["status"] = ",".join(flags) or "ok"
    except ConfigError:
        raise
    except Exception as error:  # recorded, not raised: see the docstring
        meta.update(status="failed", error=f"{type(error).__name__}: {error}")
        log.exception("run %s failed", rid)
    meta["wall_time_s"] = time.perf_counter() - start
    write_json(meta, out_dir / META)
    (out_dir / DONE).touch()
    if meta["status"] != "failed":
        top = profile[(profile.state == "h") & (profile.layer == columns["num_layers"] - 1)]
        fit = fit_profile(top.lag.to_numpy(), top.log10_norm.to_numpy())
        log.info("%s: rate %+.4f nats/step (%s), log10 gain %.2f over %d steps, status %s, %.2f s",
                 rid, fit["rate"], fit["regime"], fit["log10_gain"], columns["seq_len"],
                 meta["status"], meta["wall_time_s"])
    return meta["status"]
