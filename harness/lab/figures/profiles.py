"""The gradient profiles: `profiles`, log10 ||dL/dh_{T-k}|| against the lag k, a line per run (batch
median) with its 25-75% band, coloured by scale (or seq_len) on a sequential map; and `profiles_loglog`,
the same on log-log axes in the same colours, styled by the decay law each run's fit names, drawn when
some run decays as a power law. Both take a panel per cell (columns) and per combination of every other
swept axis (rows; seq_len too where scale is the colour): a line's panel and colour name its
configuration, and the runs of one configuration that differ by seed are its lines of one colour.

Past LINE_LIMIT runs on a page (10^4 runs of 100 scales x 100 seeds) single lines can no longer be told
apart, and drawing each costs minutes: the seeds of each configuration are pooled into one line, the
median over its seeds of their batch medians, with the 10-90% range over its seeds shaded where a panel
holds few enough configurations (BAND_LIMIT) for bands to be seen; the caption says so and how many."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection, PolyCollection

from harness.lab.figures.layout import (
    colour_axis,
    colourbar,
    count_range,
    lag_axis,
    leaves_range,
    outer_labels,
    panel_grid,
    panels,
    run_list,
    seed_list,
    seeds_of,
    swept,
    title,
    top_h,
)
from harness.lab.figures.output import Page, page_path
from harness.lab.figures.style import NORM_LABEL, OKABE_ITO, SEQUENTIAL

# The measured lines' style by decay law (the theory's black lines are dashed and dotted).
LAW_STYLES = {"power": "-", "exponential": "-.", "flat": (0, (1, 1)), "undetermined": (0, (6, 2))}
STYLE_NAMES = {"power": "solid", "exponential": "dash-dot", "flat": "dense dots", "undetermined": "long dashes"}
LINE_LIMIT = 200  # runs a page draws a line each for; past it, seeds are pooled (a line per configuration)
BAND_LIMIT = 12  # configurations a pooled panel shades its seeds' range for (more bands hide each other)
POOLED_RANGE = (0.1, 0.9)  # the quantiles over seeds a pooled line's band spans
THEORY_LINES = {
    "theory_log10_norm": ("k", "--", "closed form, this run"),
    "theory_ring_log10_norm": ("k", ":", "closed form, expectation over the ring"),
}


@dataclass
class Marks:
    """What a page of profiles drew, for its legend and caption."""

    banded: bool = False  # some run has a batch band
    dashed: bool = False  # some run carries numerical flags
    pooled: bool = False  # seeds pooled into a line per configuration (LINE_LIMIT)
    pooled_bands: bool = False  # ... with the range over seeds shaded
    exits: int = 0  # points where a run's norm left float's range
    empty: list[pd.DataFrame] = field(default_factory=list)  # a row of each run with no finite value


def draw_profiles(profile: pd.DataFrame, flagged: set[str], folder: Path) -> Iterator[Page]:
    """Every run's profile at its first recorded step; runs in `flagged` dashed."""
    top = top_h(profile)
    colour, norm, cmap = colouring(top)
    # Each run's rows by lag; the largest colour value first: longer runs must not hide shorter ones.
    order = [colour, "lag"] if colour else ["lag"]
    top = top.sort_values(order, ascending=[False, True] if colour else True, kind="stable")
    at_init = trained(profile)
    facets = facet_axes(top, colour)
    columns, all_pages = panels(top, facets)
    for number, page in enumerate(all_pages):
        fig, axes, table = panel_grid(len(page), columns, sharey=True)
        marks = Marks()
        marks.pooled = pools(page, top)
        for ax, (text, rows) in zip(axes, page):
            if marks.pooled:
                trace_pooled(ax, rows, colour, norm, cmap, marks)
            bands: list[tuple[np.ndarray, Any]] = []
            for _, run in [] if marks.pooled else rows.groupby("run_id", sort=False):
                col = cmap(norm(float(run[colour].iloc[0]))) if colour else OKABE_ITO[0]
                bands += [(polygon, col) for polygon in trace_run(ax, run, col, run.run_id.iloc[0] in flagged, marks)]
            if bands:  # under the lines, strong enough to see through a crowd of them; one collection, drawn at once
                polygons, colours = zip(*bands)
                ax.add_collection(PolyCollection(polygons, facecolors=colours, alpha=0.3, lw=0, zorder=2))
            ax.axhline(0, color="0.4", lw=0.8, ls=":")
            title(ax, text)
            ax.grid(alpha=0.3)
            lag_axis(ax)
        outer_labels(axes, columns, NORM_LABEL)
        if colour:
            colourbar(fig, table, norm, cmap, colour)
        keys = profile_keys(marks)
        fig.legend(handles=keys, loc="outside lower center", ncol=len(keys), fontsize=8, frameon=False)
        named = ["cell", *facets, *([colour] if colour else [])]
        caption = profiles_caption(marks, colour, named, at_init) + seeds_caption(top, facets, colour, marks.pooled)
        yield Page(fig, page_path(folder, "profiles", number, len(all_pages)), caption)


