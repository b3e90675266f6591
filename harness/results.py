"""Result tables: the per-run profile, atomic writes, and collecting run folders into sweep tables.

A run folder holds `profile.parquet`, `meta.json` and, written last, the completion marker `DONE`;
a folder with Hydra's `.hydra/` but no `DONE` is an incomplete run (killed or still running).
A sweep folder gains `profile.parquet` (all runs' profiles), `fits.parquet` (a fit per run, layer,
state and training step; harness.analysis), `losses.parquet` (training runs' loss tables), and
`summary.parquet` / `summary.csv` (one row per run, failed and incomplete runs included, with the
run's headline fit, the theory's predictions and their gaps).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from harness.analysis import FIT_COLUMNS, fit_runs, headline
from harness.config import ConfigError, config_columns, flat_config, run_id
from harness.theory import THEORY_COLUMNS

DONE = "DONE"
PROFILE, META, LOSSES = "profile.parquet", "meta.json", "losses.parquet"
QUANTILES = {"log10_norm_q10": 0.10, "log10_norm_q25": 0.25, "log10_norm": 0.5,
             "log10_norm_q75": 0.75, "log10_norm_q90": 0.90}


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from a cluster's group
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    _atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_json(data: dict[str, Any], path: Path) -> None:
    def dump(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(data, indent=2, default=str) + "\n")
    _atomic(path, dump)


def profile_frame(log_norms: torch.Tensor, run_id: str, columns: dict[str, Any],
                  state_names: tuple[str, ...], step: int = 0) -> pd.DataFrame:
    """Long table of one recording: a row per (layer, state, t) with batch quantiles of log10 norms.

    Quantiles are nearest-rank (each is one sample's value), so -inf and +inf stay meaningful;
    nan samples are left out.
    """
    steps, _, parts = log_norms.shape
    log10 = (log_norms / math.log(10)).cpu().numpy()
    with warnings.catch_warnings():  # an all-nan step gives nan, which is the right answer
        warnings.simplefilter("ignore", RuntimeWarning)
        quantiles = np.nanquantile(log10, list(QUANTILES.values()), axis=1, method="nearest")
    t = np.tile(np.arange(steps), parts)
    part = np.repeat(np.arange(parts), steps)
    frame = pd.DataFrame({"run_id": np.repeat(run_id, len(t)),
                          **{k: np.repeat(v, len(t)) for k, v in columns.items()},
                          "layer": part // len(state_names),
                          "state": np.array(state_names)[part % len(state_names)],
                          "t": t, "lag": steps - 1 - t, "step": step})
    for name, values in zip(QUANTILES, quantiles):
        frame[name] = values.T.reshape(-1)  # (parts, steps) flattened like `part` and `t`
    return frame


def find_runs(root: Path) -> list[Path]:
    """Run folders under root (root itself included): those where Hydra left a `.hydra/`."""
    def order(path: Path) -> tuple:
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.relative_to(root).parts)
    return sorted({p.parent for p in root.rglob(".hydra") if p.is_dir()}, key=order)


def _run_row(run_dir: Path, root: Path) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """One summary row (without the fit) for a run folder, and its profile if it has one."""
    where = {"run_dir": str(run_dir.relative_to(root))}
    if not (run_dir / DONE).exists():
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        try:
            columns = config_columns(cfg)
            where["run_id"] = run_id(columns)
        except ConfigError:
            columns = flat_config(cfg)
        return {**where, **columns, "status": "incomplete"}, None
    meta = json.loads((run_dir / META).read_text())
    row = {"run_id": meta["run_id"], **where, **meta["columns"]}
    row.update({k: meta.get(k) for k in ("status", "error", "wall_time_s", "input_drive_var",
                                         "input_drive_var_cv", *THEORY_COLUMNS, "final_loss", "baseline", "solved")})
    profile = pd.read_parquet(run_dir / PROFILE) if (run_dir / PROFILE).exists() else None
    return row, profile


def collect_losses(root: Path, summary: pd.DataFrame) -> pd.DataFrame:
    """Every run's loss table (harness.train), beside its config columns."""
    tables = [pd.read_parquet(root / d / LOSSES) for d in summary.run_dir if (root / d / LOSSES).exists()]
    if not tables:
        return pd.DataFrame()
    losses = pd.concat(tables, ignore_index=True)
    config = summary.drop(columns=[c for c in summary.columns if c in losses and c != "run_id"])
    return losses.merge(config, on="run_id", how="left")


def collect(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rebuild a sweep's tables from its run folders and write them into root; return (profile,
    summary, losses).

    Works on any folder of runs: a finished sweep, a failed or interrupted one, or one run.
    """
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"{root}: no run folders (a run folder has a .hydra/ subfolder)")
    rows, profiles = zip(*(_run_row(run, root) for run in runs))
    summary = pd.DataFrame(list(rows))
    found = [p for p in profiles if p is not None]
    profile = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if found:
        fits = fit_runs(profile)
        summary = summary.join(headline(fits).set_index("run_id")[FIT_COLUMNS], on="run_id")
        at_init = headline(fits[fits.step == fits.groupby("run_id").step.transform("min")])
        summary["rate_init"] = summary.run_id.map(at_init.set_index("run_id").rate)
        for name in ("linear", "mean_field", "lyapunov"):  # measured minus predicted, nats per step
            summary[f"gap_{name}"] = summary.rate - summary.get(f"theory_{name}", float("nan"))
        write_parquet(fits, root / "fits.parquet")
    if runs != [root]:  # a single run folder already holds its own profile
        write_parquet(profile, root / PROFILE)
    write_parquet(summary, root / "summary.parquet")
    write_csv(summary, root / "summary.csv")
    losses = collect_losses(root, summary)
    if not losses.empty and runs != [root]:
        write_parquet(losses, root / LOSSES)
    return profile, summary, losses
