"""The figures of trained runs: `losses`, eval loss against training step with the task's baseline;
`training_profiles`, the gradient profile at initialisation and at each recorded training step, a
panel per trained run; and `learnability`, final eval loss / baseline against the rate at
initialisation (2 or more trained runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.lab.figures.layout import (
    colourbar,
    count_range,
    facet_label,
    grid,
    interval_key,
    lag_axis,
    outer_labels,
    panel_grid,
    run_list,
    seeds_of,
    swept,
    title,
    unnamed,
    value_order,
    varied,
)
from harness.lab.figures.output import Page, page_path
from harness.lab.figures.style import (
    FACETS,
    LINE_STYLES,
    MARKERS,
    MAX_LAYER_PANELS,
    NORM_LABEL,
    OKABE_ITO,
    SEQUENTIAL,
    cell_colour,
    cell_rank,
    ordered_cells,
)
from harness.lab.fits import is_top_h
from harness.lab.summary import config_columns, t_interval


def draw_losses(losses: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """Eval loss against training step, a panel per cell (and task, seq_len), a line per remedy (or per
    value of the other varied axes), one colour per line across panels, the task's baseline dashed."""
    if losses.empty or losses.step.max() == 0:
        return
    panel_axes = ["cell", *varied(losses, ["task", "seq_len"])]
    if varied(losses, ["remedy"]):
        line_axes = ["remedy"]
    else:
        line_axes = [a for a in varied(losses, FACETS + ["scale", "seed"]) if a not in panel_axes]
    label = (lambda row: facet_label(tuple(row), line_axes)) if line_axes else (lambda row: "")
    losses = losses.assign(line=losses[line_axes].apply(label, axis=1) if line_axes else "")
    # One look per line, the same in every panel: colours in turn, then line styles (9 remedies > 8 colours).
    look = {
        name: {"color": OKABE_ITO[i % len(OKABE_ITO)], "ls": LINE_STYLES[i // len(OKABE_ITO) % len(LINE_STYLES)]}
        for i, name in enumerate(sorted(losses.line.unique()))
    }
    groups = sorted(
        ((k if isinstance(k, tuple) else (k,), g) for k, g in losses.groupby(panel_axes, sort=True, dropna=False)),
        key=lambda item: (cell_rank(item[0][0]), value_order(item[0][1:])),
    )
    fig, axes, _ = panel_grid(len(groups), min(len(groups), 3), sharey=True)
    pooled_n: list[int] = []
    for ax, (keys, group) in zip(axes, groups):
        for name, line in group.groupby("line", sort=True):
            # a line may hold several configurations (axes it pools, as the caption says): seeds pool within each
            for _, runs in line.groupby(config_columns(line), sort=True, dropna=False):
                pooled_n += draw_loss_line(ax, runs, look[name])
        ax.axhline(group.baseline.iloc[0], color="0.3", ls="--", lw=1)
        ax.set_yscale("log")
        title(ax, facet_label(keys, panel_axes))
        ax.set_xlabel("training step")
        ax.set_ylabel("eval loss (log scale)")
        ax.grid(alpha=0.3, which="both")
    handles = [matplotlib.lines.Line2D([], [], lw=1.5, label=n, **style) for n, style in look.items() if n]
    handles.append(matplotlib.lines.Line2D([], [], color="0.3", ls="--", label="baseline"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    caption = (
        f"Eval loss (log scale) against training step, a panel per {', '.join(panel_axes)}"
        + (
            f", a line style per {', '.join(line_axes)} (colour, then dash; the same in every panel)"
            if line_axes
            else ""
        )
        + f"; dashed: the task's baseline; {losses.run_id.nunique()} runs"
        + (
            f"; where a line pools the seeds of one configuration (n = {count_range(pooled_n)}), its geometric "
            "mean at each step, shaded: the 95% Student t interval of the mean of log10 eval loss"
            if pooled_n
            else ""
        )
        + unnamed(losses, [*panel_axes, *line_axes, *(["seed"] if pooled_n else [])])
        + "."
    )
    yield Page(fig, folder / "losses", caption)


def draw_loss_line(ax: plt.Axes, line: pd.DataFrame, look: dict[str, Any]) -> list[int]:
    """One line's runs: a run as it is; runs that differ only by seed (a line's runs) as their
    geometric mean with the t interval of the mean log10 loss shaded (harness.lab.summary.t_interval);
    returns the seeds pooled ([] for one run)."""
    by_step = line.pivot_table(index="step", columns="run_id", values="eval_loss", aggfunc="first")
    if by_step.shape[1] == 1:
        ax.plot(by_step.index, by_step.iloc[:, 0], lw=1.3, **look)
        return []
    log10 = np.log10(by_step.where(by_step > 0))  # a zero or negative loss has no log: left out of its step
    spreads = [t_interval(values) for values in log10.to_numpy()]
    mean, low, high = (np.array([getattr(s, name) for s in spreads]) for name in ("mean", "ci_low", "ci_high"))
    ax.plot(by_step.index, 10**mean, lw=1.3, **look)
    ax.fill_between(by_step.index, 10**low, 10**high, color=look["color"], alpha=0.2, lw=0, gid="interval")
    return [by_step.shape[1]]


def draw_training_profiles(profile: pd.DataFrame, summary: pd.DataFrame | None, folder: Path) -> Iterator[Page]:
    """The gradient profile at initialisation and at every recorded training step, a panel per run,
    coloured by step (as Arjovsky et al. 2016's figure of ||dC/dh_t|| at init and later); every trained
    run, MAX_LAYER_PANELS to a page, in cell order. summary, where given, names the runs without one."""
    top = profile[is_top_h(profile)]
    trained = top[top.groupby("run_id").step.transform("nunique") > 1]
    if trained.empty:
        return
    # A panel's title names its run: every swept axis (a remedy, not the activation and init it implies), and
    # seed, of all the runs (the caption names the untrained ones by the same axes, and the report does)
    every = top.drop_duplicates("run_id") if summary is None else summary
    names = [n for n in [*swept(every), *(["seed"] if seeds_of(every) else [])] if n in trained]
    first = trained.drop_duplicates("run_id")
    runs = list(
        first.sort_values(names, key=lambda c: c.map(cell_rank) if c.name == "cell" else c, kind="stable").run_id
    )
    untrained = ""
    if summary is not None and "final_loss" in summary:  # runs of a training sweep that have no trained profile
        others = summary[~summary.run_id.isin(runs)]
        untrained = run_list(others, [n for n in names if n in others], limit=None, status=True)
    norm = matplotlib.colors.Normalize(0, trained.step.max())
    cmap = matplotlib.colormaps[SEQUENTIAL]
    pages = [runs[i : i + MAX_LAYER_PANELS] for i in range(0, len(runs), MAX_LAYER_PANELS)]
    for number, shown in enumerate(pages):
        fig, axes, table = panel_grid(len(shown), min(len(shown), 4), height=2.8, sharey=True)
        for ax, run in zip(axes, shown):
            rows = trained[trained.run_id == run]
            for step, at in rows.groupby("step"):
                at = at.sort_values("lag")
                ax.plot(at.lag, at.log10_norm.where(np.isfinite(at.log10_norm)), color=cmap(norm(step)), lw=1.1)
            title(ax, facet_label(tuple(rows.iloc[0][names]), names) or f"cell={rows.cell.iloc[0]}", size=8)
            lag_axis(ax, fontsize=8)
            ax.grid(alpha=0.3)
        outer_labels(axes, min(len(shown), 4), NORM_LABEL)
        colourbar(fig, table, norm, cmap, "training step")
        caption = (
            f"The gradient profile (batch median) at initialisation (step 0) and at each recorded training "
            f"step, coloured by step, a panel per trained run ({len(shown)} here, {len(runs)} in all"
            + (f", page {number + 1} of {len(pages)}" if len(pages) > 1 else "")
            + ")"
            + ("; without a trained profile: " + untrained if untrained else "")
            + "."
        )
        yield Page(fig, page_path(folder, "training_profiles", number, len(pages)), caption)


def draw_learnability(summary: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """Final eval loss (relative to the baseline) against the rate measured at initialisation: a colour
    per cell, a marker per remedy (a legend, never labels that could overprint each other)."""
    if "rate_init" not in summary or "final_loss" not in summary or summary.final_loss.notna().sum() < 2:
        return
    trained = summary[summary.final_loss.notna()]
    drawable = (
        np.isfinite(trained.final_loss / trained.baseline) & np.isfinite(trained.rate_init) & (trained.final_loss > 0)
    )
    data, lost = trained[drawable], trained[~drawable]
    by_remedy = "remedy" in data and data.remedy.nunique() > 1
    remedies = sorted(data.remedy.unique()) if by_remedy else []
    marker = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(remedies)}
    fig, (axes,) = grid(1, 1, width=6.0, height=4.4)
    ax = axes[0]
    cells = ordered_cells(data.cell)
    for cell in cells:
        for remedy, group in (
            data[data.cell == cell].groupby("remedy") if by_remedy else [(None, data[data.cell == cell])]
        ):
            ax.scatter(
                group.rate_init,
                group.final_loss / group.baseline,
                color=cell_colour(cell),
                s=34,
                zorder=3,
                marker=marker.get(remedy, "o"),
                edgecolors="white",
                linewidths=0.5,
            )
    pooled_n = seed_intervals(ax, data, marker)
    ax.axhline(1, color="0.3", ls="--", lw=1)
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("rate at initialisation (nats per step back)")
    ax.set_ylabel("final eval loss / baseline (log scale)")
    ax.grid(alpha=0.3, which="both")
    handles = learnability_keys(cells, remedies, marker, lost, by_remedy)
    if pooled_n:
        handles.insert(-1 - bool(len(lost)), interval_key())
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    caption = (
        f"Final eval loss relative to the task's baseline (dashed) against the rate at initialisation, "
        f"{len(data)} trained runs: colour by cell"
        + (", marker by remedy" if by_remedy else "")
        + (
            f"; where seeds of one configuration are pooled (n = {count_range(pooled_n)}), bars at the mean rate "
            "and the geometric mean loss (a hollow mark"
            + (" of the remedy's marker" if by_remedy else "")
            + "): their 95% Student t intervals (of the rate and of log10 loss / baseline)"
            if pooled_n
            else ""
        )
        + (
            "; not drawn, no finite loss or rate: "
            + run_list(lost, ["cell", "remedy"] if by_remedy else ["cell"], limit=None, status=True)
            if len(lost)
            else ""
        )
        + unnamed(data, ["cell", *(["remedy"] if by_remedy else [])])
        + "."
    )
    yield Page(fig, folder / "learnability", caption)


def seed_intervals(ax: plt.Axes, data: pd.DataFrame, marker: dict[str, str]) -> list[int]:
    """For each configuration drawn with two or more seeds, error bars in both directions about (mean
    rate, geometric mean loss / baseline), in the cell's colour, centred on a hollow mark of its
    remedy's marker (`marker`; a circle where remedies are not told apart), so that two crosses that
    meet can still be told; returns the seeds pooled per bar."""
    counts = []
    for _, runs in data.groupby(config_columns(data), sort=True, dropna=False):
        if len(runs) < 2:
            continue
        rate, loss = t_interval(runs.rate_init), t_interval(np.log10(runs.final_loss / runs.baseline))
        ax.errorbar(
            rate.mean,
            10**loss.mean,
            xerr=[[rate.mean - rate.ci_low], [rate.ci_high - rate.mean]],
            yerr=[[10**loss.mean - 10**loss.ci_low], [10**loss.ci_high - 10**loss.mean]],
            color=cell_colour(runs.cell.iloc[0]),
            lw=1.0,
            capsize=3,
            marker=marker.get(runs.remedy.iloc[0], "o") if "remedy" in runs else "o",
            ms=9,
            mfc="white",
            zorder=2.5,
            gid="interval",
        )
        counts.append(len(runs))
    return counts


def learnability_keys(
    cells: list, remedies: list, marker: dict[str, str], lost: pd.DataFrame, by_remedy: bool
) -> list[matplotlib.lines.Line2D]:
    """The learnability legend's entries: a colour per cell, a marker per remedy, baseline, runs not drawn."""
    handles = [
        matplotlib.lines.Line2D([], [], ls="none", marker="o", ms=7, color=cell_colour(c), label=f"cell={c}")
        for c in cells
    ]
    handles += [
        matplotlib.lines.Line2D([], [], ls="none", marker=marker[r], ms=7, color="0.35", label=f"remedy={r}")
        for r in remedies
    ]
    handles.append(matplotlib.lines.Line2D([], [], color="0.3", ls="--", label="baseline"))
    if len(lost):  # named where the figure travels without its caption
        handles.append(
            matplotlib.lines.Line2D(
                [],
                [],
                ls="none",
                label="not drawn (no finite loss or rate):\n"
                + run_list(lost, ["cell", "remedy"] if by_remedy else ["cell"], 3),
            )
        )
    return handles
