"""The figures of record.units=true, from units.parquet and gates.parquet: `units`, per run, every state
entry's gradient against the lag, entries sorted by their own decay rate; and `gates`, per run and
layer, each gate's pre-activation gradient and its step's share of dL/dW_hh beside the layer's profile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from harness.lab.figures.layout import grid, lag_axis, run_names, run_title, title
from harness.lab.figures.output import Page
from harness.lab.figures.style import SEQUENTIAL

MAX_DETAIL_PANELS = 12  # runs drawn in the units and gates figures (the titles say how many of how many)
# One colour per gate name across cells and figures, none of them black (the profile's line).
GATE_COLOURS = {
    "h": "#0072B2",
    "i": "#E69F00",
    "f": "#D55E00",
    "g": "#009E73",
    "o": "#CC79A7",
    "r": "#56B4E9",
    "z": "#999933",
    "n": "#8C564B",
    "u": "#332288",
}


def unit_rates(units: pd.DataFrame) -> pd.Series:
    """Each unit's decay rate, log10 per step back: the slope over the middle half of its lags."""
    middle = units[(units.lag >= units.lag.max() * 0.25) & (units.lag <= units.lag.max() * 0.75)]
    middle = middle[np.isfinite(middle.log10_norm)]

    def slope(rows: pd.DataFrame) -> float:
        return float(np.polyfit(rows.lag, rows.log10_norm, 1)[0]) if rows.lag.nunique() > 1 else np.nan

    return middle.groupby(["layer", "state", "unit"]).apply(slope)


def draw_units(units: pd.DataFrame, summary: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """record.units=true: per run, log10 |dL/dS_t,j| for every state entry j (rows, sorted by their own
    decay rate, slowest on top) against the lag; one robust colour range for all panels."""
    runs = [r for r in summary.run_id if r in set(units.run_id)]
    shown = runs[:MAX_DETAIL_PANELS]
    finite = units.log10_norm[np.isfinite(units.log10_norm) & units.run_id.isin(shown)]
    if finite.empty:
        return
    low, high = np.percentile(finite, [2, 98])
    norm = matplotlib.colors.Normalize(low, high)
    columns = min(3, len(shown))
    fig, axes = grid(-(-len(shown) // columns), columns)
    labels = run_names(summary[summary.run_id.isin(shown)])
    for ax, run_id in zip(axes.flat, shown):
        rows = units[units.run_id == run_id]
        order = unit_rates(rows).sort_values(ascending=False, na_position="last").index
        table = rows.pivot_table(index=["layer", "state", "unit"], columns="lag", values="log10_norm").loc[order]
        ax.imshow(
            table.to_numpy(float),
            aspect="auto",
            cmap=SEQUENTIAL,
            norm=norm,
            interpolation="nearest",
            extent=(table.columns.min() - 0.5, table.columns.max() + 0.5, len(table) - 0.5, -0.5),
        )
        run = summary[summary.run_id == run_id].iloc[0]
        title(ax, run_title(run, labels))
        lag_axis(ax)
        ax.set_ylabel("state entry, by its decay rate\n(slowest on top)")
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    fig.colorbar(
        matplotlib.cm.ScalarMappable(norm, SEQUENTIAL),
        ax=axes,
        extend="both",
        shrink=0.9,
        label=r"$\log_{10}|\partial L/\partial S_{t,j}|$ (2-98% range; beyond: end colours)",
    )
    fig.suptitle(f"per-unit gradients at initialisation, {len(shown)} of {len(runs)} runs", fontsize=10)
    caption = (
        f"Per-unit gradients at initialisation: batch-median log10 |dL/dS_t,j| for every state entry j "
        f"(rows, sorted by their own decay rate, slowest on top) against lag, {len(shown)} of {len(runs)} runs; "
        f"one colour range for all panels, the 2–98% range ({low:.3g} to {high:.3g}), beyond it the end colours."
    )
    yield Page(fig, folder / "units", caption)


def draw_gates(gates: pd.DataFrame, profile: pd.DataFrame, summary: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """record.units=true: a panel per run and layer, each gate block's pre-activation gradient (solid)
    and its step's share of dL/dW_hh (dashed) against the lag, beside that layer's ||dL/dh|| (black)."""
    if "layer" not in gates:  # tables written before gates had layers: one layer
        gates = gates.assign(layer=0)
    panels_all = [
        (run, layer)
        for run in summary.run_id
        if run in set(gates.run_id)
        for layer in sorted(gates[gates.run_id == run].layer.unique())
    ]
    runs = list(dict.fromkeys(run for run, _ in panels_all))
    shown = panels_all[:MAX_DETAIL_PANELS]
    if not shown:
        return
    columns = min(3, len(shown))
    fig, axes = grid(-(-len(shown) // columns), columns)
    labels = run_names(summary[summary.run_id.isin([run for run, _ in shown])])
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
        title(ax, run_title(run, labels) + (f", layer {layer}" if deep else ""))
        lag_axis(ax)
        ax.set_ylabel("log10 norm")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    handles = gate_keys(drawn)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    fig.suptitle(
        f"per-gate gradients and weight-gradient contributions (batch medians; C_t summed over the "
        f"batch), {len(shown)} of {len(panels_all)} panels ({len(runs)} runs)",
        fontsize=10,
    )
    caption = (
        f"Per-gate gradients at initialisation, a panel per run and layer ({len(shown)} of {len(panels_all)}, "
        f"{len(runs)} runs): for each gate ({', '.join(g for g in GATE_COLOURS if g in drawn)}) the batch-median "
        f"norm of the gradient at its recurrent pre-activation (solid) and ||C_t||, step t's part of dL/dW_hh "
        f"summed over the batch (dashed), beside the layer's profile ||dL/dh_t|| (black)."
    )
    yield Page(fig, folder / "gates", caption)


def gate_keys(drawn: set[str]) -> list[matplotlib.lines.Line2D]:
    """The gates figure's legend entries: a colour per gate drawn, then the line styles' meanings."""
    handles = [
        matplotlib.lines.Line2D([], [], color=c, lw=1.2, label=f"gate {g}")
        for g, c in GATE_COLOURS.items()
        if g in drawn
    ]
    handles += [
        matplotlib.lines.Line2D(
            [], [], color="0.3", lw=1.2, label=r"$\|\partial L/\partial\, hw_t\|$ (pre-activation)"
        ),
        matplotlib.lines.Line2D(
            [], [], color="0.3", lw=1.0, ls="--", label=r"$\|C_t\|$: step t's part of $\partial L/\partial W_{hh}$"
        ),
        matplotlib.lines.Line2D(
            [], [], color="k", lw=1.0, label=r"$\|\partial L/\partial h_t\|$ (the layer's profile)"
        ),
    ]
    return handles
