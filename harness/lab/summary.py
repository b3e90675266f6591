"""The per-configuration table: the runs that differ only in their seed pooled into one row, with how
many there are and how far they spread.

    summary_by_config(summary)       a row per configuration (every config column but seed)
    pooled(frame, keys, metrics)     the same statistics over any grouping (the figures' points)
    t_interval(values)               n, mean, median and the interval of one sample

summary_by_config.parquet (and .csv) beside summary.parquet: every config column of the summary but
seed; `n_seeds`, the runs pooled (those that were measured: status ok or numerical flags) and `seeds`,
theirs ("0,1,2"); then for each metric of METRICS the summary has (rate, half_life, power_exponent,
horizon, log10_gain, each theory gap): `<metric>_n` (its finite values pooled), `_mean`, `_median`, `_ci_low` and
`_ci_high`; and `horizon_censored_n`, how many of the horizons are censored at seq_len (lower bounds).

The interval is a two-sided 95% Student t interval on the mean: mean ± t(0.975, n − 1) · s / √n, s
the sample standard deviation (n − 1 in its denominator) of the n finite values; NaN where n < 2 (a
single seed says nothing of the spread). It assumes the seeds' values are independent draws from one
distribution; no bootstrap. The t quantile is computed here, with no scipy: the t distribution's CDF
in closed form for whole degrees of freedom, inverted by bisection (t_quantile).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from harness.core.spec import RECORDING, is_config_column
from harness.lab.tables import write_or_remove
from harness.lab.theory_table import THEORY

LEVEL = 0.95  # the interval's coverage, two-sided
# log10_gain: the end-to-end gain the seq_len figure draws, with the same interval
METRICS = ("rate", "half_life", "power_exponent", "horizon", "log10_gain", *(prediction.gap for prediction in THEORY))
STATISTICS = ("n", "mean", "median", "ci_low", "ci_high")
FILE = "summary_by_config"  # .parquet and .csv beside summary.parquet
MEASURED_FLAGS = {"diverged", "nan", "overflow", "underflow", "zero"}  # harness.lab.results.FLAGS


class Spread(NamedTuple):
    """One sample's statistics: its finite values' count, mean, median and LEVEL t interval of the mean."""

    n: int
    mean: float
    median: float
    ci_low: float
    ci_high: float


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with df (a whole number >= 1) degrees of freedom, in closed form
    (Abramowitz and Stegun 26.7.3-4): with theta = atan(t / sqrt(df)),
    odd df:  1/2 + (theta + sin theta cos theta (1 + 2/3 cos^2 + (2 4)/(3 5) cos^4 + ...)) / pi;
    even df: 1/2 + sin theta (1 + 1/2 cos^2 + (1 3)/(2 4) cos^4 + ...) / 2, df/2 terms in all."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df={df}: expected a whole number of degrees of freedom >= 1")
    theta = math.atan(t / math.sqrt(df))
    cos2, sin = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):  # (2 4 ... 2k) / (3 5 ... 2k+1) cos^(2k)
            term *= cos2 * (2 * k) / (2 * k + 1)
            total += term
        return 0.5 + (theta + sin * math.cos(theta) * total) / math.pi
    term, total = 1.0, 1.0
    for k in range(1, df // 2):  # (1 3 ... 2k-1) / (2 4 ... 2k) cos^(2k)
        term *= cos2 * (2 * k - 1) / (2 * k)
        total += term
    return 0.5 + sin * total / 2


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The p quantile (0.5 <= p < 1) of Student's t with df degrees of freedom: t_cdf inverted by
    bisection, to 1e-12."""
    if not 0.5 <= p < 1:
        raise ValueError(f"p={p}: expected a probability from 0.5 to 1")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    while high - low > 1e-12 * max(1.0, high):
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def t_interval(values: np.ndarray | pd.Series | list, level: float = LEVEL) -> Spread:
    """n, mean, median and the two-sided `level` t interval of the mean of the finite values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean, median = float(x.mean()), float(np.median(x))
    if n < 2:
        return Spread(1, mean, median, math.nan, math.nan)
    half = t_quantile(0.5 + level / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Spread(n, mean, median, mean - half, mean + half)


def pooled(frame: pd.DataFrame, keys: list[str], metrics: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """A row per combination of keys (None and NaN kept as values): `n_runs`, then for each metric
    in the frame <metric>_n, _mean, _median, _ci_low, _ci_high (t_interval)."""
    metrics = [m for m in metrics if m in frame]
    groups = frame.groupby(keys, sort=True, dropna=False) if keys else [((), frame)]
    rows = []
    for key, runs in groups:
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["n_runs"] = len(runs)
        for metric in metrics:
            spread = t_interval(runs[metric])
            row.update({f"{metric}_{name}": value for name, value in zip(STATISTICS, spread)})
        rows.append(row)
    columns = [*keys, "n_runs", *(f"{m}_{s}" for m in metrics for s in STATISTICS)]
    return pd.DataFrame(rows, columns=columns)


def config_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's config columns (the runs' settings) but seed, in their order; recording last, where
    it tells runs apart (recordings_apart)."""
    keys = setting_columns(frame)
    return [*keys, RECORDING] if recordings_apart(frame, keys) else keys


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's config columns but seed and recording, in their order: what a configuration is."""
    return [c for c in frame.columns if is_config_column(c) and c not in ("seed", RECORDING)]


