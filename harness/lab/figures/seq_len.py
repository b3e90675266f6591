"""The `seq_len` figure: end-to-end log10 gain against sequence length (log axis, a tick at every length
swept), a line per combination of the other varied axes; drawn when seq_len varied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from harness.lab.figures.layout import grid, legend_beside, line_groups, varied
from harness.lab.figures.output import Page


def draw_seq_len(summary: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """From the runs' fits (log10_gain); seeds pooled by their median."""
    if "seq_len" not in varied(summary, ["seq_len"]):
        return
    axes_names, lines, line_key = line_groups(summary, "seq_len")
    fig, (axes,) = grid(1, 1, width=6.5, height=4.2)
    ax = axes[0]
    for label, group, look in lines:
        line = group.groupby("seq_len").log10_gain.median()
        ax.plot(line.index, line.where(np.isfinite(line)).to_numpy(), label=label or None, **look)
    ax.axhline(0, color="0.2", lw=0.9)
    ax.set_xscale("log")
    lengths = np.sort(summary.seq_len.unique())
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(lengths))  # a tick at every length swept
    ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{v:g}" for v in lengths]))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("seq_len T (steps, log scale)")
    ax.set_ylabel(r"end-to-end $\log_{10}\,\|\partial L/\partial h_0\| / \|\partial L/\partial h_T\|$")
    ax.grid(alpha=0.3, which="both")
    if line_key:
        legend_beside(ax, line_key)
    caption = (
        "End-to-end log10 gain (batch median, seeds pooled) against sequence length, ticks at the lengths swept"
        + (f", a line per {', '.join(axes_names)}" if axes_names else "")
        + "."
    )
    yield Page(fig, folder / "seq_len", caption)
