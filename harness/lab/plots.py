"""Figures, drawn from stored tables only (never by rerunning a model; see harness.plot).

Every figure follows what the sweep varied: panels split by cell (columns) and by the other varied
axes (rows), colour by scale (or by seq_len when scale is fixed), and a figure whose axis did not vary
is not drawn. Each is written as PNG under <folder>/figures/ (and as SVG with vector=True).

profiles   log10 ||dL/dh_{T-k}|| against the lag k: a line per run (batch median) with its 25-75%
           band, coloured by scale on a sequential map.                       [always]
heatmap    scale x lag -> log10 gain, a diverging map centred on gain 1.     [scale varied]
phase      fitted rate against scale, a line per cell/activation, the zero line, the
           vanishing / stable / exploding bands shaded, and the theory beside it: mean-field
           curve and critical scale, linear ln rho(W), Lyapunov exponents.  [scale varied]
seq_len    end-to-end log10 gain against seq_len (log axis).                 [seq_len varied]
layers     layer x lag -> log10 norm of each layer's h, a panel per run.     [num_layers > 1]
training_profiles  the profile at init and at each recorded training step.  [trained runs]
losses     eval loss against training step, with the task's baseline.        [trained runs]
learnability  final eval loss / baseline against the rate at init.          [2+ trained runs]
The other figures use each run's first recorded step (initialisation).
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import multiprocessing
import os
import signal
import sys
import textwrap
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, NamedTuple

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.core.analysis import STABLE_TOLERANCE
from harness.core.errors import ConfigError
from harness.core.runfolder import GATES, UNITS, write_atomic
from harness.lab.fits import fit_runs, headline, is_top_h
from harness.core.theory import THEORY_COLUMNS, mean_field_curve

# Axes a sweep may vary, besides cell (the columns) and the colour axis; seed is never a facet.
FACETS = ["activation", "init", "remedy", "num_layers", "hidden_size", "input_size", "batch_size", "cell.forget_bias",
          "task", "recorder", "dtype", "device", "name"]
ROWS_PER_PAGE = 6
MAX_LAYER_PANELS = 12
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
SEQUENTIAL, DIVERGING = "viridis", "RdBu_r"
NORM_LABEL = r"$\log_{10}\,\|\partial L/\partial h_{T-k}\|$"
LAG_LABEL = "lag k = T − t (steps back from the loss)"
# One colour and one place per cell in every figure: panels, lines and legends follow this order.
CELL_ORDER = ("rnn", "lstm", "gru", "lru", "indrnn", "minimal")
CELL_COLOURS = dict(zip(CELL_ORDER, ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]))
USER_CELL_COLOURS = ["#882255", "#117733", "#999933", "#332288", "#AA4499", "#44AA99"]
LINE_STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">", "p"]
TITLE_POINTS = 9


class Drawn(NamedTuple):
    """A figure written: its PNG (an SVG beside it when asked for) and the caption that says what it shows."""
    path: Path
    caption: str


def cell_colour(cell: str) -> str:
    """The cell's colour, the same in every figure; a user cell's follows from its name."""
    return CELL_COLOURS.get(cell) or USER_CELL_COLOURS[zlib.crc32(str(cell).encode()) % len(USER_CELL_COLOURS)]


def cell_rank(cell: Any) -> tuple[int, str]:
    """rnn, lstm, gru, the other built-in cells, then user cells by name."""
    return (CELL_ORDER.index(cell), "") if cell in CELL_ORDER else (len(CELL_ORDER), str(cell))


def ordered_cells(cells) -> list:
    return sorted(dict.fromkeys(cells), key=cell_rank)


def varied(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns that take more than one value; a cell's own field (cell.forget_bias, empty for the
    other cells) counts only if it varies within one cell."""
    def varies(column: str) -> bool:
        if column.startswith("cell."):
            return bool((frame.groupby("cell")[column].nunique() > 1).any())
        return frame[column].nunique(dropna=False) > 1
    return [c for c in columns if c in frame and varies(c)]


def colour_axis(frame: pd.DataFrame) -> str | None:
    return next(iter(varied(frame, ["scale", "seq_len"])), None)


def facet_label(keys: tuple, names: list[str]) -> str:
    return ", ".join(f"{n}={k}" for n, k in zip(names, keys))


def title(ax, text: str, size: float = TITLE_POINTS) -> None:
    """A panel title wrapped to the panel's width, so that no title runs into its neighbour or off the page."""
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    characters = max(int(width_in * 72 / (0.55 * size)), 12)  # an average glyph is ~0.55 em wide
    ax.set_title(textwrap.fill(text, characters), fontsize=size)


def grid(rows: int, cols: int, width: float = 4.2, height: float = 3.3, **kw):
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.2, height * rows), squeeze=False,
                             layout="constrained", **kw)
    return fig, axes


# make_figures(vector=True) asks every figure for an SVG copy too (a third of the drawing time).
VECTOR: contextvars.ContextVar[bool] = contextvars.ContextVar("vector", default=False)


def save(fig: plt.Figure, path: Path, caption: str) -> Drawn:
    """PNG (and SVG, see VECTOR). Data artists stay inside their axes, so the layout need not measure
    each of them (with hundreds of runs that measuring was most of the time), and it is computed once."""
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections]:
            artist.set_in_layout(False)
    write_atomic(path.with_suffix(".png"), lambda tmp: fig.savefig(tmp, format="png", dpi=130))
    if VECTOR.get():
        fig.set_layout_engine("none")
        write_atomic(path.with_suffix(".svg"), lambda tmp: fig.savefig(tmp, format="svg"))
    plt.close(fig)
    return Drawn(path.with_suffix(".png"), caption)


def run_list(runs: pd.DataFrame, names: list[str], limit: int | None = 8, status: bool = False) -> str:
    """'cell=rnn, scale=3; cell=gru, scale=3' for a caption (the first `limit`, then how many more;
    limit None: all), each with its status in brackets if asked."""
    labels = [(facet_label(tuple(row), names) or str(run_id)) + (f" ({state})" if status else "")
              for run_id, state, row in zip(runs.run_id, runs.status if status else runs.run_id,
                                             runs[names].itertuples(index=False))]
    limit = len(labels) if limit is None else limit
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return "; ".join(labels[:limit]) + more


