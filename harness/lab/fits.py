"""Fits over tables: one fit per run, layer, state and training step (harness.core.analysis.fit_profile),
and the fit that stands for a run in its summary; a sweep's fits as harness.lab.results stored them
(FITS), taken where they are the profile's, so that the figures do not fit every run again."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.analysis import FIT_COLUMNS, fit_profile
from harness.lab.pool import parts, run_in_processes

FITS = "fits.parquet"  # a sweep's fit_runs(profile), written by harness.lab.results.collect
KEYS = ["run_id", "step", "layer", "state"]  # what one fit is of


def is_top_h(frame: pd.DataFrame) -> pd.Series:
    """Rows of the top layer's h: where the loss reads the network."""
    return (frame.state == "h") & (frame.layer == frame.groupby("run_id").layer.transform("max"))


def fit_runs(profile: pd.DataFrame, workers: int = 1) -> pd.DataFrame:
    """One fit per run, layer, state and training step, beside the profile's config columns; fitted in
    `workers` forked processes at once, each a consecutive part of the fits (harness.lab.pool)."""
    if profile.empty:
        return pd.DataFrame()
    # The gradient the loss puts on the network: the top layer's h at lag 0.
    output = profile[is_top_h(profile) & (profile.lag == 0)].set_index(["run_id", "step"]).log10_norm
    # Each group's rows as one slice of arrays sorted by group (pandas' per-group frames cost more
    # than the fits themselves on a few hundred short profiles).
    order, starts = groups(profile)
    lags, norms = profile.lag.to_numpy()[order], profile.log10_norm.to_numpy()[order]
    beside = beside_fits(profile, order, starts)
    each = list(
        zip(
            np.split(lags, starts[1:]),
            np.split(norms, starts[1:]),
            [output.get((run, step)) for run, step in zip(beside.run_id, beside.step)],
        )
    )
    jobs = [functools.partial(_fit_part, each[part.start : part.stop]) for part in parts(len(each), workers)]
    fits = [fit for part in run_in_processes(jobs, workers) for fit in part]
    return pd.concat([beside, pd.DataFrame(fits)], axis=1)


def _fit_part(each: list[tuple[np.ndarray, np.ndarray, float | None]]) -> list[dict]:
    return [fit_profile(lag, norm, output) for lag, norm, output in each]


def groups(profile: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The profile's row positions ordered by fit (KEYS; fits in the order their first rows come),
    and where each fit's rows start in that order."""
    group = profile.groupby(KEYS, sort=False).ngroup().to_numpy()
    order = np.argsort(group, kind="stable")
    return order, np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])


def beside_fits(profile: pd.DataFrame, order: np.ndarray, starts: np.ndarray) -> pd.DataFrame:
    """fit_runs' columns other than the fits: each fit's config columns, step, layer and state."""
    config = [
        c for c in profile.columns if c not in {"t", "lag", "layer", "state", "step"} and not c.startswith("log10_norm")
    ]
    return profile.iloc[order[starts]][[*config, "step", "layer", "state"]].reset_index(drop=True)


def stored_fits(profile: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame | None:
    """fit_runs(profile) with its fits read from `stored` (fit_runs of these runs, as collect stored
    it) instead of fitted again; None where stored does not hold exactly the profile's fits, in
    fit_runs' order. The columns beside the fits come from the profile, as fit_runs takes them, so
    that a table read back from parquet, or filtered, gives the frame fit_runs would."""
    if profile.empty or not {*KEYS, *FIT_COLUMNS} <= set(stored.columns):
        return None
    beside = beside_fits(profile, *groups(profile))
    stored = stored.reset_index(drop=True)
    if not beside[KEYS].equals(stored[KEYS]):
        return None
    return pd.concat([beside, stored[FIT_COLUMNS]], axis=1)


def read_fits(folder: Path) -> pd.DataFrame | None:
    """folder's stored fits (FITS), or None where it has none with this analysis' columns, or
    they cannot be read (the figures then fit the runs again, as before collect stored them)."""
    path = folder / FITS
    if not path.exists():
        return None
    try:
        fits = pd.read_parquet(path)
    except Exception:  # noqa: BLE001  a truncated or garbage table: the runs are fitted again
        return None
    return fits if {*KEYS, *FIT_COLUMNS} <= set(fits.columns) else None


def at_first_step(frame: pd.DataFrame) -> pd.DataFrame:
    """frame's rows (a profile's or fits') of each run's first recorded step."""
    return frame[frame.step == frame.groupby("run_id").step.transform("min")]


def headline(fits: pd.DataFrame) -> pd.DataFrame:
    """The fit that stands for a run in its summary: the top layer's h at the run's last step."""
    top = fits[is_top_h(fits)]
    return top[top.step == top.groupby("run_id").step.transform("max")]
