"""The mean-field curves the phase figure draws: each line's own network's rate, dense in scale.

    mean_field_curves(summary)       the curves of a sweep's lines (builds networks: torch)
    line_curve(curves, runs, low, high)  the stored curve of one line of the figure (tables only)

A curve is what the cell's protocol answers (its network's mean_field_curve: the rnn's, the gated
minimal's, gru's or lstm's at the gate biases its forget_bias and chrono settings give; harness.core.
protocol), so this module names no cell. The sweep computes them at its end, where the networks are
(harness.cli.callbacks), and stores them beside the summary as mean_field.parquet; the figure reads
that table, so harness.plot and harness.collect draw them without torch and without a model. A line
whose curve the table lacks (a sweep from before it, runs added since) is drawn without one.

Rows: the settings a curve depends on (SETTINGS, as strings: setting_values), the input drive it was
computed at (`input_drive_var`), `scale` and `rate` (nats per step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

FILE = "mean_field.parquet"  # beside summary.parquet
# What a curve depends on besides the drive (the scale is its axis); absent columns read as unset.
SETTINGS = ("cell", "activation", "init", "num_layers", "cell.forget_bias", "cell.chrono_tmax")
# Points per curve: one gated rate costs 5-35 ms (the rnn's whole curve comes at once), a chrono
# initialisation's twelve classes of units ~10x that.
POINTS, CHRONO_POINTS = 40, 12
COLUMNS = [*SETTINGS, "input_drive_var", "scale", "rate"]
NEAREST = 0.01  # a line takes a stored curve whose drive is within 1% of its own


def setting_values(runs: pd.DataFrame) -> tuple[str, ...]:
    """A line's settings as the table stores them: its first run's, numbers written as floats (a table's
    300 and another's 300.0 are one setting), a missing value as ''."""
    first = runs.iloc[0]
    return tuple(_written(first[name]) if name in runs else "" for name in SETTINGS)


def _written(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        return str(value)
    return repr(float(value))


def line_drive(runs: pd.DataFrame) -> float:
    """The line's input drive: its runs' median to 3 significant digits, so that lines whose drives differ
    by less (other seeds and lengths) share one curve."""
    return float(f"{runs.input_drive_var.median():.3g}")


def mean_field_curves(summary: pd.DataFrame) -> pd.DataFrame:
    """The curve of every line of the phase figure whose runs have a mean-field prediction: lines are the
    runs that differ only in scale and seed, each at its line_drive, from the smallest scale run to the
    largest; one curve per distinct (settings, drive)."""
    if "theory_mean_field" not in summary or "scale" not in summary:
        return pd.DataFrame(columns=COLUMNS)
    runs = summary[np.isfinite(pd.to_numeric(summary.theory_mean_field, errors="coerce"))]
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    from harness.lab.summary import config_columns  # noqa: PLC0415

    lines = runs.groupby([c for c in config_columns(runs) if c != "scale"], dropna=False, sort=True)
    wanted = dict.fromkeys((setting_values(line), line_drive(line)) for _, line in lines)
    low, high = float(summary.scale.min()), float(summary.scale.max())
    rows = [row for settings, drive in wanted for row in _curve_rows(settings, drive, low, high)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _curve_rows(settings: tuple[str, ...], drive: float, low: float, high: float) -> Iterable[dict[str, Any]]:
    """The rows of one curve: a network of the line's cell, one unit wide (the curve reads no
    parameters), answers; none where its protocol says the mean field does not apply."""
    from harness.core.errors import HarnessError  # noqa: PLC0415  torch: only where curves are computed
    from harness.core.networks import build  # noqa: PLC0415

    cell, activation, init, num_layers, forget_bias, chrono_tmax = settings
    try:
        network = build(cell, activation, 1, 1, int(float(num_layers or 1)), {})
    except (HarnessError, KeyError, ValueError):  # a user cell, or settings from another version
        return []
    chrono = int(float(chrono_tmax)) if chrono_tmax else None
    dense = np.linspace(low, high, CHRONO_POINTS if chrono else POINTS)
    rates = network.mean_field_curve(init, dense, drive, float(forget_bias or 0.0), chrono)
    if isinstance(rates, str):
        return []
    named = dict(zip(SETTINGS, settings))
    return [{**named, "input_drive_var": drive, "scale": s, "rate": r} for s, r in zip(dense, rates)]


def line_curve(curves: pd.DataFrame | None, runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(scales, rates) of the stored curve with the line's settings at the drive nearest its own (within
    NEAREST of it), or None."""
    if curves is None or curves.empty:
        return None
    same = np.ones(len(curves), dtype=bool)
    for name, value in zip(SETTINGS, setting_values(runs)):
        same &= curves[name].astype(str).to_numpy() == value
    if not same.any():
        return None
    candidates = curves[same]
    drive = line_drive(runs)
    if not math.isfinite(drive):
        return None
    nearest = candidates.input_drive_var.iloc[int(np.argmin(np.abs(candidates.input_drive_var - drive)))]
    if abs(nearest - drive) > NEAREST * abs(drive):  # another line's drive: not this line's curve
        return None
    curve = candidates[candidates.input_drive_var == nearest].sort_values("scale")
    return curve.scale.to_numpy(float), curve.rate.to_numpy(float)