def pools(page: list[tuple[str, pd.DataFrame]], top: pd.DataFrame) -> bool:
    """Whether a page pools its seeds: more than LINE_LIMIT runs on it, of more than one seed."""
    return bool(seeds_of(top)) and sum(rows.run_id.nunique() for _, rows in page) > LINE_LIMIT


def seed_quantiles(rows: pd.DataFrame, colour: str | None, value: str = "log10_norm") -> pd.DataFrame:
    """A row per configuration of a panel (its colour value) and lag: the median of `value` over its
    seeds and the POOLED_RANGE quantiles (inf and -inf count as the largest and smallest values)."""
    keys = [colour] if colour else []
    grouped = rows.groupby([*keys, "lag"], sort=True, dropna=False)[value]
    table = grouped.median().rename("median").to_frame()
    for name, q in zip(("low", "high"), POOLED_RANGE):
        table[name] = grouped.quantile(q)
    return table.reset_index()


def pooled_segments(table: pd.DataFrame, colour: str | None, column: str) -> tuple[list[np.ndarray], list[float]]:
    """(a line's (lag, value) points per configuration, its colour value) for a LineCollection."""
    segments, values = [], []
    for key, lines in table.groupby(colour, sort=True) if colour else [(0.0, table)]:
        y = lines[column].to_numpy(float)
        segments.append(np.column_stack([lines.lag.to_numpy(float), np.where(np.isfinite(y), y, np.nan)]))
        values.append(float(key))
    return segments, values


def trace_pooled(ax: Any, rows: pd.DataFrame, colour: str | None, norm: Any, cmap: Any, marks: Marks) -> None:
    """A panel's configurations, a line each (the median over its seeds) in one collection, their
    seeds' range shaded where the panel holds BAND_LIMIT configurations or fewer."""
    table = seed_quantiles(rows, colour)
    segments, values = pooled_segments(table, colour, "median")
    colours = [cmap(norm(v)) if colour else OKABE_ITO[0] for v in values]
    ax.add_collection(LineCollection(segments, colors=colours, lw=1.1, zorder=3))
    ax.autoscale_view()
    if len(segments) <= BAND_LIMIT:
        for (_, lines), col in zip(table.groupby(colour, sort=True) if colour else [(0, table)], colours):
            band = np.isfinite(lines.low) & np.isfinite(lines.high)
            ax.fill_between(lines.lag, lines.low, lines.high, where=band, color=col, alpha=0.25, lw=0, zorder=2)
            marks.pooled_bands |= bool(band.any())


def colouring(top: pd.DataFrame) -> tuple[str | None, Any, Any]:
    """(the colour axis: scale, else seq_len, else None; its norm; the map): seq_len on a log norm."""
    colour = colour_axis(top)
    if not colour:
        return None, None, matplotlib.colormaps[SEQUENTIAL]
    values = top[colour].astype(float)
    norm = (matplotlib.colors.LogNorm if colour == "seq_len" else matplotlib.colors.Normalize)(
        values.min(), values.max()
    )
    return colour, norm, matplotlib.colormaps[SEQUENTIAL]


def facet_axes(top: pd.DataFrame, colour: str | None) -> list[str]:
    """The panels' axes besides cell: every other swept axis but the colour's (seq_len included)."""
    return [a for a in swept(top, [colour] if colour else []) if a not in ("cell", colour)]


def seeds_caption(top: pd.DataFrame, facets: list[str], colour: str | None, pooled: bool = False) -> str:
    """Where runs differ by seed only: that each is its own line, in its configuration's look; or,
    pooled, that each line is the median over the configuration's seeds."""
    seeds = seeds_of(top)
    if not seeds:
        return ""
    per = top.groupby(["cell", *facets, *([colour] if colour else [])], dropna=False).run_id.nunique()
    n = count_range(per.tolist())
    if pooled:
        low, high = (round(q * 100) for q in POOLED_RANGE)
        return (
            f" Seeds pooled ({seed_list(seeds)}): {top.run_id.nunique()} runs are more than one page draws as lines "
            f"of their own ({LINE_LIMIT}), so each line is the median over its configuration's {n} seeds of their "
            f"batch medians" + (f", shaded over its seeds' {low}–{high}% range" if len(per) <= BAND_LIMIT else "") + "."
        )
    if n == "1":  # seeds vary between configurations only
        return f" Seeds: {seed_list(seeds)}, one to a configuration."
    return (
        f" Seeds not pooled ({seed_list(seeds)}): each of a configuration's {n} seeds is a line of its own, "
        "in the configuration's panel and colour."
    )