def leaves_range(lag: pd.Series, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(lags, values) of the last finite point before a run's norm turns inf or nan (where it left
    float's range), for a mark there."""
    finite = np.isfinite(values.to_numpy(float))
    exits = np.flatnonzero(finite[:-1] & ~finite[1:])
    return lag.to_numpy(float)[exits], values.to_numpy(float)[exits]


def panels(frame: pd.DataFrame, row_axes: list[str]) -> tuple[int, list[list[tuple[str, pd.DataFrame]]]]:
    """The panels that have data, as (title, rows), ROWS_PER_PAGE rows of them to a figure.

    One column per cell when there are several cells and every combination of the row axes exists
    for each; otherwise the panels are wrapped, 4 to a row, so that no panel is ever empty.
    Returns (columns, pages).
    """
    axes = ["cell", *row_axes]
    groups = [(k if isinstance(k, tuple) else (k,), g) for k, g in frame.groupby(axes, sort=True, dropna=False)]
    cells = frame.cell.nunique()
    full = len(groups) == cells * frame.groupby(row_axes, dropna=False).ngroups if row_axes else True
    columns = cells if full and cells > 1 else min(len(groups), 4)
    # Row-major with cells as columns: order by the row axes first, then cell (rnn, lstm, gru, ...).
    groups.sort(key=lambda item: (tuple(map(str, item[0][1:])), cell_rank(item[0][0])))
    titled = [(facet_label(keys, axes), group) for keys, group in groups]
    per_page = ROWS_PER_PAGE * columns
    return columns, [titled[i:i + per_page] for i in range(0, len(titled), per_page)]


def panel_grid(count: int, columns: int, **kw):
    """A figure with `count` panels in `columns`; axes beyond count are removed."""
    fig, axes = grid(-(-count // columns), columns, **kw)
    for ax in axes.ravel()[count:]:
        fig.delaxes(ax)
    return fig, axes.ravel()[:count], axes


def outer_labels(axes, columns: int, ylabel: str) -> None:
    """The y label on the first column only: a rotated label inside the grid runs into its neighbour's
    x label."""
    for i, ax in enumerate(axes):
        ax.set_ylabel(ylabel if i % columns == 0 else "")


def lag_axis(ax, **kw) -> None:
    """An x axis of lags: named, with whole-number ticks (a lag of 2.5 steps does not exist)."""
    ax.set_xlabel(LAG_LABEL, **kw)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def page_path(folder: Path, name: str, page: int, count: int) -> Path:
    return folder / (name if count == 1 else f"{name}_{page + 1}")


def top_h(profile: pd.DataFrame) -> pd.DataFrame:
    """Each run's top-layer h at its first recorded step."""
    top = profile[is_top_h(profile)]
    return top[top.step == top.groupby("run_id").step.transform("min")]


def colourbar(fig, axes, norm, cmap, label, extend: str = "neither"):
    used = [ax for ax in np.ravel(axes) if ax.figure is fig and ax in fig.axes]
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=used, label=label, shrink=0.9, extend=extend)


RANGE_PERCENTILE = 90  # of |log10 norm|: the heatmaps' colour range; the top tenth takes the end colours


def robust_centred_norm(values: pd.Series, percentile: float = RANGE_PERCENTILE) -> tuple[matplotlib.colors.CenteredNorm, int]:
    """Symmetric about 0 (gain 1), so that equal colours mean equal magnitudes of decay and growth, over
    the `percentile` of |values|: one extreme run no longer turns every other one a flat colour.
    Returns the norm and how many finite values lie beyond it (drawn in the end colours)."""
    finite = values[np.isfinite(values)].abs()
    halfrange = max(float(np.percentile(finite, percentile)) if len(finite) else 0.0, 1e-3)
    return matplotlib.colors.CenteredNorm(vcenter=0.0, halfrange=halfrange), int((finite > halfrange).sum())


def plot_profiles(profile: pd.DataFrame, folder: Path, flagged: set[str]) -> list[Drawn]:
    top = top_h(profile)
    colour = colour_axis(top)
    cmap = matplotlib.colormaps[SEQUENTIAL]
    if colour:
        values = top[colour].astype(float)
        norm = (matplotlib.colors.LogNorm if colour == "seq_len" else matplotlib.colors.Normalize)(
            values.min(), values.max())
        # The largest colour value first: longer runs must not hide shorter ones.
        top = top.sort_values(colour, ascending=False, kind="stable")
    facets = varied(top, FACETS)
    columns, all_pages = panels(top, facets)
    written = []
    for number, page in enumerate(all_pages):
        fig, axes, table = panel_grid(len(page), columns, sharey=True)
        banded, dashed, exits, empty = False, False, 0, []
        for ax, (text, rows) in zip(axes, page):
            for _, run in rows.groupby("run_id", sort=False):
                run = run.sort_values("lag")
                col = cmap(norm(float(run[colour].iloc[0]))) if colour else OKABE_ITO[0]
                values = run.log10_norm
                if not np.isfinite(values).any():
                    empty.append(run.iloc[:1])
                    continue
                flag = run.run_id.iloc[0] in flagged
                dashed |= flag
                ax.plot(run.lag, values.where(np.isfinite(values)), color=col, lw=1.3, ls="--" if flag else "-",
                        zorder=3)
                band = np.isfinite(run.log10_norm_q25) & np.isfinite(run.log10_norm_q75)
                if band.any():  # under the lines, strong enough to see through a crowd of them
                    ax.fill_between(run.lag, run.log10_norm_q25, run.log10_norm_q75, where=band, color=col,
                                    alpha=0.3, lw=0, zorder=2)
                    banded = True
                lags, ends = leaves_range(run.lag, values)
                if len(lags):
                    ax.plot(lags, ends, ls="none", marker="X", ms=7, color="k", zorder=4)
                    exits += len(lags)
            ax.axhline(0, color="0.4", lw=0.8, ls=":")
            title(ax, text)
            ax.grid(alpha=0.3)
            lag_axis(ax)
        outer_labels(axes, columns, NORM_LABEL)
        if colour:
            colourbar(fig, table, norm, cmap, colour)
        keys = [matplotlib.lines.Line2D([], [], color="0.3", lw=1.3, label="batch median")]
        if banded:
            keys.append(matplotlib.patches.Patch(color="0.3", alpha=0.3, lw=0, label="25–75% of the batch"))
        if dashed:
            keys.append(matplotlib.lines.Line2D([], [], color="0.3", lw=1.3, ls="--", label="numerical flags (see status)"))
        if exits:
            keys.append(matplotlib.lines.Line2D([], [], color="k", ls="none", marker="X", ms=7,
                                                label="last finite value (then inf/nan)"))
        fig.legend(handles=keys, loc="outside lower center", ncol=len(keys), fontsize=8, frameon=False)
        caption = ("Gradient norm against steps back from the loss, a line per run (batch median)"
                   + (", coloured by " + colour if colour else "")
                   + ("; shaded: the batch's 25–75% range" if banded else "; no batch band (one sample per run)")
                   + ("; dashed: runs with numerical flags (diverged, overflow, underflow, nan: see the summary's "
                      "status)" if dashed else "")
                   + (f"; black X: the last finite value before a run's norm left float range ({exits} such points)"
                      if exits else "")
                   + (f"; not drawn, no finite value: {run_list(pd.concat(empty), ['cell', *facets, *([colour] if colour else [])])}"
                      if empty else "") + ".")
        written.append(save(fig, page_path(folder, "profiles", number, len(all_pages)), caption))
    return written


LAW_COLOURS = {"exponential": OKABE_ITO[0], "power": OKABE_ITO[1], "flat": "0.5", "undetermined": "0.75"}
THEORY_LINES = {"theory_log10_norm": ("k", "--", "closed form, this run"),
                "theory_ring_log10_norm": ("k", ":", "closed form, expectation over the ring")}


def plot_decay_laws(profile: pd.DataFrame, fits: pd.DataFrame, folder: Path) -> list[Drawn]:
    """The profiles on log-log axes (lag k >= 1), coloured by the decay law each run's fit names, with
    the closed-form theory where the table has it; drawn when some run decays as a power law, which
    is a straight line here (an exponential bends down)."""
    if "decay_law" not in fits or not (fits.decay_law == "power").any():
        return []
    top = top_h(profile)
    top = top[top.lag >= 1].join(fits.set_index("run_id")[["decay_law", "power_exponent"]], on="run_id")
    columns, all_pages = panels(top, varied(top, FACETS))
    written = []
    for number, page in enumerate(all_pages):
        # Own y axes: a power law spans a decade or two where an exponential spans hundreds.
        fig, axes, _ = panel_grid(len(page), min(columns, 3))
        drawn: dict[str, Any] = {}
        for ax, (text, rows) in zip(axes, page):
            for _, run in rows.groupby("run_id", sort=False):
                run = run.sort_values("lag")
                law = run.decay_law.iloc[0]
                ax.plot(run.lag, run.log10_norm.where(np.isfinite(run.log10_norm)), color=LAW_COLOURS[law], lw=1.3)
                drawn.setdefault(f"measured, {law}", matplotlib.lines.Line2D([], [], color=LAW_COLOURS[law], lw=1.3))
                for column, (colour, ls, name) in THEORY_LINES.items():
                    if column in run and run[column].notna().any():
                        ax.plot(run.lag, run[column], color=colour, ls=ls, lw=1.0)
                        drawn.setdefault(name, matplotlib.lines.Line2D([], [], color=colour, ls=ls, lw=1.0))
            ax.set_xscale("log")
            title(ax, text)
            ax.grid(alpha=0.3, which="both")
            ax.set_xlabel("lag k (log scale)")
        outer_labels(axes, min(columns, 3), NORM_LABEL)
        fig.legend(list(drawn.values()), list(drawn), loc="outside lower center", ncol=min(len(drawn), 4),
                   fontsize=8, frameon=False)
        laws = [name.split(", ")[1] for name in drawn if name.startswith("measured")]
        theory = [name for name in drawn if not name.startswith("measured")]
        caption = ("The profiles on log-log axes (lag ≥ 1), coloured by the decay law each run's fit names ("
                   + ", ".join(laws) + "); a power law is a straight line here, an exponential bends down"
                   + ("; black: " + " and ".join(theory) if theory else "") + ".")
        written.append(save(fig, page_path(folder, "profiles_loglog", number, len(all_pages)), caption))
    return written


def plot_heatmap(profile: pd.DataFrame, folder: Path) -> list[Drawn]:
    top = top_h(profile)
    if "scale" not in varied(top, ["scale"]):
        return []
    row_axes = varied(top, FACETS + ["seq_len"])
    # Seeds (and any repeat) of one (facet, scale, lag) are pooled by their median.
    table = top.groupby(["cell", *row_axes, "scale", "lag"], dropna=False).log10_norm.median().reset_index()
    norm, clipped = robust_centred_norm(table.log10_norm)
    columns, all_pages = panels(table, row_axes)
    written = []
    for number, page in enumerate(all_pages):
        # Rows are indices, so panels share their y axis only where they ran the same scales.
        same_scales = len({tuple(sorted(rows.scale.unique())) for _, rows in page}) == 1
        fig, axes, grid_axes = panel_grid(len(page), columns, sharey=same_scales)
        for ax, (text, rows) in zip(axes, page):
            panel = rows.pivot(index="scale", columns="lag", values="log10_norm")
            lags = panel.columns.to_numpy(float)
            # A row per swept scale, all of one height: scales are a list someone chose (0.9, 1, 1.1, 4),
            # not a continuum, and edges halfway between uneven values would invent scales never run.
            ax.pcolormesh(edges(lags), np.arange(len(panel.index) + 1) - 0.5, np.ma.masked_invalid(panel.to_numpy(float)),
                          cmap=DIVERGING, norm=norm, shading="flat", rasterized=True)  # SVG: one image, not a path per cell
            ax.set_yticks(range(len(panel.index)), [f"{scale:g}" for scale in panel.index])
            ax.set_facecolor("0.75")  # no finite value: grey, never white (white is gain 1)
            title(ax, text)
            lag_axis(ax)
        outer_labels(axes, columns, "scale (a row per value swept)")
        colourbar(fig, grid_axes, norm, DIVERGING, NORM_LABEL + "  (0: gain 1)", extend="both" if clipped else "neither")
        caption = (f"log10 gradient norm over scale and lag, a row per swept scale (rows of one height, however far "
                   f"apart the values), white at 0 (gain 1), red growth, blue decay; the colour "
                   f"range is ±{norm.halfrange:.3g}, the {RANGE_PERCENTILE}th percentile of |log10 norm|"
                   + (f", and the {clipped} cells beyond it take the end colours (the colourbar's arrows)" if clipped else "")
                   + "; grey: no finite value.")
        written.append(save(fig, page_path(folder, "heatmap", number, len(all_pages)), caption))
    return written


def edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (for pcolormesh with uneven spacing)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


class Line(NamedTuple):
    label: str  # the varied axes' values, "" when the figure has one line
    rows: pd.DataFrame
    look: dict  # colour (the cell's, where cells differ), line style, marker


class Lines(NamedTuple):
    axes: list[str]  # the varied axes the lines stand for
    lines: list[Line]
    key: list  # legend handles that explain the looks: a colour per cell and a style per other combination


def look_of(n: int, colour: str) -> dict:
    """The n-th line style with a colour: markers first, then dashes (48 distinct looks)."""
    return {"color": colour, "marker": MARKERS[n % len(MARKERS)], "ls": LINE_STYLES[n // len(MARKERS) % len(LINE_STYLES)],
            "ms": 3.5}


def line_groups(summary: pd.DataFrame, x: str) -> Lines:
    """Lines for a summary-based figure: one per combination of the varied axes other than x. Where
    cells differ, a line's colour is its cell's and its style stands for the combination of the other
    axes, the same style for the same combination in every cell, so the legend is a colour per cell
    plus a style per combination (3 + 8 entries for 24 lines, not 24); otherwise each line's own."""
    axes = [a for a in varied(summary, ["cell", *FACETS, "scale", "seq_len"]) if a != x]
    groups = [(k if isinstance(k, tuple) else (k,), g) for k, g in summary.groupby(axes, sort=True, dropna=False)] \
        if axes else [((), summary)]
    if "cell" not in axes:
        lines = [Line(facet_label(keys, axes), rows, look_of(i // len(OKABE_ITO), OKABE_ITO[i % len(OKABE_ITO)]))
                 for i, (keys, rows) in enumerate(groups)]
        key = [matplotlib.lines.Line2D([], [], label=line.label, **line.look) for line in lines] if len(lines) > 1 else []
        return Lines(axes, lines, key)
    at = axes.index("cell")
    others = [a for a in axes if a != "cell"]

    def rest(keys: tuple) -> tuple:  # a line's values of the axes other than cell
        return tuple(k for i, k in enumerate(keys) if i != at)
    combinations = sorted({rest(keys) for keys, _ in groups}, key=lambda c: tuple(map(str, c)))
    groups.sort(key=lambda item: (cell_rank(item[0][at]), combinations.index(rest(item[0]))))
    lines = [Line(facet_label(keys, axes), rows, look_of(combinations.index(rest(keys)), cell_colour(keys[at])))
             for keys, rows in groups]
    key = [matplotlib.lines.Line2D([], [], color=cell_colour(cell), lw=2, label=f"cell={cell}")
           for cell in ordered_cells(k[at] for k, _ in groups)]
    if others:
        key += [matplotlib.lines.Line2D([], [], label=facet_label(combination, others), **look_of(n, "0.35"))
                for n, combination in enumerate(combinations)]
    return Lines(axes, lines, key)


def legend_beside(ax, handles: list, **kw) -> None:
    """A legend right of the axes, in as many columns as it takes to stay within the figure's height."""
    rows = max(int(ax.figure.get_figheight() * 72 / 14) - 2, 8)  # ~14 points per 8-point entry
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=-(-len(handles) // rows),
              **kw)


SCALED = {"lru": "|λ|", "indrnn": "u"}  # what `scale` multiplies where it is not the recurrent matrix


def scale_label(summary: pd.DataFrame) -> str:
    """The phase figure's x axis, named for what scale multiplies in the cells drawn."""
    cells = list(dict.fromkeys(summary.cell))
    own = {SCALED.get(cell, "W_hh") for cell in cells}
    if len(own) == 1:
        return f"scale (multiplies {own.pop()})"
    return "scale (multiplies " + ", ".join(f"{SCALED.get(c, 'W_hh')} for {c}" for c in cells) + ")"


@functools.lru_cache(maxsize=64)  # lines of one activation and drive (other seq_lens, seeds) share a curve
def mean_field_line(activation: str, low: float, high: float, drive: float) -> tuple[np.ndarray, np.ndarray]:
    dense = np.linspace(low, high, 60)
    return dense, mean_field_curve(activation, dense, drive)


def recorders_named(frame: pd.DataFrame) -> str:
    return "/".join(sorted(frame.recorder.dropna().unique())) if "recorder" in frame else "?"


def plot_phase(summary: pd.DataFrame, folder: Path) -> list[Drawn]:
    """Measured rate against scale; where theory applies, the mean-field curve (dense in scale) with
    its critical scale, the linear prediction, the Lyapunov exponent of each run, and a lower panel
    of the gaps (measured - predicted)."""
    if "scale" not in varied(summary, ["scale"]):
        return []
    axes_names, lines, line_key = line_groups(summary, "scale")
    predicted = [n for n in ("mean_field", "lyapunov", "linear")
                 if f"theory_{n}" in summary and summary[f"theory_{n}"].notna().any()]
    fig, axes = plt.subplots(2 if predicted else 1, 1, figsize=(8.2, 6.4 if predicted else 4.4), sharex=True,
                             squeeze=False, layout="constrained", height_ratios=[3, 1.3] if predicted else [1])
    ax = axes[0][0]
    drawn: dict[str, str] = {}  # theory drawn -> its legend text
    critical_scales, missing = [], []
    for label, group, look in lines:
        line = group.groupby("scale").median(numeric_only=True)  # seeds pooled
        ax.plot(line.index, line.rate.where(np.isfinite(line.rate)), label=label or "measured", **look)
        lost = line.index[~np.isfinite(line.rate)]
        if len(lost):  # no finite rate (diverged, nan): a hollow mark on the x axis at its scale
            ax.plot(lost, np.zeros(len(lost)), ls="none", marker="o", ms=7, mfc="none", mec=look["color"],
                    transform=ax.get_xaxis_transform(), clip_on=False)
            missing.append(f"{label or 'the run'} at scale {', '.join(f'{v:g}' for v in lost)}")
        theory = dict(color=look["color"], lw=1.0)
        if "lyapunov" in predicted and line.theory_lyapunov.notna().any():
            ax.plot(line.index, line.theory_lyapunov, ls="none", marker="x", ms=6, **theory)
            drawn["lyapunov"] = "Lyapunov exponent (x)"
        if "mean_field" in predicted and line.theory_mean_field.notna().all():
            # The drive to 3 digits: lines whose drives differ by less (other seq_lens, seeds) share one curve.
            drive = float(f"{group.input_drive_var.median():.3g}")
            dense, rates = mean_field_line(group.activation.iloc[0], float(summary.scale.min()),
                                           float(summary.scale.max()), drive)
            ax.plot(dense, rates, ls="--", **theory)
            drawn["mean_field"] = "mean field (dashed)"
            critical = group.theory_critical_scale.median()
            if np.isfinite(critical) and dense[0] <= critical <= dense[-1]:
                ax.axvline(critical, ls=":", **theory)
                critical_scales.append((f"{critical:.2f}", label))
                values = list(dict.fromkeys(value for value, _ in critical_scales))  # distinct, in order
                named = len(critical_scales) <= 2 and all(name for _, name in critical_scales)
                text = ", ".join(f"{value} ({name})" for value, name in critical_scales) if named else ", ".join(values)
                drawn["critical"] = textwrap.fill("critical scale, mean field (dotted): " + text, 44)
        if "linear" in predicted and line.theory_linear.notna().all():
            dense = np.linspace(summary.scale.min(), summary.scale.max(), 60)
            offset = float((line.theory_linear - np.log(line.index)).median())  # ln rho(W) at scale 1
            ax.plot(dense, np.log(dense) + offset, ls="-.", **theory)
            drawn["linear"] = "linear: ln ρ(W) (dash-dot)"
        for name, marker in (("mean_field", "o"), ("lyapunov", "x"), ("linear", "s")):
            if predicted and name in drawn and line[f"theory_{name}"].notna().any():
                axes[1][0].plot(line.index, line.rate - line[f"theory_{name}"], color=look["color"], ls="none",
                                marker=marker, ms=4.5, mfc="none" if marker in "os" else None)
    low, high = ax.get_ylim()
    low, high = min(low, -3 * STABLE_TOLERANCE), max(high, 3 * STABLE_TOLERANCE)  # both regions visible
    xlim = ax.get_xlim()
    ax.axhspan(STABLE_TOLERANCE, high, color="#D55E00", alpha=0.08, lw=0)
    ax.axhspan(low, -STABLE_TOLERANCE, color="#0072B2", alpha=0.08, lw=0)
    ax.axhspan(-STABLE_TOLERANCE, STABLE_TOLERANCE, color="0.6", alpha=0.3, lw=0)
    ax.set_ylim(low, high)
    ax.axhline(0, color="0.2", lw=0.9)
    ax.set_xlim(xlim)
    ax.set_ylabel("rate (nats per step back;\ne^rate = gain per step)")
    ax.grid(alpha=0.3)
    measured = f"measured ({recorders_named(summary)} recorder)"
    keys = [matplotlib.lines.Line2D([], [], color="0.3", marker="o", ms=3.5, label=measured)] if len(lines) > 1 else []
    keys += [matplotlib.lines.Line2D([], [], color="0.3", ls=ls, marker=marker, label=drawn[name])
             for name, ls, marker in (("lyapunov", "none", "x"), ("mean_field", "--", None), ("linear", "-.", None),
                                      ("critical", ":", None)) if name in drawn]
    keys += [matplotlib.patches.Patch(color="#D55E00", alpha=0.15, label="exploding (rate > %g)" % STABLE_TOLERANCE),
             matplotlib.patches.Patch(color="0.6", alpha=0.4, label="stable (|rate| ≤ %g)" % STABLE_TOLERANCE),
             matplotlib.patches.Patch(color="#0072B2", alpha=0.15, label="vanishing (rate < −%g)" % STABLE_TOLERANCE)]
    if missing:
        keys.append(matplotlib.lines.Line2D([], [], ls="none", marker="o", ms=7, mfc="none", mec="0.3",
                                            label="no finite rate (on the x axis)"))
    legend_beside(ax, (line_key if len(lines) > 1 else [matplotlib.lines.Line2D([], [], color=OKABE_ITO[0], marker="o",
                  ms=3.5, label=measured)]) + keys)
    if predicted:
        gaps = axes[1][0]
        gaps.axhline(0, color="0.2", lw=0.9)
        gaps.axhspan(-0.02, 0.02, color="0.6", alpha=0.2, lw=0)
        gaps.set_ylabel("measured − predicted\n(nats per step)")
        gaps.grid(alpha=0.3)
        marks = [matplotlib.lines.Line2D([], [], color="0.3", ls="none", marker=m, mfc="none" if m in "os" else None,
                                         label=f"− {text}") for name, m, text in
                 (("mean_field", "o", "mean field"), ("lyapunov", "x", "Lyapunov"), ("linear", "s", "linear"))
                 if name in drawn]
        marks.append(matplotlib.patches.Patch(color="0.6", alpha=0.3, label="±0.02"))
        gaps.legend(handles=marks, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1][0].set_xlabel(scale_label(summary))
    parts = [f"Fitted rate per step against scale, {measured}"
             + (f", a line per {', '.join(axes_names)}" if axes_names else ""),
             f"shaded: exploding above +{STABLE_TOLERANCE}, grey: stable within ±{STABLE_TOLERANCE}, "
             f"blue: vanishing below −{STABLE_TOLERANCE}"]
    parts += [drawn[name] for name in ("mean_field", "critical", "linear", "lyapunov") if name in drawn]
    if predicted:
        parts.append("lower panel: measured minus each prediction (grey: ±0.02)")
    if missing:
        parts.append("no finite rate (hollow circles on the x axis): " + "; ".join(missing))
    return [save(fig, folder / "phase", "; ".join(parts) + ".")]


def plot_seq_len(summary: pd.DataFrame, folder: Path) -> list[Drawn]:
    if "seq_len" not in varied(summary, ["seq_len"]):
        return []
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
    caption = ("End-to-end log10 gain (batch median, seeds pooled) against sequence length, ticks at the lengths swept"
               + (f", a line per {', '.join(axes_names)}" if axes_names else "") + ".")
    return [save(fig, folder / "seq_len", caption)]


def plot_layers(profile: pd.DataFrame, folder: Path) -> list[Drawn]:
    deep = profile[(profile.num_layers > 1) & (profile.state == "h")]
    if deep.empty:
        return []
    deep = deep[deep.step == deep.groupby("run_id").step.transform("min")]
    runs = list(deep.run_id.unique())
    shown = [runs[i] for i in np.linspace(0, len(runs) - 1, min(len(runs), MAX_LAYER_PANELS)).round().astype(int)]
    names = varied(deep, ["cell", *FACETS, "scale", "seq_len"])
    fig, axes, grid_axes = panel_grid(len(shown), min(len(shown), 4), height=2.6)
    norm, clipped = robust_centred_norm(deep.log10_norm)
    for ax, run in zip(axes, shown):
        rows = deep[deep.run_id == run]
        panel = rows.pivot(index="layer", columns="lag", values="log10_norm")
        ax.pcolormesh(edges(panel.columns.to_numpy(float)), edges(panel.index.to_numpy(float)),
                      np.ma.masked_invalid(panel.to_numpy(float)), cmap=DIVERGING, norm=norm, shading="flat")
        ax.set_yticks(panel.index)
        ax.set_facecolor("0.75")
        title(ax, facet_label(tuple(rows.iloc[0][names]), names) or run, size=8)
        lag_axis(ax, fontsize=8)
        ax.set_ylabel("layer (0 = bottom)")
    colourbar(fig, grid_axes, norm, DIVERGING, NORM_LABEL, extend="both" if clipped else "neither")
    if len(shown) < len(runs):
        fig.suptitle(f"{len(shown)} of {len(runs)} multi-layer runs, spread over the sweep", fontsize=9)
    caption = (f"log10 gradient norm of each layer's h over lag, a panel per run ({len(shown)} of {len(runs)} "
               f"multi-layer runs{', spread over the sweep' if len(shown) < len(runs) else ''}); white at gain 1, "
               f"colour range ±{norm.halfrange:.3g} ({RANGE_PERCENTILE}th percentile of |log10 norm|"
               + (f"; {clipped} values beyond it in the end colours" if clipped else "") + "); grey: no finite value.")
    return [save(fig, folder / "layers", caption)]


def plot_losses(losses: pd.DataFrame, folder: Path) -> list[Drawn]:
    """Eval loss against training step, a panel per cell (and task, seq_len), a line per remedy (or per
    value of the other varied axes), one colour per line across panels, the task's baseline dashed."""
    if losses.empty or losses.step.max() == 0:
        return []
    panel_axes = ["cell", *varied(losses, ["task", "seq_len"])]
    if varied(losses, ["remedy"]):
        line_axes = ["remedy"]
    else:
        line_axes = [a for a in varied(losses, FACETS + ["scale", "seed"]) if a not in panel_axes]
    label = (lambda row: facet_label(tuple(row), line_axes)) if line_axes else (lambda row: "")
    losses = losses.assign(line=losses[line_axes].apply(label, axis=1) if line_axes else "")
    # One look per line, the same in every panel: colours in turn, then line styles (9 remedies > 8 colours).
    look = {name: {"color": OKABE_ITO[i % len(OKABE_ITO)], "ls": LINE_STYLES[i // len(OKABE_ITO) % len(LINE_STYLES)]}
            for i, name in enumerate(sorted(losses.line.unique()))}
    groups = sorted(((k if isinstance(k, tuple) else (k,), g) for k, g in losses.groupby(panel_axes, sort=True, dropna=False)),
                    key=lambda item: (cell_rank(item[0][0]), tuple(map(str, item[0][1:]))))
    fig, axes, _ = panel_grid(len(groups), min(len(groups), 3), sharey=True)
    for ax, (keys, group) in zip(axes, groups):
        for (name, _), run in group.groupby(["line", "run_id"], sort=True):
            ax.plot(run.step, run.eval_loss, lw=1.3, **look[name])
        ax.axhline(group.baseline.iloc[0], color="0.3", ls="--", lw=1)
        ax.set_yscale("log")
        title(ax, facet_label(keys, panel_axes))
        ax.set_xlabel("training step")
        ax.set_ylabel("eval loss (log scale)")
        ax.grid(alpha=0.3, which="both")
    handles = [matplotlib.lines.Line2D([], [], lw=1.5, label=n, **style) for n, style in look.items() if n]
    handles.append(matplotlib.lines.Line2D([], [], color="0.3", ls="--", label="baseline"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    caption = (f"Eval loss (log scale) against training step, a panel per {', '.join(panel_axes)}"
               + (f", a line style per {', '.join(line_axes)} (colour, then dash; the same in every panel)" if line_axes else "")
               + f"; dashed: the task's baseline; {losses.run_id.nunique()} runs.")
    return [save(fig, folder / "losses", caption)]


def plot_training_profiles(profile: pd.DataFrame, folder: Path, summary: pd.DataFrame | None = None) -> list[Drawn]:
    """The gradient profile at initialisation and at every recorded training step, a panel per run,
    coloured by step (as Arjovsky et al. 2016's figure of ||dC/dh_t|| at init and later); every trained
    run, MAX_LAYER_PANELS to a page, in cell order."""
    top = profile[is_top_h(profile)]
    trained = top[top.groupby("run_id").step.transform("nunique") > 1]
    if trained.empty:
        return []
    # A remedy implies its activation, init and biases: name the remedy rather than each of them.
    names = ["cell", "remedy"] if varied(trained, ["remedy"]) else varied(trained, ["cell", *FACETS, "scale", "seq_len"])
    first = trained.drop_duplicates("run_id")
    runs = list(first.sort_values(names, key=lambda c: c.map(cell_rank) if c.name == "cell" else c, kind="stable").run_id)
    untrained = ""
    if summary is not None and "final_loss" in summary:  # runs of a training sweep that have no trained profile
        others = summary[~summary.run_id.isin(runs)]
        untrained = run_list(others, [n for n in names if n in others], limit=None, status=True)
    norm = matplotlib.colors.Normalize(0, trained.step.max())
    cmap = matplotlib.colormaps[SEQUENTIAL]
    pages = [runs[i:i + MAX_LAYER_PANELS] for i in range(0, len(runs), MAX_LAYER_PANELS)]
    written = []
    for number, shown in enumerate(pages):
        fig, axes, table = panel_grid(len(shown), min(len(shown), 4), height=2.8, sharey=True)
        for ax, run in zip(axes, shown):
            rows = trained[trained.run_id == run]
            for step, at in rows.groupby("step"):
                at = at.sort_values("lag")
                ax.plot(at.lag, at.log10_norm.where(np.isfinite(at.log10_norm)), color=cmap(norm(step)), lw=1.1)
            title(ax, facet_label(tuple(rows.iloc[0][names]), names) or run, size=8)
            lag_axis(ax, fontsize=8)
            ax.grid(alpha=0.3)
        outer_labels(axes, min(len(shown), 4), NORM_LABEL)
        colourbar(fig, table, norm, cmap, "training step")
        caption = (f"The gradient profile (batch median) at initialisation (step 0) and at each recorded training "
                   f"step, coloured by step, a panel per trained run ({len(shown)} here, {len(runs)} in all"
                   + (f", page {number + 1} of {len(pages)}" if len(pages) > 1 else "") + ")"
                   + ("; without a trained profile: " + untrained if untrained else "") + ".")
        written.append(save(fig, page_path(folder, "training_profiles", number, len(pages)), caption))
    return written


def plot_learnability(summary: pd.DataFrame, folder: Path) -> list[Drawn]:
    """Final eval loss (relative to the baseline) against the rate measured at initialisation: a colour
    per cell, a marker per remedy (a legend, never labels that could overprint each other)."""
    if "final_loss" not in summary or summary.final_loss.notna().sum() < 2:
        return []
    trained = summary[summary.final_loss.notna()]
    drawable = np.isfinite(trained.final_loss / trained.baseline) & np.isfinite(trained.rate_init) & (trained.final_loss > 0)
    data, lost = trained[drawable], trained[~drawable]
    by_remedy = "remedy" in data and data.remedy.nunique() > 1
    remedies = sorted(data.remedy.unique()) if by_remedy else []
    marker = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(remedies)}
    fig, (axes,) = grid(1, 1, width=6.0, height=4.4)
    ax = axes[0]
    cells = ordered_cells(data.cell)
    for cell in cells:
        for remedy, group in (data[data.cell == cell].groupby("remedy") if by_remedy else [(None, data[data.cell == cell])]):
            ax.scatter(group.rate_init, group.final_loss / group.baseline, color=cell_colour(cell), s=34, zorder=3,
                       marker=marker.get(remedy, "o"), edgecolors="white", linewidths=0.5)
    ax.axhline(1, color="0.3", ls="--", lw=1)
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("rate at initialisation (nats per step back)")
    ax.set_ylabel("final eval loss / baseline (log scale)")
    ax.grid(alpha=0.3, which="both")
    handles = [matplotlib.lines.Line2D([], [], ls="none", marker="o", ms=7, color=cell_colour(c), label=f"cell={c}")
               for c in cells]
    handles += [matplotlib.lines.Line2D([], [], ls="none", marker=marker[r], ms=7, color="0.35", label=f"remedy={r}")
                for r in remedies]
    handles.append(matplotlib.lines.Line2D([], [], color="0.3", ls="--", label="baseline"))
    if len(lost):  # named where the figure travels without its caption
        handles.append(matplotlib.lines.Line2D([], [], ls="none", label=f"not drawn (no finite loss or rate):\n"
                                               + run_list(lost, ["cell", "remedy"] if by_remedy else ["cell"], 3)))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    caption = (f"Final eval loss relative to the task's baseline (dashed) against the rate at initialisation, "
               f"{len(data)} trained runs: colour by cell" + (", marker by remedy" if by_remedy else "")
               + (f"; not drawn, no finite loss or rate: "
                  + run_list(lost, ["cell", "remedy"] if by_remedy else ["cell"], limit=None, status=True)
                  if len(lost) else "") + ".")
    return [save(fig, folder / "learnability", caption)]


def plot_spectrum(summary: pd.DataFrame, folder: Path) -> list[Drawn]:
    """The Lyapunov spectra (theory.spectrum_k > 0): exponent against its index, one line per run; where
    scale varies, the top exponents and the Kaplan-Yorke dimension against scale beside it."""
    if "spectrum" not in summary:
        return []
    runs = summary[summary.spectrum.map(lambda s: isinstance(s, (list, np.ndarray)) and len(s) > 0)]
    if runs.empty:
        return []
    by_scale = "scale" in varied(runs, ["scale"])
    fig, axes = plt.subplots(1, 3 if by_scale else 1, figsize=(13.5 if by_scale else 5.5, 4.0), squeeze=False,
                             layout="constrained")
    ax = axes[0][0]
    cmap, norm = matplotlib.colormaps[SEQUENTIAL], matplotlib.colors.Normalize(runs.scale.min(), runs.scale.max())
    for i, run in enumerate(runs.sort_values("scale").itertuples()):
        exponents = np.asarray(run.spectrum, dtype=float)
        ax.plot(np.arange(1, len(exponents) + 1), exponents, marker="o", ms=2.5, lw=1.1,
                color=cmap(norm(run.scale)) if by_scale else OKABE_ITO[i % len(OKABE_ITO)])
    ax.axhline(0, color="0.2", lw=0.9)
    ax.set_xlabel("index i (exponents sorted, largest first)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(r"Lyapunov exponent $\lambda_i$ (nats per step)")
    ax.set_title(f"spectra of {len(runs)} runs" + (", colour: scale" if by_scale else ""), fontsize=9)
    ax.grid(alpha=0.3)
    if by_scale:
        fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, label="scale")
        names, lines, line_key = line_groups(runs, "scale")
        top = min(3, int(runs.spectrum.map(len).min()))
        for label, group, look in lines:
            group = group.sort_values("scale")
            colour = look["color"]
            exponents = np.stack([np.asarray(s, dtype=float)[:top] for s in group.spectrum])
            for j, ls in zip(range(top), ["-", "--", ":"]):
                axes[0][1].plot(group.scale, exponents[:, j], color=colour, ls=ls, marker="o", ms=3)
            axes[0][1].plot(group.scale, group.rate, color=colour, ls="none", marker="x", ms=6)
            axes[0][2].plot(group.scale, group.lyapunov_dimension, color=colour, marker=look["marker"], ms=3.5,
                            ls=look["ls"], label=label or None)
        axes[0][1].axhline(0, color="0.2", lw=0.9)
        keys = [matplotlib.lines.Line2D([], [], color="0.3", ls=ls, marker="o", ms=3, label=rf"$\lambda_{j + 1}$")
                for j, ls in zip(range(top), ["-", "--", ":"])]
        keys.append(matplotlib.lines.Line2D([], [], color="0.3", ls="none", marker="x", ms=6,
                                            label="measured rate (recorder)"))
        axes[0][1].legend(handles=keys, fontsize=8)
        axes[0][1].set_ylabel("nats per step")
        axes[0][1].set_title(f"the top {top} exponents and the recorder's rate", fontsize=9)
        axes[0][2].set_ylabel("Kaplan-Yorke dimension\n(0: the top exponent < 0)")
        axes[0][2].set_title(f"Kaplan-Yorke dimension (at most k = {int(runs.spectrum.map(len).min())})", fontsize=9)
        if line_key:
            legend_beside(axes[0][2], line_key)
        for panel in axes[0][1:]:
            panel.set_xlabel(scale_label(runs))
            panel.grid(alpha=0.3)
    k = int(runs.spectrum.map(len).min())
    caption = (f"Left: the Lyapunov spectrum of each of {len(runs)} runs, exponent against index (largest first)"
               + (", coloured by scale" if by_scale else "") + "."
               + (f" Middle: the top {min(3, k)} exponents (solid, dashed, dotted) and the recorder's measured rate (x) "
                  f"against scale. Right: the Kaplan-Yorke dimension (0 when the top exponent is negative, at most "
                  f"k = {k}) against scale." if by_scale else ""))
    return [save(fig, folder / "spectrum", caption)]


MAX_DETAIL_PANELS = 12  # runs drawn in the units and gates figures (the titles say how many of how many)
# One colour per gate name across cells and figures, none of them black (the profile's line).
GATE_COLOURS = {"h": "#0072B2", "i": "#E69F00", "f": "#D55E00", "g": "#009E73", "o": "#CC79A7",
                "r": "#56B4E9", "z": "#999933", "n": "#8C564B", "u": "#332288"}


def unit_rates(units: pd.DataFrame) -> pd.Series:
    """Each unit's decay rate, log10 per step back: the slope over the middle half of its lags."""
    middle = units[(units.lag >= units.lag.max() * 0.25) & (units.lag <= units.lag.max() * 0.75)]
    middle = middle[np.isfinite(middle.log10_norm)]

    def slope(rows: pd.DataFrame) -> float:
        return float(np.polyfit(rows.lag, rows.log10_norm, 1)[0]) if rows.lag.nunique() > 1 else np.nan
    return middle.groupby(["layer", "state", "unit"]).apply(slope)


def plot_units(units: pd.DataFrame, summary: pd.DataFrame, folder: Path) -> list[Drawn]:
    """record.units=true: per run, log10 |dL/dS_t,j| for every state entry j (rows, sorted by their own
    decay rate, slowest on top) against the lag; one robust colour range for all panels."""
    runs = [r for r in summary.run_id if r in set(units.run_id)]
    shown = runs[:MAX_DETAIL_PANELS]
    finite = units.log10_norm[np.isfinite(units.log10_norm) & units.run_id.isin(shown)]
    if finite.empty:
        return []
    low, high = np.percentile(finite, [2, 98])
    norm = matplotlib.colors.Normalize(low, high)
    columns = min(3, len(shown))
    fig, axes = grid(-(-len(shown) // columns), columns)
    labels = varied(summary[summary.run_id.isin(shown)], ["cell", *FACETS, "scale", "seq_len"])
    for ax, run_id in zip(axes.flat, shown):
        rows = units[units.run_id == run_id]
        order = unit_rates(rows).sort_values(ascending=False, na_position="last").index
        table = rows.pivot_table(index=["layer", "state", "unit"], columns="lag", values="log10_norm").loc[order]
        ax.imshow(table.to_numpy(float), aspect="auto", cmap=SEQUENTIAL, norm=norm, interpolation="nearest",
                  extent=(table.columns.min() - 0.5, table.columns.max() + 0.5, len(table) - 0.5, -0.5))
        run = summary[summary.run_id == run_id].iloc[0]
        title(ax, facet_label(tuple(run[labels]), labels) or run_id)
        lag_axis(ax)
        ax.set_ylabel("state entry, by its decay rate\n(slowest on top)")
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, SEQUENTIAL), ax=axes, extend="both", shrink=0.9,
                 label=r"$\log_{10}|\partial L/\partial S_{t,j}|$ (2-98% range; beyond: end colours)")
    fig.suptitle(f"per-unit gradients at initialisation, {len(shown)} of {len(runs)} runs", fontsize=10)
    caption = (f"Per-unit gradients at initialisation: batch-median log10 |dL/dS_t,j| for every state entry j "
               f"(rows, sorted by their own decay rate, slowest on top) against lag, {len(shown)} of {len(runs)} runs; "
               f"one colour range for all panels, the 2–98% range ({low:.3g} to {high:.3g}), beyond it the end colours.")
    return [save(fig, folder / "units", caption)]


def plot_gates(gates: pd.DataFrame, profile: pd.DataFrame, summary: pd.DataFrame, folder: Path) -> list[Drawn]:
    """record.units=true: a panel per run and layer, each gate block's pre-activation gradient (solid)
    and its step's share of dL/dW_hh (dashed) against the lag, beside that layer's ||dL/dh|| (black)."""
    if "layer" not in gates:  # tables written before gates had layers: one layer
        gates = gates.assign(layer=0)
    panels_all = [(run, layer) for run in summary.run_id if run in set(gates.run_id)
                  for layer in sorted(gates[gates.run_id == run].layer.unique())]
    runs = list(dict.fromkeys(run for run, _ in panels_all))
    shown = panels_all[:MAX_DETAIL_PANELS]
    if not shown:
        return []
    columns = min(3, len(shown))
    fig, axes = grid(-(-len(shown) // columns), columns)
    labels = varied(summary[summary.run_id.isin([run for run, _ in shown])], ["cell", *FACETS, "scale", "seq_len"])
    hidden = profile[(profile.state == "h") & (profile.step == profile.groupby("run_id").step.transform("min"))]
    drawn: set[str] = set()
    for ax, (run_id, layer) in zip(axes.flat, shown):
        rows = gates[(gates.run_id == run_id) & (gates.layer == layer)].sort_values("lag")
        for gate, line in rows.groupby("gate", sort=False):
            colour = GATE_COLOURS.get(gate, "0.5")
            drawn.add(gate)
            ax.plot(line.lag, line.log10_norm.where(np.isfinite(line.log10_norm)), color=colour, lw=1.2)
            ax.plot(line.lag, line.log10_weight.where(np.isfinite(line.log10_weight)), color=colour, lw=1.0, ls="--")
        state = hidden[(hidden.run_id == run_id) & (hidden.layer == layer)].sort_values("lag")
        ax.plot(state.lag, state.log10_norm.where(np.isfinite(state.log10_norm)), color="k", lw=1.0)
        run = summary[summary.run_id == run_id].iloc[0]
        deep = gates[gates.run_id == run_id].layer.nunique() > 1
        title(ax, (facet_label(tuple(run[labels]), labels) or run_id) + (f", layer {layer}" if deep else ""))
        lag_axis(ax)
        ax.set_ylabel("log10 norm")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    handles = [matplotlib.lines.Line2D([], [], color=c, lw=1.2, label=f"gate {g}") for g, c in GATE_COLOURS.items()
               if g in drawn]
    handles += [matplotlib.lines.Line2D([], [], color="0.3", lw=1.2, label=r"$\|\partial L/\partial\, hw_t\|$ (pre-activation)"),
                matplotlib.lines.Line2D([], [], color="0.3", lw=1.0, ls="--",
                                        label=r"$\|C_t\|$: step t's part of $\partial L/\partial W_{hh}$"),
                matplotlib.lines.Line2D([], [], color="k", lw=1.0, label=r"$\|\partial L/\partial h_t\|$ (the layer's profile)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    fig.suptitle(f"per-gate gradients and weight-gradient contributions (batch medians; C_t summed over the "
                 f"batch), {len(shown)} of {len(panels_all)} panels ({len(runs)} runs)", fontsize=10)
    caption = (f"Per-gate gradients at initialisation, a panel per run and layer ({len(shown)} of {len(panels_all)}, "
               f"{len(runs)} runs): for each gate ({', '.join(g for g in GATE_COLOURS if g in drawn)}) the batch-median "
               f"norm of the gradient at its recurrent pre-activation (solid) and ||C_t||, step t's part of dL/dW_hh "
               f"summed over the batch (dashed), beside the layer's profile ||dL/dh_t|| (black).")
    return [save(fig, folder / "gates", caption)]


def make_figures(root: Path, profile: pd.DataFrame, summary: pd.DataFrame | None = None,
                 losses: pd.DataFrame | None = None, vector: bool = False, workers: int | None = None) -> list[Drawn]:
    """Every figure the tables support, under root/figures/; returns what was written (PNG and caption).

    The fits come from the profile (harness.core.analysis), so figures always use the current analysis;
    the summary, when given, marks the runs whose status carries numerical flags. The figures are
    drawn in `workers` processes at once (default: one per core for a profile of PARALLEL_ROWS rows
    or more, else this process alone); the files and captions do not depend on it (tested).
    """
    if profile.empty:
        return []
    folder = Path(root) / "figures"
    if folder.is_symlink():
        raise ConfigError(f"{folder}: a symbolic link; figures are never written through links; expected a real "
                          "folder or none")
    flagged = set() if summary is None else set(summary.run_id[~summary.status.isin(["ok"])].dropna())
    fits = headline(fit_runs(profile[profile.step == profile.groupby("run_id").step.transform("min")]))
    beside = [c for c in ("input_drive_var", *THEORY_COLUMNS) if summary is not None and c in summary]
    if beside:  # the predictions stored with each run
        fits = fits.join(summary.set_index("run_id")[beside], on="run_id")
    jobs: list[tuple[Callable[..., list[Drawn]], tuple]] = [
        (plot_profiles, (profile, folder, flagged)), (plot_decay_laws, (profile, fits, folder)),
        (plot_heatmap, (profile, folder)), (plot_phase, (fits, folder)), (plot_seq_len, (fits, folder)),
        (plot_layers, (profile, folder)), (plot_training_profiles, (profile, folder, summary))]
    if losses is not None:
        jobs.append((plot_losses, (losses, folder)))
    if summary is not None and "rate_init" in summary:
        jobs.append((plot_learnability, (summary, folder)))
    if summary is not None:
        jobs.append((plot_spectrum, (summary, folder)))
        if (Path(root) / UNITS).exists():
            jobs.append((plot_units, (pd.read_parquet(Path(root) / UNITS), summary, folder)))
        if (Path(root) / GATES).exists():
            jobs.append((plot_gates, (pd.read_parquet(Path(root) / GATES), profile, summary, folder)))
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), len(jobs)) if len(profile) >= PARALLEL_ROWS and FORKS else 1
    if workers <= 1:
        return [drawn for function, args in jobs for drawn in draw(function, args, vector)]
    return [drawn for figures in draw_in_processes(jobs, workers, vector) for drawn in figures]


PARALLEL_ROWS = 10_000  # below this, figures take well under a second each and forking would cost more than it saves
FORKS = sys.platform.startswith("linux")  # forked workers inherit the tables instead of receiving copies
_JOBS: list[tuple[Callable[..., list[Drawn]], tuple]] = []  # what forked workers draw, by index


def draw(function: Callable[..., list[Drawn]], args: tuple, vector: bool) -> list[Drawn]:
    """One figure function's pages, in these figures' style (and nobody else's)."""
    token = VECTOR.set(vector)
    try:
        with plt.rc_context({"font.size": 10, "axes.titlesize": 10}):
            return function(*args)
    finally:
        VECTOR.reset(token)


def draw_in_processes(jobs: list, workers: int, vector: bool) -> list[list[Drawn]]:
    """Each job drawn in one of `workers` forked processes; their results in the jobs' order. The
    workers read the jobs from memory they inherit (no copy of the tables is sent), and run torch,
    which the mean-field curves use, on one thread, as torch's own DataLoader workers do after a fork."""
    _JOBS[:] = jobs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12's "multi-threaded fork"
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                                        initializer=figure_worker) as pool:
                return list(pool.map(draw_job, range(len(jobs)), [vector] * len(jobs)))
    finally:
        _JOBS.clear()


def draw_job(index: int, vector: bool) -> list[Drawn]:
    return draw(*_JOBS[index], vector)


def figure_worker() -> None:
    """A forked figure worker: torch on one thread, and Ctrl-C left to the parent, which stops the
    pool and says so in one line (a worker's own KeyboardInterrupt would print a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
