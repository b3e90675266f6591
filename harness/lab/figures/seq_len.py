"""The `seq_len` figure: end-to-end log10 gain against sequence length (log axis, ticks at as many of the
lengths swept as fit), a line per combination of the other swept axes, seeds pooled into a mean with its
95% t interval (harness.lab.summary); drawn when seq_len varied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from harness.lab.figures.layout import (
    grid,
    interval_bars,
    interval_key,
    legend_beside,
    line_groups,
    pooled_seeds,
    seeds_of,
    value_ticks,
    varied,
)
from harness.lab.figures.output import Page
from harness.lab.summary import pooled


def draw_seq_len(summary: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """From the runs' fits (log10_gain); seeds pooled by their mean, with its interval where a length
    has two or more."""
    if "seq_len" not in varied(summary, ["seq_len"]):
        return
    axes_names, lines, line_key = line_groups(summary, "seq_len")
    fig, (axes,) = grid(1, 1, width=6.5, height=4.2)
    ax = axes[0]
    counts: list[int] = []
    for label, group, look in lines:
        points = pooled(group, ["seq_len"], ["log10_gain"]).set_index("seq_len")
        line = points.log10_gain_mean
        ax.plot(line.index, line.where(np.isfinite(line)).to_numpy(), label=label or None, **look)
        counts += interval_bars(ax, points, "log10_gain", look["color"])
    ax.axhline(0, color="0.2", lw=0.9)
    ax.set_xscale("log")
    value_ticks(ax, list(summary.seq_len.unique()))  # at the lengths swept, as many as fit
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # a log axis' minor ticks: lengths never run
    ax.set_xlabel("seq_len T (steps, log scale)")
    ax.set_ylabel(r"end-to-end $\log_{10}\,\|\partial L/\partial h_0\| / \|\partial L/\partial h_T\|$")
    ax.grid(alpha=0.3, which="both")
    intervals = [interval_key()] if max(counts, default=0) > 1 else []
    if line_key or intervals:
        legend_beside(ax, line_key + intervals)
    seeds = pooled_seeds(counts, seeds_of(summary))
    caption = (
        "End-to-end log10 gain (batch median) against sequence length, ticks at "
        + ("the lengths swept" if len(ax.get_xticks()) == summary.seq_len.nunique() else "as many lengths swept as fit")
        + (f", a line per {', '.join(axes_names)}" if axes_names else "")
        + (f"; {seeds}" if seeds else "")
        + "."
    )
    yield Page(fig, folder / "seq_len", caption)