def trace_run(ax: Any, run: pd.DataFrame, colour: Any, flagged: bool, marks: Marks) -> list[np.ndarray]:
    """One run's median line (dashed if flagged) and an X where it left float's range; returns its
    batch band's polygons (its 25-75% range where finite), which the panel draws beneath its lines."""
    values = run.log10_norm
    if not np.isfinite(values).any():
        marks.empty.append(run.iloc[:1])
        return []
    marks.dashed |= flagged
    ax.plot(run.lag, values.where(np.isfinite(values)), color=colour, lw=1.3, ls="--" if flagged else "-", zorder=3)
    polygons = band_polygons(
        run.lag.to_numpy(float), run.log10_norm_q25.to_numpy(float), run.log10_norm_q75.to_numpy(float)
    )
    marks.banded |= bool(polygons)
    lags, ends = leaves_range(run.lag, values)
    if len(lags):
        ax.plot(lags, ends, ls="none", marker="X", ms=7, color="k", zorder=4)
        marks.exits += len(lags)
    return polygons


def band_polygons(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> list[np.ndarray]:
    """The band between low and high over x, a polygon per stretch where both are finite (as
    fill_between draws it with where=)."""
    finite = np.isfinite(low) & np.isfinite(high)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    return [
        np.concatenate([np.column_stack([x[a:b], low[a:b]]), np.column_stack([x[a:b], high[a:b]])[::-1]])
        for a, b in zip(edges[::2], edges[1::2])
    ]


def profile_keys(marks: Marks) -> list:
    """The legend: the median line, and the band, dashes and X only where the page has them."""
    line = "median over seeds of the batch medians" if marks.pooled else "batch median"
    keys = [matplotlib.lines.Line2D([], [], color="0.3", lw=1.3, label=line)]
    if marks.pooled_bands:
        low, high = (round(q * 100) for q in POOLED_RANGE)
        keys.append(matplotlib.patches.Patch(color="0.3", alpha=0.25, lw=0, label=f"{low}–{high}% over seeds"))
    if marks.banded:
        keys.append(matplotlib.patches.Patch(color="0.3", alpha=0.3, lw=0, label="25–75% of the batch"))
    if marks.dashed:
        keys.append(matplotlib.lines.Line2D([], [], color="0.3", lw=1.3, ls="--", label="numerical flags (see status)"))
    if marks.exits:
        keys.append(
            matplotlib.lines.Line2D(
                [], [], color="k", ls="none", marker="X", ms=7, label="last finite value (then inf/nan)"
            )
        )
    return keys


def trained(profile: pd.DataFrame) -> bool:
    """Whether some run recorded its profile at more than one training step (then a figure drawn from
    the first says so)."""
    return bool((profile.groupby("run_id").step.nunique() > 1).any())


AT_INIT = " at initialisation (each run's first recorded step; training_profiles shows the later ones)"


def profiles_caption(marks: Marks, colour: str | None, named: list[str], at_init: bool = False) -> str:
    """What the page drew; the runs it could not draw, by the axes in `named`; at_init: that it drew the
    trained runs' first recorded step."""
    return (
        "Gradient norm against steps back from the loss"
        + (AT_INIT if at_init else "")
        + ", "
        + ("a line per configuration (seeds pooled)" if marks.pooled else "a line per run (batch median)")
        + (", coloured by " + colour if colour else "")
        + (
            ""
            if marks.pooled
            else "; shaded: the batch's 25–75% range"
            if marks.banded
            else "; no batch band (one sample per run)"
        )
        + (
            "; dashed: runs with numerical flags (diverged, overflow, underflow, nan: see the summary's status)"
            if marks.dashed
            else ""
        )
        + (
            f"; black X: the last finite value before a run's norm left float range ({marks.exits} such points)"
            if marks.exits
            else ""
        )
        + (f"; not drawn, no finite value: {run_list(pd.concat(marks.empty), named)}" if marks.empty else "")
        + "."
    )


def draw_decay_laws(profile: pd.DataFrame, fits: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """The profiles on log-log axes (lag k >= 1), coloured by the decay law each run's fit names, with
    the closed-form theory where the table has it; drawn when some run decays as a power law, which
    is a straight line here (an exponential bends down)."""
    if "decay_law" not in fits or not (fits.decay_law == "power").any():
        return
    top = top_h(profile)
    top = top[top.lag >= 1].join(fits.set_index("run_id")[["decay_law", "power_exponent"]], on="run_id")
    top = top.sort_values("lag", kind="stable")  # each run's rows by lag, the runs in their order
    at_init = AT_INIT if trained(profile) else ""
    colour, norm, cmap = colouring(top)
    facets = facet_axes(top, colour)
    columns, all_pages = panels(top, facets)
    for number, page in enumerate(all_pages):
        # Own y axes: a power law spans a decade or two where an exponential spans hundreds.
        fig, axes, table = panel_grid(len(page), min(columns, 3))
        drawn: dict[str, Any] = {}
        pooled = pools(page, top)
        for ax, (text, rows) in zip(axes, page):
            if pooled:
                trace_pooled_laws(ax, rows, colour, norm, cmap, drawn)
            for _, run in [] if pooled else rows.groupby("run_id", sort=False):
                law = run.decay_law.iloc[0]
                col = cmap(norm(float(run[colour].iloc[0]))) if colour else OKABE_ITO[0]
                ax.plot(
                    run.lag, run.log10_norm.where(np.isfinite(run.log10_norm)), color=col, ls=LAW_STYLES[law], lw=1.3
                )
                drawn.setdefault(
                    f"measured, {law}", matplotlib.lines.Line2D([], [], color="0.35", ls=LAW_STYLES[law], lw=1.3)
                )
                for column, (ink, ls, name) in THEORY_LINES.items():
                    if column in run and run[column].notna().any():
                        ax.plot(run.lag, run[column], color=ink, ls=ls, lw=1.0, zorder=3)
                        drawn.setdefault(name, matplotlib.lines.Line2D([], [], color=ink, ls=ls, lw=1.0))
            ax.set_xscale("log")
            title(ax, text)
            ax.grid(alpha=0.3, which="both")
            ax.set_xlabel("lag k (log scale)")
        outer_labels(axes, min(columns, 3), NORM_LABEL)
        if colour:
            colourbar(fig, table, norm, cmap, colour)
        fig.legend(
            list(drawn.values()),
            list(drawn),
            loc="outside lower center",
            ncol=min(len(drawn), 4),
            fontsize=8,
            frameon=False,
        )
        laws = [name.split(", ")[1] for name in drawn if name.startswith("measured")]
        theory = [name for name in drawn if not name.startswith("measured")]
        caption = (
            "The profiles on log-log axes (lag ≥ 1)"
            + at_init
            + ", a line per run"
            + (f", coloured by {colour}" if colour else "")
            + ", styled by the decay law its fit names ("
            + ", ".join(f"{law} {STYLE_NAMES[law]}" for law in laws)
            + "); a power law is a straight line here, an exponential bends down"
            + ("; black: " + " and ".join(theory) if theory else "")
            + (f"; the closed forms are drawn for panels of at most {BAND_LIMIT} configurations" if pooled else "")
            + "."
            + seeds_caption(top, facets, colour, pooled)
        )
        yield Page(fig, page_path(folder, "profiles_loglog", number, len(all_pages)), caption)


def trace_pooled_laws(ax: Any, rows: pd.DataFrame, colour: str | None, norm: Any, cmap: Any, drawn: dict) -> None:
    """A log-log panel pooled over seeds: a line per configuration (the median over its seeds), styled
    by the decay law most of its seeds' fits name; the closed forms' medians where the panel holds
    BAND_LIMIT configurations or fewer."""
    keys = [colour] if colour else []
    table = seed_quantiles(rows, colour)
    majority = rows.groupby(keys).decay_law.agg(lambda names: names.mode().iloc[0]) if keys else None
    table["law"] = table[colour].map(majority) if keys else rows.decay_law.mode().iloc[0]
    for law, configurations in table.groupby("law", sort=True):
        segments, values = pooled_segments(configurations, colour, "median")
        colours = [cmap(norm(v)) if colour else OKABE_ITO[0] for v in values]
        ax.add_collection(LineCollection(segments, colors=colours, linestyles=LAW_STYLES[law], lw=1.1))
        drawn.setdefault(f"measured, {law}", matplotlib.lines.Line2D([], [], color="0.35", ls=LAW_STYLES[law], lw=1.3))
    ax.autoscale_view()
    if keys and table[colour].nunique() > BAND_LIMIT:
        return
    for column, (ink, ls, name) in THEORY_LINES.items():
        if column in rows and rows[column].notna().any():
            theory = seed_quantiles(rows, colour, column)
            for _, lines in theory.groupby(keys) if keys else [(0, theory)]:
                ax.plot(lines.lag, lines["median"], color=ink, ls=ls, lw=1.0, zorder=3)
            drawn.setdefault(name, matplotlib.lines.Line2D([], [], color=ink, ls=ls, lw=1.0))
