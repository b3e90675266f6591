"""Fits over tables: one fit per run, layer, state and training step (harness.core.analysis.fit_profile),
and the fit that stands for a run in its summary."""
from __future__ import annotations

import pandas as pd

from harness.core.analysis import fit_profile


def is_top_h(frame: pd.DataFrame) -> pd.Series:
    """Rows of the top layer's h: where the loss reads the network."""
    return (frame.state == "h") & (frame.layer == frame.groupby("run_id").layer.transform("max"))


def fit_runs(profile: pd.DataFrame) -> pd.DataFrame:
    """One fit per run, layer, state and training step, beside the profile's config columns."""
    keys = ["run_id", "step", "layer", "state"]
    config = [c for c in profile.columns if c not in {"t", "lag", "layer", "state", "step"}
              and not c.startswith("log10_norm")]
    # The gradient the loss puts on the network: the top layer's h at lag 0.
    output = profile[is_top_h(profile) & (profile.lag == 0)].set_index(["run_id", "step"]).log10_norm
    rows = []
    for (run, step, layer, state), group in profile.groupby(keys, sort=False):
        fit = fit_profile(group.lag.to_numpy(), group.log10_norm.to_numpy(), output.get((run, step)))
        rows.append({**group.iloc[0][config].to_dict(), "step": step, "layer": layer, "state": state, **fit})
    return pd.DataFrame(rows)


def headline(fits: pd.DataFrame) -> pd.DataFrame:
    """The fit that stands for a run in its summary: the top layer's h at the run's last step."""
    top = fits[is_top_h(fits)]
    return top[top.step == top.groupby("run_id").step.transform("max")]
