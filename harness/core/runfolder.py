"""A run folder on disk, as the command line and harness.record's GradientProfile.save write it, and
the long profile table.

    <run>/profile.parquet   a row per (training step, layer, state, t): batch quantiles of log10 norms
    <run>/meta.json         run_id, the run's columns, status, theory, timings, versions
    <run>/losses.parquet    training runs only
    <run>/DONE              written last: the run is complete

Every file is written through a temporary file and a rename, so a reader never sees half of one.
pandas is imported only where a table is built (the core layer imports torch alone).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

DONE = "DONE"
PROFILE, META, LOSSES = "profile.parquet", "meta.json", "losses.parquet"
QUANTILES = {"log10_norm_q10": 0.10, "log10_norm_q25": 0.25, "log10_norm": 0.5,
             "log10_norm_q75": 0.75, "log10_norm_q90": 0.90}


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, write: Any) -> None:
    """Call write(temporary path) in path's folder, then rename it to path: readers never see half a
    file, and a symbolic link placed at path is replaced, never written through."""
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
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_bytes(data: bytes, path: Path) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(text: str, path: Path) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json(data: dict[str, Any], path: Path) -> None:
    write_text(json.dumps(data, indent=2, default=str) + "\n", path)


def profile_frame(log_norms: torch.Tensor, run_id: str, columns: dict[str, Any],
                  state_names: tuple[str, ...], step: int = 0) -> pd.DataFrame:
    """Long table of one recording: a row per (layer, state, t) with batch quantiles of log10 norms.

    Quantiles are nearest-rank (each is one sample's value), so -inf and +inf stay meaningful;
    nan samples are left out.
    """
    import pandas as pd

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


