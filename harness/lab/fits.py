"""Fits over tables: one fit per run, layer, state and training step (harness.core.analysis.fit_profile),
and the fit that stands for a run in its summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.core.analysis import fit_profile


def is_top_h(frame: pd.DataFrame) -> pd.Series:
    """Rows of the top layer's h: where the loss reads the network."""
    return (frame.state == "h") & (frame.layer == frame.groupby("run_id").layer.transform("max"))


def fit_runs(profile: pd.DataFrame) -> pd.DataFrame:
    """One fit per run, layer, state and training step, beside the profile's config columns."""
    if profile.empty:
        return pd.DataFrame()
    keys = ["run_id", "step", "layer", "state"]
    config = [
        c for c in profile.columns if c not in {"t", "lag", "layer", "state", "step"} and not c.startswith("log10_norm")
    ]
    # The gradient the loss puts on the network: the top layer's h at lag 0.
    output = profile[is_top_h(profile) & (profile.lag == 0)].set_index(["run_id", "step"]).log10_norm
    # Each group's rows as one slice of arrays sorted by group (pandas' per-group frames cost more
    # than the fits themselves on a few hundred short profiles).
    group = profile.groupby(keys, sort=False).ngroup().to_numpy()
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    lags, norms = profile.lag.to_numpy()[order], profile.log10_norm.to_numpy()[order]
    firsts = profile.iloc[order[starts]]
    fits = [
        fit_profile(lag, norm, output.get((run, step)))
        for lag, norm, run, step in zip(
            np.split(lags, starts[1:]), np.split(norms, starts[1:]), firsts.run_id, firsts.step
        )
    ]
    return pd.concat([firsts[[*config, "step", "layer", "state"]].reset_index(drop=True), pd.DataFrame(fits)], axis=1)


def headline(fits: pd.DataFrame) -> pd.DataFrame:
    """The fit that stands for a run in its summary: the top layer's h at the run's last step."""
    top = fits[is_top_h(fits)]
    return top[top.step == top.groupby("run_id").step.transform("max")]
