"""Figures, drawn from stored tables only (never by rerunning a model; see harness.plot).

profiles.png/.svg  log10 ||dL/dh_{T-k}|| against the lag k: one panel per cell, one line per run
                   (the batch median, a band from the 25th to the 75th percentile), coloured by scale.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_profiles(profile: pd.DataFrame, path: Path) -> Path | None:
    """Gradient norm against steps back, for the top layer's h; returns the PNG written (or None)."""
    top = profile[(profile.state == "h") & (profile.layer == profile.layer.max())]
    if top.empty:
        return None
    cells = sorted(top.cell.unique())
    scales = np.sort(top.scale.unique())
    norm = matplotlib.colors.Normalize(scales.min(), scales.max() if len(scales) > 1 else scales.min() + 1)
    cmap = matplotlib.colormaps["viridis"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, cell in zip(axes[0], cells):
        for _, run in top[top.cell == cell].groupby("run_id", sort=False):
            run = run.sort_values("lag")
            finite = np.isfinite(run.log10_norm)
            colour = cmap(norm(run.scale.iloc[0]))
            ax.plot(run.lag[finite], run.log10_norm[finite], color=colour, lw=1.3)
            ax.fill_between(run.lag, run.log10_norm_q25, run.log10_norm_q75, color=colour, alpha=0.15,
                            lw=0, where=np.isfinite(run.log10_norm_q25) & np.isfinite(run.log10_norm_q75))
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"cell = {cell}")
        ax.set_xlabel("lag k = T − t (steps back from the loss)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(r"$\log_{10}\,\|\partial L/\partial h_{T-k}\|$")
    if len(scales) > 1:
        fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=axes[0].tolist(), label="scale")
    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=150)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)
    return png


def make_figures(root: Path, profile: pd.DataFrame) -> list[Path]:
    """Every figure the tables support, under root/figures/."""
    if profile.empty:
        return []
    written = [plot_profiles(profile, Path(root) / "figures" / "profiles")]
    return [p for p in written if p is not None]
