"""The `spectrum` figure: the Lyapunov spectra (theory.spectrum_k > 0), exponent against its index, a
line per run; where scale varied, the top exponents with the recorder's rate, and the Kaplan-Yorke
dimension, against scale beside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.lab.figures.layout import legend_beside, line_groups, scale_label, seed_list, seeds_of, unnamed, varied
from harness.lab.figures.output import Page
from harness.lab.figures.style import OKABE_ITO, SEQUENTIAL

TOP_STYLES = ["-", "--", ":"]  # the top exponents' lines, largest first


def draw_spectrum(summary: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """From the summary's spectrum lists (runs without one are left out)."""
    if "spectrum" not in summary:
        return
    runs = summary[summary.spectrum.map(lambda s: isinstance(s, (list, np.ndarray)) and len(s) > 0)]
    if runs.empty:
        return
    by_scale = "scale" in varied(runs, ["scale"])
    fig, axes = plt.subplots(
        1, 3 if by_scale else 1, figsize=(13.5 if by_scale else 5.5, 4.0), squeeze=False, layout="constrained"
    )
    ax = axes[0][0]
    cmap, norm = matplotlib.colormaps[SEQUENTIAL], matplotlib.colors.Normalize(runs.scale.min(), runs.scale.max())
    for i, run in enumerate(runs.sort_values("scale").itertuples()):
        exponents = np.asarray(run.spectrum, dtype=float)
        ax.plot(
            np.arange(1, len(exponents) + 1),
            exponents,
            marker="o",
            ms=2.5,
            lw=1.1,
            color=cmap(norm(run.scale)) if by_scale else OKABE_ITO[i % len(OKABE_ITO)],
        )
    ax.axhline(0, color="0.2", lw=0.9)
    ax.set_xlabel("index i (exponents sorted, largest first)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(r"Lyapunov exponent $\lambda_i$ (nats per step)")
    ax.set_title(f"spectra of {len(runs)} runs" + (", colour: scale" if by_scale else ""), fontsize=9)
    ax.grid(alpha=0.3)
    if by_scale:
        fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, label="scale")
        against_scale(axes[0][1], axes[0][2], runs)
    k = int(runs.spectrum.map(len).min())
    caption = (
        f"Left: the Lyapunov spectrum of each of {len(runs)} runs, exponent against index (largest first)"
        + (", coloured by scale" if by_scale else "")
        + unnamed(runs, ["scale"] if by_scale else [])
        + "."
        + (
            f" Middle: the top {min(3, k)} exponents (solid, dashed, dotted) and the recorder's measured rate (x) "
            f"against scale. Right: the Kaplan-Yorke dimension (0 when the top exponent is negative, at most "
            f"k = {k}) against scale, a line per {', '.join(line_groups(runs, 'scale').axes) or 'sweep'}"
            + (f" (its {seed_list(seeds_of(runs))} drawn as one line)" if seeds_of(runs) else "")
            + "."
            if by_scale
            else ""
        )
    )
    yield Page(fig, folder / "spectrum", caption)


def against_scale(top_axes: plt.Axes, dimension_axes: plt.Axes, runs: pd.DataFrame) -> None:
    """The middle panel (the top exponents and the recorder's rate) and the right one (the Kaplan-Yorke
    dimension), a line per combination of the other varied axes."""
    _, lines, line_key = line_groups(runs, "scale")
    top = min(3, int(runs.spectrum.map(len).min()))
    for label, group, look in lines:
        group = group.sort_values("scale")
        colour = look["color"]
        exponents = np.stack([np.asarray(s, dtype=float)[:top] for s in group.spectrum])
        for j, ls in zip(range(top), TOP_STYLES):
            top_axes.plot(group.scale, exponents[:, j], color=colour, ls=ls, marker="o", ms=3)
        top_axes.plot(group.scale, group.rate, color=colour, ls="none", marker="x", ms=6)
        dimension_axes.plot(
            group.scale,
            group.lyapunov_dimension,
            color=colour,
            marker=look["marker"],
            ms=3.5,
            ls=look["ls"],
            label=label or None,
        )
    top_axes.axhline(0, color="0.2", lw=0.9)
    keys = [
        matplotlib.lines.Line2D([], [], color="0.3", ls=ls, marker="o", ms=3, label=rf"$\lambda_{j + 1}$")
        for j, ls in zip(range(top), TOP_STYLES)
    ]
    keys.append(
        matplotlib.lines.Line2D([], [], color="0.3", ls="none", marker="x", ms=6, label="measured rate (recorder)")
    )
    top_axes.legend(handles=keys, fontsize=8)
    top_axes.set_ylabel("nats per step")
    top_axes.set_title(f"the top {top} exponents and the recorder's rate", fontsize=9)
    dimension_axes.set_ylabel("Kaplan-Yorke dimension\n(0: the top exponent < 0)")
    dimension_axes.set_title(f"Kaplan-Yorke dimension (at most k = {int(runs.spectrum.map(len).min())})", fontsize=9)
    if line_key:
        legend_beside(dimension_axes, line_key)
    for panel in (top_axes, dimension_axes):
        panel.set_xlabel(scale_label(runs))
        panel.grid(alpha=0.3)
