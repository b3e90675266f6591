"""How figures are laid out from what a sweep varied: facets and panels, grids, titles, axes, colour
ranges, legends and the lines of the summary-based figures."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.core.spec import RECORDING, is_config_column
from harness.lab.figures.style import (
    FACETS,
    LAG_LABEL,
    OKABE_ITO,
    RANGE_PERCENTILE,
    ROWS_PER_PAGE,
    TICK_ROOM,
    TITLE_POINTS,
    cell_colour,
    cell_rank,
    look_of,
    ordered_cells,
    scaled,
)
from harness.lab.fits import is_top_h
from harness.lab.summary import recordings_apart


def varied(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns that take more than one value; a cell's own field (cell.forget_bias, empty for the
    other cells) counts only if it varies within one cell."""

    def varies(column: str) -> bool:
        if column.startswith("cell."):
            return bool((frame.groupby("cell")[column].nunique() > 1).any())
        return frame[column].nunique(dropna=False) > 1

    return [c for c in columns if c in frame and varies(c)]


def swept(frame: pd.DataFrame, first: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Every config column the runs vary, seed apart, each once: a column the ones before it determine
    (a remedy's activation, init or clip_norm; an lstm-only key beside cell) is left out, being named
    by them. Order: `first` (a figure's x or colour axis), cell, remedy, the other FACETS, the other
    config columns by name, scale, seq_len, recording."""
    config = [c for c in frame.columns if is_config_column(c)]
    # recording last: kept only where nothing else, seed included, tells recordings from Python apart
    order = [*first, "cell", "remedy", *FACETS, *sorted(set(config) - {RECORDING}), "scale", "seq_len", RECORDING]
    kept: list[str] = []
    for axis in dict.fromkeys(a for a in order if a in config and a != "seed"):
        if axis == RECORDING:
            varies = recordings_apart(frame, kept)
        elif kept:
            varies = bool((frame.groupby(kept, dropna=False)[axis].nunique(dropna=False) > 1).any())
        else:
            varies = frame[axis].nunique(dropna=False) > 1
        if varies:
            kept.append(axis)
    return kept


def seeds_of(frame: pd.DataFrame) -> list:
    """The seeds the runs were drawn with, where more than one (else [])."""
    seeds = sorted(frame.seed.dropna().unique()) if "seed" in frame else []
    return seeds if len(seeds) > 1 else []


def seed_list(seeds: list) -> str:
    """'seeds 0-4' for a run of whole numbers, else 'seeds 0, 3, 7'."""
    values = [int(s) if isinstance(s, (int, np.integer)) or float(s).is_integer() else s for s in seeds]
    whole = all(isinstance(v, int) for v in values)
    # consecutive, compared pairwise: a list of the range 0..2**63 - 1 would never be built
    if whole and len(values) > 2 and all(b - a == 1 for a, b in zip(values, values[1:])):
        return f"seeds {values[0]}–{values[-1]}"
    return "seeds " + ", ".join(map(str, values))


def run_names(runs: pd.DataFrame) -> list[str]:
    """The axes that name a run among these: every swept one, and seed where seeds vary."""
    return [*swept(runs), *(["seed"] if seeds_of(runs) else [])]


def run_title(run: pd.Series, names: list[str]) -> str:
    """A panel's title for one run: its values of names, or its cell where nothing varies; never its id."""
    return facet_label(tuple(run[names]), names) or f"cell={run['cell']}"


def unnamed(frame: pd.DataFrame, shown: list[str]) -> str:
    """The caption's words for the swept axes (seed included) a figure does not tell apart, if any:
    '; drawn alike: runs that differ only in scale (3 values) or seed (5 values)'."""
    hidden = [a for a in [*swept(frame), *(["seed"] if seeds_of(frame) else [])] if a not in shown]
    if not hidden:
        return ""
    return "; drawn alike: runs that differ only in " + " or ".join(
        f"{a} ({value_count(frame, a)} values)" for a in hidden
    )


def value_count(frame: pd.DataFrame, axis: str) -> int:
    """How many values a swept axis takes: a missing value counts (a damaged run's unknown seed), except
    for a cell's own key, empty for the cells that do not take it, and recording (none before it was)."""
    return frame[axis].nunique(dropna=axis.startswith("cell.") or axis == RECORDING)


def colour_axis(frame: pd.DataFrame) -> str | None:
    return next(iter(varied(frame, ["scale", "seq_len"])), None)


def facet_label(keys: tuple, names: list[str]) -> str:
    """'cell=lstm, cell.forget_bias=1.0'; a cell's own key that its cell does not take (empty: rnn has no
    cell.forget_bias, a built-in cell no cell.kwargs.*) is left out: it read `cell.forget_bias=nan`."""
    return ", ".join(
        f"{n}={k}"
        for n, k in zip(names, keys)
        if not ((n.startswith("cell.") or n == RECORDING) and not isinstance(k, str) and pd.isna(k))
    )


def line_label(keys: tuple, names: list[str]) -> str:
    """A line's legend label: facet_label, or, for the line of a configuration whose recordings are not
    told apart beside lines named by theirs (harness.lab.summary.told_apart), what it pools."""
    return facet_label(keys, names) or ("seeds pooled (no recording named)" if RECORDING in names else "")


def title(ax: plt.Axes, text: str, size: float = TITLE_POINTS) -> None:
    """A panel title wrapped to the panel's width, so that no title runs into its neighbour or off the page."""
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    characters = max(int(width_in * 72 / (0.55 * size)), 12)  # an average glyph is ~0.55 em wide
    ax.set_title(textwrap.fill(text, characters), fontsize=size)


def grid(rows: int, cols: int, width: float = 4.2, height: float = 3.3, **kw: Any) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols + 1.2, height * rows), squeeze=False, layout="constrained", **kw
    )
    return fig, axes


def run_list(runs: pd.DataFrame, names: list[str], limit: int | None = 8, status: bool = False) -> str:
    """'cell=rnn, scale=3; cell=gru, scale=3' for a caption (the first `limit`, then how many more;
    limit None: all), each with its status in brackets if asked."""
    labels = [
        (facet_label(tuple(row), names) or str(run_id)) + (f" ({state})" if status else "")
        for run_id, state, row in zip(
            runs.run_id, runs.status if status else runs.run_id, runs[names].itertuples(index=False)
        )
    ]
    limit = len(labels) if limit is None else limit
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return "; ".join(labels[:limit]) + more


def leaves_range(lag: pd.Series, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(lags, values) of the last finite point before a run's norm turns inf or nan (where it left
    float's range), for a mark there."""
    finite = np.isfinite(values.to_numpy(float))
    exits = np.flatnonzero(finite[:-1] & ~finite[1:])
    return lag.to_numpy(float)[exits], values.to_numpy(float)[exits]


def value_order(values: Iterable) -> tuple:
    """A sort key for a tuple of axis values: numbers by value (seq_len 300 before 1000), then text, then
    missing values, so that panels and lines follow the axes as a reader counts them."""
    return tuple(
        (2, 0.0, "")
        if value is None or (not isinstance(value, str) and pd.isna(value))
        else (1, 0.0, value)
        if isinstance(value, str)
        else (0, float(value), "")
        for value in values
    )


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
    groups.sort(key=lambda item: (value_order(item[0][1:]), cell_rank(item[0][0])))
    titled = [(facet_label(keys, axes), group) for keys, group in groups]
    per_page = ROWS_PER_PAGE * columns
    return columns, [titled[i : i + per_page] for i in range(0, len(titled), per_page)]


def panel_grid(count: int, columns: int, **kw: Any) -> tuple[plt.Figure, np.ndarray, np.ndarray]:
    """A figure with `count` panels in `columns`; axes beyond count are removed.
    Returns (figure, the panels, the whole grid)."""
    fig, axes = grid(-(-count // columns), columns, **kw)
    for ax in axes.ravel()[count:]:
        fig.delaxes(ax)
    return fig, axes.ravel()[:count], axes


def outer_labels(axes: np.ndarray, columns: int, ylabel: str) -> None:
    """The y label on the first column only: a rotated label inside the grid runs into its neighbour's
    x label."""
    for i, ax in enumerate(axes):
        ax.set_ylabel(ylabel if i % columns == 0 else "")


def tick_room(ax: plt.Axes, labels: list[str], axis: str) -> tuple[float, float]:
    """(the panel's length along `axis`, the room each of these tick labels needs along it), in points."""
    fig = ax.figure
    box = ax.get_position()  # before the layout engine shrinks it: TICK_ROOM leaves it the margin
    length = (box.height * fig.get_figheight() if axis == "y" else box.width * fig.get_figwidth()) * 72
    size = matplotlib.font_manager.FontProperties(size=plt.rcParams[f"{axis}tick.labelsize"]).get_size_in_points()
    room = TICK_ROOM * size if axis == "y" else (0.6 * max(map(len, labels), default=1) + TICK_ROOM) * size
    return length, room


def index_ticks(ax: plt.Axes, labels: list[str], axis: str = "y") -> None:
    """Ticks at 0, 1, ..., n - 1 named by labels (a row or column per value swept), every k-th only where
    all of them would not fit along the panel: 100 swept scales would be a black smear of labels."""
    length, room = tick_room(ax, labels, axis)
    step = max(1, math.ceil(len(labels) * room / max(length, 1.0)))
    positions = range(0, len(labels), step)
    (ax.set_yticks if axis == "y" else ax.set_xticks)(list(positions), [labels[i] for i in positions])


def value_ticks(ax: plt.Axes, values: Sequence[float], axis: str = "x") -> None:
    """Ticks at the values swept along a numeric axis (linear or log, its limits set), labelled '{:g}',
    as many as fit: the smallest, then each one a label's room past the last kept, since evenly thinned
    ticks would still crowd where the values do (long lengths, on a log axis); the largest replaces the
    last kept, so that the labels span the sweep."""
    values = sorted(values)
    labels = [f"{v:g}" for v in values]
    length, room = tick_room(ax, labels, axis)
    scale = (ax.xaxis if axis == "x" else ax.yaxis).get_transform()
    low, high = scale.transform(np.array((ax.get_xlim if axis == "x" else ax.get_ylim)()))
    at = (scale.transform(np.array(values, dtype=float)) - low) / (high - low) * length  # points along the axis
    kept = [0]
    for i in range(1, len(values)):
        if at[i] - at[kept[-1]] >= room:
            kept.append(i)
    if len(kept) > 1:
        kept[-1] = len(values) - 1
    (ax.set_yticks if axis == "y" else ax.set_xticks)([values[i] for i in kept], [labels[i] for i in kept])


def lag_axis(ax: plt.Axes, **kw: Any) -> None:
    """An x axis of lags: named, with whole-number ticks (a lag of 2.5 steps does not exist)."""
    ax.set_xlabel(LAG_LABEL, **kw)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def top_h(profile: pd.DataFrame) -> pd.DataFrame:
    """Each run's top-layer h at its first recorded step."""
    top = profile[is_top_h(profile)]
    return top[top.step == top.groupby("run_id").step.transform("min")]


def colourbar(
    fig: plt.Figure, axes: np.ndarray, norm: matplotlib.colors.Normalize, cmap: Any, label: str, extend: str = "neither"
) -> None:
    used = [ax for ax in np.ravel(axes) if ax.figure is fig and ax in fig.axes]
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=used, label=label, shrink=0.9, extend=extend)


def robust_centred_norm(
    values: pd.Series, percentile: float = RANGE_PERCENTILE
) -> tuple[matplotlib.colors.CenteredNorm, int]:
    """Symmetric about 0 (gain 1), so that equal colours mean equal magnitudes of decay and growth, over
    the `percentile` of |values|: one extreme run no longer turns every other one a flat colour.
    Returns the norm and how many finite values lie beyond it (drawn in the end colours)."""
    finite = values[np.isfinite(values)].abs()
    halfrange = max(float(np.percentile(finite, percentile)) if len(finite) else 0.0, 1e-3)
    return matplotlib.colors.CenteredNorm(vcenter=0.0, halfrange=halfrange), int((finite > halfrange).sum())


def edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (for pcolormesh with uneven spacing)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def legend_beside(ax: plt.Axes, handles: list, **kw: Any) -> None:
    """A legend right of the axes, in as many columns as it takes to stay within the figure's height."""
    rows = max(int(ax.figure.get_figheight() * 72 / 14) - 2, 8)  # ~14 points per 8-point entry
    ax.legend(
        handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=-(-len(handles) // rows), **kw
    )


def scale_label(summary: pd.DataFrame) -> str:
    """An x axis of scales, named for what scale multiplies in the cells drawn."""
    cells = list(dict.fromkeys(summary.cell))
    own = {scaled(cell) for cell in cells}
    if len(own) == 1:
        return f"scale (multiplies {own.pop()})"
    return "scale (multiplies " + ", ".join(f"{scaled(c)} for {c}" for c in cells) + ")"


class Line(NamedTuple):
    label: str  # the varied axes' values, "" when the figure has one line
    rows: pd.DataFrame
    look: dict  # colour (the cell's, where cells differ), line style, marker


class Lines(NamedTuple):
    axes: list[str]  # the varied axes the lines stand for
    lines: list[Line]
    key: list  # legend handles that explain the looks: a colour per cell and a style per other combination


def line_groups(summary: pd.DataFrame, x: str) -> Lines:
    """Lines for a summary-based figure: one per combination of the swept axes other than x (seeds
    apart: a line's points pool them; harness.lab.figures.layout.swept). Where
    cells differ, a line's colour is its cell's and its style stands for the combination of the other
    axes, the same style for the same combination in every cell, so the legend is a colour per cell
    plus a style per combination (3 + 8 entries for 24 lines, not 24); otherwise each line's own."""
    axes = [a for a in swept(summary, [x]) if a != x]
    groups = (
        [(k if isinstance(k, tuple) else (k,), g) for k, g in summary.groupby(axes, sort=True, dropna=False)]
        if axes
        else [((), summary)]
    )
    if "cell" not in axes:
        lines = [
            Line(line_label(keys, axes), rows, look_of(i // len(OKABE_ITO), OKABE_ITO[i % len(OKABE_ITO)]))
            for i, (keys, rows) in enumerate(groups)
        ]
        key = (
            [matplotlib.lines.Line2D([], [], label=line.label, **line.look) for line in lines] if len(lines) > 1 else []
        )
        return Lines(axes, lines, key)
    at = axes.index("cell")
    others = [a for a in axes if a != "cell"]

    def rest(keys: tuple) -> tuple:  # a line's values of the axes other than cell
        return tuple(k for i, k in enumerate(keys) if i != at)

    combinations = sorted({rest(keys) for keys, _ in groups}, key=value_order)
    groups.sort(key=lambda item: (cell_rank(item[0][at]), combinations.index(rest(item[0]))))
    lines = [
        Line(line_label(keys, axes), rows, look_of(combinations.index(rest(keys)), cell_colour(keys[at])))
        for keys, rows in groups
    ]
    key = [
        matplotlib.lines.Line2D([], [], color=cell_colour(cell), lw=2, label=f"cell={cell}")
        for cell in ordered_cells(k[at] for k, _ in groups)
    ]
    if others:
        key += [
            matplotlib.lines.Line2D([], [], label=line_label(combination, others), **look_of(n, "0.35"))
            for n, combination in enumerate(combinations)
        ]
    return Lines(axes, lines, key)


def interval_bars(ax: plt.Axes, points: pd.DataFrame, metric: str, colour: Any, **kw: Any) -> list[int]:
    """Error bars from points' <metric>_ci_low to _ci_high (harness.lab.summary.pooled, indexed by x)
    about <metric>_mean, where a point pools two or more seeds; returns the points' n (finite values)."""
    mean, low, high = (points[f"{metric}_{s}"].to_numpy(float) for s in ("mean", "ci_low", "ci_high"))
    shown = np.isfinite(low) & np.isfinite(high) & np.isfinite(mean)
    if shown.any():
        x = points.index.to_numpy(float)[shown]
        bars = ax.errorbar(
            x,
            mean[shown],
            yerr=[mean[shown] - low[shown], high[shown] - mean[shown]],
            fmt="none",
            ecolor=colour,
            elinewidth=1.0,
            capsize=3,
            zorder=2.5,
            **kw,
        )
        for artist in bars.lines[1] + bars.lines[2]:  # caps and bars: named, for readers of the artists
            artist.set_gid("interval")
    return [int(n) for n in points[f"{metric}_n"] if n > 0]


def interval_key() -> matplotlib.lines.Line2D:
    """The legend's entry for interval_bars' bars."""
    return matplotlib.lines.Line2D(
        [], [], color="0.3", ls="none", marker="|", ms=10, mew=1.0, label="95% t interval of the mean over seeds"
    )


def count_range(counts: Sequence[int]) -> str:
    """How many runs each pooled point holds, for a caption's "n = ...": '3' where all hold 3, else '2–5'
    (an en dash, as every range in the captions)."""
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}–{high}"


def pooled_seeds(counts: list[int], seeds: list, point: str = "point") -> str:
    """The caption's words for points that pool seeds: how many, which, and what the bars are; '' where
    no point pools more than one run."""
    if not counts or max(counts) < 2:
        return ""
    return (
        f"seeds pooled{f' ({seed_list(seeds)})' if seeds else ''}: a {point} is the mean over its configuration's "
        f"n = {count_range(counts)} seeds, its bar the 95% t interval of that mean (Student t, mean ± t·s/√n; as in "
        "summary_by_config)"
    )
