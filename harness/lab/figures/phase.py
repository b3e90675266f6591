"""The `phase` figure: fitted rate against scale, a line per cell/activation (and other varied axes),
the zero line, the vanishing / stable / exploding bands shaded, and beside it each prediction of
harness.lab.theory_table.THEORY the runs carry (linear ln rho(W), the mean-field curve with its
critical scale, Lyapunov exponents), with a lower panel of the gaps (measured - predicted). Drawn
when scale varied."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.core.analysis import STABLE_TOLERANCE
from harness.lab.figures.layout import (
    interval_bars,
    interval_key,
    legend_beside,
    line_groups,
    pooled_seeds,
    scale_label,
    seeds_of,
    varied,
)
from harness.lab.figures.output import Page
from harness.lab.figures.style import OKABE_ITO
from harness.lab.summary import pooled
from harness.lab.theory_curves import line_curve
from harness.lab.theory_table import THEORY, Prediction


class PhaseLine(NamedTuple):
    label: str  # the varied axes' values, "" when the figure has one line
    runs: pd.DataFrame
    points: pd.DataFrame  # per scale (seeds pooled): the runs' means, and POOLED's statistics; indexed by scale
    look: dict  # colour, line style, marker (harness.lab.figures.layout.line_groups)
    curve: tuple[np.ndarray, np.ndarray] | None  # its mean-field curve (scales, rates), where stored
    marked: bool = False  # other lines share its colour: its theory curves carry its marker


@dataclass
class Traced:
    """What the lines drew, for the legends and the caption."""

    predictions: set[str] = field(default_factory=set)  # names of the predictions drawn on some line
    gaps: set[str] = field(default_factory=set)  # ... and of those whose gaps some line has (no curve needed)
    # (critical scale to 2 decimals, its line's label, its cell) of each line's dotted vertical line ...
    critical: list[tuple[str, str, str]] = field(default_factory=list)
    critical_beyond: list[tuple[str, str, str]] = field(default_factory=list)  # ... and outside the scales run
    missing: list[str] = field(default_factory=list)  # lines' scales with no finite rate
    flagged: list[str] = field(default_factory=list)  # lines' scales whose finite rate pools a flagged run
    counts: list[int] = field(default_factory=list)  # each point's runs with a finite rate (seeds pooled)


def draw_phase(summary: pd.DataFrame, curves: pd.DataFrame | None, folder: Path) -> Iterator[Page]:
    """From the runs' fits, with the predictions stored beside them (harness.lab.figures.make_figures),
    and the mean-field curves stored beside the summary (harness.lab.theory_curves; None: none drawn)."""
    if "scale" not in varied(summary, ["scale"]):
        return
    axes_names, lines, line_key = line_groups(summary, "scale")
    predicted = [p for p in THEORY if p.column in summary and summary[p.column].notna().any()]
    fig, axes = plt.subplots(
        2 if predicted else 1,
        1,
        figsize=(8.2, 6.4 if predicted else 4.4),
        sharex=True,
        squeeze=False,
        layout="constrained",
        height_ratios=[3, 1.3] if predicted else [1],
    )
    ax, gaps = axes[0][0], (axes[1][0] if predicted else None)
    traced = Traced()
    # Where seeds are pooled, or lines share a colour (a cell's lines over other axes), each line's gaps
    # a little apart from the others', in the legend's order: their bars show, and each can be told.
    colours = [look["color"] for _, _, look in lines]
    shared = len(set(colours)) < len(colours)
    pools = summary.groupby([*axes_names, "scale"], dropna=False).size().max() > 1
    span = float(summary.scale.max() - summary.scale.min()) if pools or shared else 0.0
    for number, (label, runs, look) in enumerate(lines):
        marked = colours.count(look["color"]) > 1
        line = PhaseLine(label, runs, points_of(runs, predicted), look, line_curve(curves, runs), marked)
        trace_measured(ax, line, traced)
        for prediction in predicted:
            if TRACES[prediction.name](ax, prediction, line, summary, traced):
                traced.predictions.add(prediction.name)
        if gaps is not None:
            trace_gaps(gaps, line, predicted, traced, (number - (len(lines) - 1) / 2) * 0.012 * span)
    shade_regimes(ax)
    measured = f"measured ({recorders_named(summary)} recorder)"
    shown = drawn_predictions(traced)
    lines_key = (
        line_key
        if len(lines) > 1
        else [matplotlib.lines.Line2D([], [], color=OKABE_ITO[0], marker="o", ms=3.5, label=measured)]
    )
    intervals = [interval_key()] if max(traced.counts, default=0) > 1 else []
    legend_beside(ax, lines_key + intervals + phase_keys(measured, len(lines) > 1, shown, traced))
    if gaps is not None:
        gap_axes(gaps, traced)
    axes[-1][0].set_xlabel(scale_label(summary))
    parts = [
        f"Fitted rate per step against scale, {measured}"
        + (f", a line per {', '.join(axes_names)}" if axes_names else ""),
        f"shaded: exploding above +{STABLE_TOLERANCE}, grey: stable within ±{STABLE_TOLERANCE}, "
        f"blue: vanishing below −{STABLE_TOLERANCE}",
        *(text for _, _, text in shown),
    ]
    seeds = pooled_seeds(traced.counts, seeds_of(summary))
    if seeds:
        parts.insert(1, seeds)
    if shared and (traced.predictions or traced.gaps):
        parts.append(
            "where a cell has several lines, the curves drawn for a line carry its marker"
            + (" and its gaps stand side by side at each scale, in the legend's order" if predicted else "")
        )
    if predicted:
        parts.append("lower panel: measured minus each prediction (grey: ±0.02)")
    if traced.missing:
        parts.append("no finite rate (hollow circles on the x axis): " + "; ".join(traced.missing))
    if traced.flagged:
        parts.append(
            "boxed: a point with a run whose status carries numerical flags (diverged, overflow, nan, underflow "
            "or zero; the report lists them): " + "; ".join(traced.flagged)
        )
    yield Page(fig, folder / "phase", "; ".join(parts) + ".")


def points_of(runs: pd.DataFrame, predicted: list[Prediction]) -> pd.DataFrame:
    """A line's points, indexed by scale, seeds pooled (harness.lab.summary.pooled): the rate's and each
    prediction's mean over the runs (as `rate` and the prediction's column), and the statistics of the
    rate and of each gap (measured minus predicted, run by run)."""
    runs = runs.assign(**{p.gap: runs.rate - runs[p.column] for p in predicted})
    metrics = ["rate", *(p.column for p in predicted), *(p.gap for p in predicted)]
    points = pooled(runs, ["scale"], metrics).set_index("scale")
    for metric in metrics:
        points[metric] = points[f"{metric}_mean"]
    return points


def trace_measured(ax: plt.Axes, line: PhaseLine, traced: Traced) -> None:
    """The fitted rate, boxed where a run of the point carries numerical flags (its status is not ok,
    as the profiles draw such a run dashed), and a hollow mark on the x axis at each scale with no
    finite rate (diverged, nan)."""
    rate = line.points.rate
    ax.plot(line.points.index, rate.where(np.isfinite(rate)), label=line.label or "measured", **line.look)
    traced.counts += interval_bars(ax, line.points, "rate", line.look["color"])
    if "status" in line.runs:
        flags = line.runs.status.ne("ok").groupby(line.runs.scale).any()
        boxed = [x for x in line.points.index if flags.get(x, False) and np.isfinite(rate[x])]
        if boxed:
            ax.plot(boxed, rate[boxed], ls="none", marker="s", ms=9, mfc="none", mec="0.15", mew=0.9, zorder=4)
            ax.lines[-1].set_gid("flagged")  # named, for readers of the artists
            traced.flagged.append(f"{line.label or 'the run'} at scale {', '.join(f'{v:g}' for v in boxed)}")
    lost = line.points.index[~np.isfinite(rate)]
    if len(lost):
        ax.plot(
            lost,
            np.zeros(len(lost)),
            ls="none",
            marker="o",
            ms=7,
            mfc="none",
            mec=line.look["color"],
            transform=ax.get_xaxis_transform(),
            clip_on=False,
        )
        traced.missing.append(f"{line.label or 'the run'} at scale {', '.join(f'{v:g}' for v in lost)}")


def trace_marks(ax: plt.Axes, prediction: Prediction, line: PhaseLine, summary: pd.DataFrame, traced: Traced) -> bool:
    """A mark at each scale run (the Lyapunov exponent of each run's own matrices, seeds pooled)."""
    values = line.points[prediction.column]
    if not values.notna().any():
        return False
    ax.plot(
        line.points.index, values, ls=prediction.line, marker=prediction.marker, ms=6, color=line.look["color"], lw=1.0
    )
    return True


def trace_mean_field(
    ax: plt.Axes, prediction: Prediction, line: PhaseLine, summary: pd.DataFrame, traced: Traced
) -> bool:
    """The line's own network's mean-field rate, dense in scale (harness.lab.theory_curves: the rnn's, or
    the gated minimal's, gru's or lstm's at the gate biases its settings give), and its critical scale
    (gain 1 per step, the runs' theory_critical_scale) as a dotted vertical line in the line's colour
    where that lies inside the scales run, else named as beyond them; the latter also where no curve
    is stored. Whether it drew the curve."""
    if not line.points[prediction.column].notna().all():
        return False
    if line.curve is not None:
        dense, rates = line.curve
        shown = (dense >= summary.scale.min()) & (dense <= summary.scale.max())  # harness.plot --where
        ax.plot(dense[shown], rates[shown], ls=prediction.line, color=line.look["color"], lw=1.0, **curve_marks(line))
    critical = float(line.runs.theory_critical_scale.median()) if "theory_critical_scale" in line.runs else np.nan
    cell = str(line.runs.cell.iloc[0]) if "cell" in line.runs else ""
    if np.isfinite(critical) and summary.scale.min() <= critical <= summary.scale.max():
        ax.axvline(critical, ls=":", color=line.look["color"], lw=1.0)
        traced.critical.append((f"{critical:.2f}", line.label, cell))
    elif np.isfinite(critical):  # named in the caption, so that a cell's missing line is explained
        traced.critical_beyond.append((f"{critical:.2f}", line.label, cell))
    return line.curve is not None


def trace_linear(ax: plt.Axes, prediction: Prediction, line: PhaseLine, summary: pd.DataFrame, traced: Traced) -> bool:
    """ln rho(W), dense in scale: ln(scale) plus the runs' ln rho(W) at scale 1."""
    values = line.points[prediction.column]
    if not values.notna().all():
        return False
    dense = np.linspace(summary.scale.min(), summary.scale.max(), 60)
    offset = float((values - np.log(line.points.index)).median())
    ax.plot(dense, np.log(dense) + offset, ls=prediction.line, color=line.look["color"], lw=1.0, **curve_marks(line))
    return True


def curve_marks(line: PhaseLine) -> dict:
    """A dense theory curve's marks: the line's own marker, hollow, a few along it, where other lines
    share its colour (else none: the colour tells it)."""
    return {"marker": line.look["marker"], "markevery": 0.2, "ms": 4, "mfc": "none"} if line.marked else {}


# How each prediction of THEORY is drawn on a line; each returns whether it drew anything.
TRACES: dict[str, Callable[[plt.Axes, Prediction, PhaseLine, pd.DataFrame, Traced], bool]] = {
    "linear": trace_linear,
    "mean_field": trace_mean_field,
    "lyapunov": trace_marks,
}


def trace_gaps(gaps: plt.Axes, line: PhaseLine, predicted: list[Prediction], traced: Traced, dodge: float) -> None:
    """Measured minus each prediction the line's runs have (whether or not its curve is drawn above: the
    mean of the runs' gaps, with its interval where seeds are pooled), at each scale run moved by dodge:
    circles and squares hollow, crosses as they are."""
    points = line.points.set_axis(line.points.index + dodge)
    for prediction in predicted:
        values = line.points[prediction.column]
        if values.notna().any():
            traced.gaps.add(prediction.name)
            gaps.plot(
                points.index,
                points[prediction.gap],
                color=line.look["color"],
                ls="none",
                marker=prediction.marker,
                ms=4.5,
                mfc="none" if prediction.marker in "os" else None,
            )
            interval_bars(gaps, points, prediction.gap, line.look["color"], alpha=0.6)


def drawn_predictions(traced: Traced) -> list[tuple[str, str | None, str]]:
    """(line style, marker, text) of each prediction drawn, in THEORY's order, the critical scale after
    the mean field's curve: the legend's entries and the caption's."""
    shown = []
    for prediction in THEORY:
        if prediction.name in traced.predictions:
            shown.append((prediction.line, prediction.marker if prediction.line == "none" else None, prediction.key))
        every = traced.critical + traced.critical_beyond
        if prediction.name == "mean_field" and every:
            parts = [critical_names(traced.critical, every)] if traced.critical else []
            if traced.critical_beyond:
                parts.append("beyond the scales run: " + critical_names(traced.critical_beyond, every))
            text = "; ".join(parts)
            shown.append(
                (":", None, textwrap.fill("critical scale, mean field (dotted, the line's colour): " + text, 44))
            )
    return shown


def critical_names(critical: list[tuple[str, str, str]], every: list[tuple[str, str, str]], most: int = 8) -> str:
    """Critical scales (value, line label, cell), each named: by its cell where the lines (`every` critical
    scale found) have several cells and all of that cell's lines share one value, else by its line's label;
    the values alone past `most`."""
    values_of: dict[str, set[str]] = {}
    for value, _, cell in every:
        values_of.setdefault(cell, set()).add(value)
    by_cell = len(values_of) > 1
    named = list(
        dict.fromkeys(
            f"{value} ({cell})" if by_cell and len(values_of[cell]) == 1 else f"{value} ({label})" if label else value
            for value, label, cell in critical
        )
    )
    return ", ".join(named if len(named) <= most else dict.fromkeys(value for value, _, _ in critical))


def shade_regimes(ax: plt.Axes) -> None:
    """Exploding, stable and vanishing bands behind the lines, each in view however the rates lie."""
    low, high = ax.get_ylim()
    low, high = min(low, -3 * STABLE_TOLERANCE), max(high, 3 * STABLE_TOLERANCE)
    xlim = ax.get_xlim()
    ax.axhspan(STABLE_TOLERANCE, high, color="#D55E00", alpha=0.08, lw=0)
    ax.axhspan(low, -STABLE_TOLERANCE, color="#0072B2", alpha=0.08, lw=0)
    ax.axhspan(-STABLE_TOLERANCE, STABLE_TOLERANCE, color="0.6", alpha=0.3, lw=0)
    ax.set_ylim(low, high)
    ax.axhline(0, color="0.2", lw=0.9)
    ax.set_xlim(xlim)
    ax.set_ylabel("rate (nats per step back;\ne^rate = gain per step)")
    ax.grid(alpha=0.3)


def phase_keys(measured: str, several: bool, shown: list[tuple[str, str | None, str]], traced: Traced) -> list:
    """The legend after the lines' own: measured (where there are several lines), the predictions, the
    bands, and the hollow mark where some scale has no finite rate."""
    keys = [matplotlib.lines.Line2D([], [], color="0.3", marker="o", ms=3.5, label=measured)] if several else []
    keys += [
        matplotlib.lines.Line2D([], [], color="0.3", ls=ls, marker=marker, label=text) for ls, marker, text in shown
    ]
    keys += [
        matplotlib.patches.Patch(color="#D55E00", alpha=0.15, label=f"exploding (rate > {STABLE_TOLERANCE:g})"),
        matplotlib.patches.Patch(color="0.6", alpha=0.4, label=f"stable (|rate| ≤ {STABLE_TOLERANCE:g})"),
        matplotlib.patches.Patch(color="#0072B2", alpha=0.15, label=f"vanishing (rate < −{STABLE_TOLERANCE:g})"),
    ]
    if traced.missing:
        keys.append(
            matplotlib.lines.Line2D(
                [], [], ls="none", marker="o", ms=7, mfc="none", mec="0.3", label="no finite rate (on the x axis)"
            )
        )
    if traced.flagged:
        keys.append(
            matplotlib.lines.Line2D(
                [], [], ls="none", marker="s", ms=9, mfc="none", mec="0.15", label="a run with numerical flags"
            )
        )
    return keys


def gap_axes(gaps: plt.Axes, traced: Traced) -> None:
    """The lower panel's zero line, ±0.02 band, label and legend of the marks drawn."""
    gaps.axhline(0, color="0.2", lw=0.9)
    gaps.axhspan(-0.02, 0.02, color="0.6", alpha=0.2, lw=0)
    gaps.set_ylabel("measured − predicted\n(nats per step)")
    gaps.grid(alpha=0.3)
    marks = [
        matplotlib.lines.Line2D(
            [],
            [],
            color="0.3",
            ls="none",
            marker=p.marker,
            mfc="none" if p.marker in "os" else None,
            label=f"− {p.label}",
        )
        for p in THEORY
        if p.name in traced.gaps
    ]
    marks.append(matplotlib.patches.Patch(color="0.6", alpha=0.3, label="±0.02"))
    gaps.legend(handles=marks, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def recorders_named(frame: pd.DataFrame) -> str:
    return "/".join(sorted(frame.recorder.dropna().unique())) if "recorder" in frame else "?"
