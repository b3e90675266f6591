"""The long tables of one run, built from its recorded tensors: the profile (a row per training step,
layer, state and t, with batch quantiles of the log10 norms) and, with record.units=true, the per-unit
and per-gate rows; how a table is written (through harness.core.runfolder.write_atomic); and a run's
tables written into its folder (write_tables).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.core.runfolder import GATES, LOSSES, PROFILE, UNITS, write_atomic

if TYPE_CHECKING:  # harness.lab.run imports this module; torch for a hint only (reading tables needs none)
    import torch

    from harness.lab.run import Recording

QUANTILES = {
    "log10_norm_q10": 0.10,
    "log10_norm_q25": 0.25,
    "log10_norm": 0.5,
    "log10_norm_q75": 0.75,
    "log10_norm_q90": 0.90,
}


def detail_frames(
    detail: Any, run_id: str, state_names: tuple[str, ...], block_sizes: tuple[int, ...]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """units.parquet and gates.parquet of one harness.core.detail.Detail (batch medians, log10)."""
    log10 = math.log(10)
    units = (detail.units.median(dim=1).values / log10).numpy()  # (T+1, state)
    steps, width = units.shape
    names = [state_names[b % len(state_names)] for b, size in enumerate(block_sizes) for _ in range(size)]
    index = [j for size in block_sizes for j in range(size)]
    layer = [b // len(state_names) for b, size in enumerate(block_sizes) for _ in range(size)]
    unit_frame = pd.DataFrame(
        {
            "run_id": run_id,
            "t": np.repeat(np.arange(steps), width),
            "lag": np.repeat(steps - 1 - np.arange(steps), width),
            "layer": np.tile(layer, steps),
            "state": np.tile(names, steps),
            "unit": np.tile(index, steps),
            "log10_norm": units.reshape(-1),
        }
    )
    if detail.gates is None:
        return unit_frame, None
    gates = (detail.gates.median(dim=1).values / log10).numpy()  # (T, gates), t = 1..T
    weights = (detail.weights / log10).numpy()
    count = len(detail.gate_names)
    t = np.repeat(np.arange(1, steps), count)
    gate_frame = pd.DataFrame(
        {
            "run_id": run_id,
            "t": t,
            "lag": steps - 1 - t,
            "layer": np.tile(detail.gate_layers, steps - 1),
            "gate": np.tile(detail.gate_names, steps - 1),
            "log10_norm": gates.reshape(-1),
            "log10_weight": weights.reshape(-1),
        }
    )
    return unit_frame, gate_frame


def profile_frame(
    log_norms: torch.Tensor, run_id: str, columns: dict[str, Any], state_names: tuple[str, ...], step: int = 0
) -> pd.DataFrame:
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
    frame = pd.DataFrame(
        {
            "run_id": np.repeat(run_id, len(t)),
            **{k: np.repeat(v, len(t)) for k, v in columns.items()},
            "layer": part // len(state_names),
            "state": np.array(state_names)[part % len(state_names)],
            "t": t,
            "lag": steps - 1 - t,
            "step": step,
        }
    )
    for name, values in zip(QUANTILES, quantiles):
        frame[name] = values.T.reshape(-1)  # (parts, steps) flattened like `part` and `t`
    return frame


def write_tables(recording: Recording, columns: dict[str, Any], rid: str, out_dir: Path) -> pd.DataFrame:
    """Write a recording's tables into out_dir: the profile (with the closed-form theory beside the
    measurement it predicts), the loss table of a trained task, the units and gates tables if
    recorded. Returns the profile table."""
    profile = pd.concat(
        [
            profile_frame(log_norms, rid, columns, recording.model.state_names, step)
            for step, log_norms in recording.profiles
        ],
        ignore_index=True,
    )
    at_init = (profile.step == 0) & (profile.state == "h") & (profile.layer == columns["num_layers"] - 1)
    for name, log10_norm in recording.closed_form.items():
        profile.loc[at_init, name] = log10_norm[profile.t[at_init].to_numpy()]
    write_parquet(profile, out_dir / PROFILE)
    if recording.losses:
        write_parquet(pd.DataFrame(recording.losses).assign(run_id=rid), out_dir / LOSSES)
    if recording.detail is not None:
        units, gates = detail_frames(recording.detail, rid, recording.model.state_names, recording.model.block_sizes)
        write_parquet(units, out_dir / UNITS)
        if gates is not None:
            write_parquet(gates, out_dir / GATES)
    return profile


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    try:
        write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed kinds, which pyarrow refuses
        write_atomic(path, lambda tmp: as_text_where_mixed(frame).to_parquet(tmp, index=False))


WRITTEN = ".written"  # in a folder collect or plot write: the tables and figure pages they wrote there


def written(root: Path) -> set[str]:
    """The files (paths relative to root) that collect and plot wrote in root and may remove; none where
    the record is missing or unreadable (then nothing is removed)."""
    try:
        names = json.loads((root / WRITTEN).read_text())
    except (OSError, ValueError):
        return set()
    return {name for name in names if isinstance(name, str)} if isinstance(names, list) else set()


def replace_written(root: Path, now: set[str], family: Callable[[str], bool]) -> None:
    """Remove the files of a family (names relative to root: `family(name)`) that an earlier call
    recorded writing and this one did not (`now`); record what this one wrote. A file the harness did
    not record writing is never removed, whatever its name: the user's own fits.parquet or heatmap.png
    stays."""
    before = written(root)
    for name in {name for name in before if family(name)} - now:
        path = root / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    kept = {name for name in before if not family(name)} | now
    if kept != before:
        write_atomic(root / WRITTEN, lambda tmp: Path(tmp).write_text(json.dumps(sorted(kept))))


def write_or_remove(frame: pd.DataFrame, path: Path) -> None:
    """frame to path (parquet, or csv by its suffix); where frame is empty, the table an earlier collect
    or plot recorded writing there is removed instead (replace_written), so that a folder never holds
    a table of runs its other tables no longer have."""
    if not frame.empty:
        (write_csv if path.suffix == ".csv" else write_parquet)(frame, path)
    replace_written(path.parent, set() if frame.empty else {path.name}, path.name.__eq__)


def as_text_where_mixed(frame: pd.DataFrame) -> pd.DataFrame:
    """frame with each column that holds values of more than one kind (numbers, text, true or false: a
    user cell's argument 2 in one run and "abc" in another) held as text, its gaps kept."""

    def kind(value: Any) -> type:
        return bool if isinstance(value, (bool, np.bool_)) else str if isinstance(value, str) else float

    def text(value: Any) -> Any:
        return value if value is None or value != value else str(value)  # value != value: NaN

    mixed = [c for c in frame.columns if frame[c].dtype == object and len(set(map(kind, frame[c].dropna()))) > 1]
    return frame.assign(**{c: frame[c].map(text) for c in mixed})


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