def recordings_apart(frame: pd.DataFrame, keys: list[str]) -> bool:
    """Whether some configuration (runs alike in keys) holds two recordings of one seed: recordings from
    Python that are no seeds of one configuration (two models that no column tells apart, or one saved
    before recordings were hashed, which has none, beside a new one), which their `recording` then
    tells apart. A sweep's runs never do (one configuration and seed is one run_id), nor recordings
    that differ by seed alone: seeds of one configuration, pooled as a sweep's. Counted per recording,
    so a long table (a row per step) counts as its runs do."""
    if RECORDING not in frame or frame[RECORDING].isna().all():
        return False
    by = [k for k in [*keys, "seed"] if k in frame and k != RECORDING]
    if not by:
        return frame[RECORDING].nunique(dropna=False) > 1
    return bool(frame.groupby(by, dropna=False)[RECORDING].nunique(dropna=False).max() > 1)


def told_apart(runs: pd.DataFrame) -> pd.DataFrame:
    """runs with `recording` left only where it tells runs apart: in a configuration holding two
    recordings of one seed (recordings_apart); elsewhere none, so that those configurations pool their
    seeds whatever the others do. A frame without recordings is returned as it is."""
    keys = setting_columns(runs)
    if not keys or "seed" not in runs or not recordings_apart(runs, keys):
        return runs
    by_seed = runs.groupby([*keys, "seed"], dropna=False)[RECORDING]
    apart = by_seed.transform(lambda r: r.nunique(dropna=False) > 1).astype(bool)
    apart = apart.groupby([runs[k] for k in keys], dropna=False).transform("any").astype(bool)
    return runs.assign(**{RECORDING: runs[RECORDING].where(apart)})


def measured(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's runs that were measured (status ok, or numerical flags only), each run once."""
    if "status" not in summary or "run_id" not in summary:
        return summary.iloc[:0]
    runs = summary[
        summary.status.map(lambda s: isinstance(s, str) and (s == "ok" or set(s.split(",")) <= MEASURED_FLAGS))
    ]
    runs = runs[runs.run_id.notna()].drop_duplicates("run_id")
    return runs[~repeated_recordings(runs)]


def repeated_recordings(runs: pd.DataFrame) -> pd.Series:
    """Per run (a row each): whether it repeats an earlier run's recording under the same seed in the
    same configuration: one recording saved twice (through a model that wraps the module: the `model`
    column, no setting, differs, and so does the run_id), which is one run, counted once."""
    if RECORDING not in runs:
        return pd.Series(False, index=runs.index)
    keys = setting_columns(runs)
    return runs.duplicated([*keys, *(["seed"] if "seed" in runs else []), RECORDING]) & runs[RECORDING].notna()


def summary_by_config(summary: pd.DataFrame) -> pd.DataFrame:
    """A row per configuration (every config column but seed) of the measured runs: n_seeds, seeds,
    and each metric's n, mean, median and 95% t interval of the mean (the module docstring). A
    configuration holding two recordings of one seed is a row per recording (recordings_apart), the
    others pool their seeds whatever other configurations do."""
    runs = told_apart(measured(summary))
    keys = config_columns(runs)
    metrics = [m for m in METRICS if m in runs]
    columns = [*keys, "n_seeds", "seeds", *(f"{m}_{s}" for m in metrics for s in STATISTICS)]
    if "horizon_censored" in runs:
        columns.append("horizon_censored_n")
    if runs.empty or not keys:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in runs.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["n_seeds"] = len(group)
        row["seeds"] = ",".join(str(v) for v in sorted(group.seed.dropna().unique())) if "seed" in group else ""
        for metric in metrics:
            row.update({f"{metric}_{name}": value for name, value in zip(STATISTICS, t_interval(group[metric]))})
        if "horizon_censored" in group:
            row["horizon_censored_n"] = int(group.horizon_censored.map(lambda v: v is True or v == 1).sum())
        rows.append(row)
    # Each configuration column as the summary holds it (Int64, boolean where some runs lack it), not as
    # the group keys came out (a whole number with a gap beside it as 3.0).
    return pd.DataFrame(rows, columns=columns).astype({key: runs[key].dtype for key in keys})


def write_summary_by_config(summary: pd.DataFrame, root: Path) -> pd.DataFrame:
    """summary_by_config.parquet and .csv in root; returns the table (empty where no run was measured)."""
    table = summary_by_config(summary)
    for suffix in (".parquet", ".csv"):
        write_or_remove(table, Path(root) / f"{FILE}{suffix}")
    return table
