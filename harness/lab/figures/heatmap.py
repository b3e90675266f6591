"""The heatmaps, on a diverging map centred on gain 1: `heatmap`, scale x lag -> log10 gradient norm
(drawn when scale varied); `rate_map`, scale x seq_len -> fitted rate (drawn when both take 3 values or
more: a large grid's view); and `layers`, layer x lag -> log10 norm of each layer's h, a panel per
multi-layer run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.lab.figures.layout import (
    colourbar,
    count_range,
    edges,
    facet_label,
    index_ticks,
    lag_axis,
    outer_labels,
    panel_grid,
    panels,
    robust_centred_norm,
    seed_list,
    seeds_of,
    swept,
    title,
    top_h,
    varied,
)
from harness.lab.figures.output import Page, page_path
from harness.lab.figures.style import DIVERGING, MAX_LAYER_PANELS, NORM_LABEL, RANGE_PERCENTILE


def draw_heatmap(profile: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """A panel per cell and other swept axis, a row per swept scale; seeds pooled by their median."""
    top = top_h(profile)
    if "scale" not in varied(top, ["scale"]):
        return
    row_axes = [a for a in swept(top, ["scale"]) if a not in ("cell", "scale")]
    # Seeds (and any repeat) of one (facet, scale, lag) are pooled by their median.
    table = top.groupby(["cell", *row_axes, "scale", "lag"], dropna=False).log10_norm.median().reset_index()
    norm, clipped = robust_centred_norm(table.log10_norm)
    columns, all_pages = panels(table, row_axes)
    for number, page in enumerate(all_pages):
        # Rows are indices, so panels share their y axis only where they ran the same scales.
        same_scales = len({tuple(sorted(rows.scale.unique())) for _, rows in page}) == 1
        fig, axes, grid_axes = panel_grid(len(page), columns, sharey=same_scales)
        for ax, (text, rows) in zip(axes, page):
            panel = rows.pivot(index="scale", columns="lag", values="log10_norm")
            value_rows(ax, edges(panel.columns.to_numpy(float)), panel, norm)
            index_ticks(ax, [f"{scale:g}" for scale in panel.index])
            title(ax, text)
            lag_axis(ax)
        outer_labels(axes, columns, "scale (a row per value swept)")
        colourbar(
            fig, grid_axes, norm, DIVERGING, NORM_LABEL + "  (0: gain 1)", extend="both" if clipped else "neither"
        )
        caption = (
            f"log10 gradient norm over scale and lag, a row per swept scale (rows of one height, however far "
            f"apart the values), white at 0 (gain 1), red growth, blue decay; the colour "
            f"range is ±{norm.halfrange:.3g}, the {RANGE_PERCENTILE}th percentile of |log10 norm|"
            + (f", and the {clipped} cells beyond it take the end colours (the colourbar's arrows)" if clipped else "")
            + "; grey: no finite value"
            + seeds_pooled(top, ["cell", *row_axes, "scale"], "row")
            + "."
        )
        yield Page(fig, page_path(folder, "heatmap", number, len(all_pages)), caption)


def value_rows(ax: Any, x_edges: np.ndarray, panel: pd.DataFrame, norm: Any) -> None:
    """panel's values on the diverging map, a row of one height per value of its index: swept values are
    a list someone chose (0.9, 1, 1.1, 4), not a continuum, and edges halfway between uneven values would
    invent settings never run. Grey where no value is finite, never white (white is gain 1)."""
    ax.pcolormesh(
        x_edges,
        np.arange(len(panel.index) + 1) - 0.5,
        np.ma.masked_invalid(panel.to_numpy(float)),
        cmap=DIVERGING,
        norm=norm,
        shading="flat",
        rasterized=True,
    )  # SVG: one image, not a path per cell
    ax.set_facecolor("0.75")


def seeds_pooled(frame: pd.DataFrame, keys: list[str], each: str) -> str:
    """The caption's words for the seeds each `each` (row, cell) of a map pools by their median, if any;
    keys: the columns that make a configuration."""
    seeds = seeds_of(frame)
    if not seeds:
        return ""
    n = count_range(frame.groupby(keys, dropna=False).run_id.nunique().tolist())
    return f"; seeds pooled ({seed_list(seeds)}): each {each} the median over its configuration's {n} seeds"


def draw_layers(profile: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """A panel per multi-layer run (MAX_LAYER_PANELS at most, spread over the sweep), at its first step."""
    deep = profile[(profile.num_layers > 1) & (profile.state == "h")]
    if deep.empty:
        return
    deep = deep[deep.step == deep.groupby("run_id").step.transform("min")]
    runs = list(deep.run_id.unique())
    shown = [runs[i] for i in np.linspace(0, len(runs) - 1, min(len(runs), MAX_LAYER_PANELS)).round().astype(int)]
    names = [*swept(deep), *(["seed"] if seeds_of(deep) else [])]  # a panel's title names its run
    fig, axes, grid_axes = panel_grid(len(shown), min(len(shown), 4), height=2.6)
    norm, clipped = robust_centred_norm(deep.log10_norm)
    for ax, run in zip(axes, shown):
        rows = deep[deep.run_id == run]
        panel = rows.pivot(index="layer", columns="lag", values="log10_norm")
        ax.pcolormesh(
            edges(panel.columns.to_numpy(float)),
            edges(panel.index.to_numpy(float)),
            np.ma.masked_invalid(panel.to_numpy(float)),
            cmap=DIVERGING,
            norm=norm,
            shading="flat",
        )
        ax.set_yticks(panel.index)
        ax.set_facecolor("0.75")
        title(ax, facet_label(tuple(rows.iloc[0][names]), names) or f"cell={rows.cell.iloc[0]}", size=8)
        lag_axis(ax, fontsize=8)
        ax.set_ylabel("layer (0 = bottom)")
    colourbar(fig, grid_axes, norm, DIVERGING, NORM_LABEL, extend="both" if clipped else "neither")
    if len(shown) < len(runs):
        fig.suptitle(f"{len(shown)} of {len(runs)} multi-layer runs, spread over the sweep", fontsize=9)
    caption = (
        f"log10 gradient norm of each layer's h over lag, a panel per run ({len(shown)} of {len(runs)} "
        f"multi-layer runs{', spread over the sweep' if len(shown) < len(runs) else ''}); white at gain 1, "
        f"colour range ±{norm.halfrange:.3g} ({RANGE_PERCENTILE}th percentile of |log10 norm|"
        + (f"; {clipped} values beyond it in the end colours" if clipped else "")
        + "); grey: no finite value."
    )
    yield Page(fig, folder / "layers", caption)


MAP_VALUES = 3  # the rate map is drawn where scale and seq_len each take this many values or more


def draw_rate_map(fits: pd.DataFrame, folder: Path) -> Iterator[Page]:
    """The fitted rate over scale x seq_len, a panel per cell and other swept axis, each configuration's
    seeds pooled by their median: the view of a large grid that a line per run cannot give."""
    if not all(a in fits and fits[a].nunique() >= MAP_VALUES for a in ("scale", "seq_len")):
        return
    row_axes = [a for a in swept(fits, ["scale", "seq_len"]) if a not in ("cell", "scale", "seq_len")]
    keys = ["cell", *row_axes, "seq_len", "scale"]
    table = fits.groupby(keys, dropna=False).rate.median().reset_index()
    norm, clipped = robust_centred_norm(table.rate)
    columns, all_pages = panels(table, row_axes)
    for number, page in enumerate(all_pages):
        fig, axes, grid_axes = panel_grid(len(page), columns)
        for ax, (text, rows) in zip(axes, page):
            panel = rows.pivot(index="seq_len", columns="scale", values="rate")
            value_rows(ax, np.arange(len(panel.columns) + 1) - 0.5, panel, norm)  # a column per swept scale too
            index_ticks(ax, [f"{scale:g}" for scale in panel.columns], axis="x")
            index_ticks(ax, [f"{length:g}" for length in panel.index])
            ax.set_xlabel("scale (a column per value swept)")
            title(ax, text)
        outer_labels(axes, columns, "seq_len (a row per value swept)")
        colourbar(
            fig, grid_axes, norm, DIVERGING, "rate (nats per step; 0: gain 1)", extend="both" if clipped else "neither"
        )
        caption = (
            "fitted rate (nats per step: the slope of ln ||dL/dh_{T-k}|| over the fit window) over scale and "
            "seq_len, a column per swept scale and a row per swept length (cells of one size however far apart "
            f"the values), white at 0 (gain 1), red growth, blue decay; the colour range is ±{norm.halfrange:.3g}, "
            f"the {RANGE_PERCENTILE}th percentile of |rate|"
            + (f", and the {clipped} cells beyond it take the end colours" if clipped else "")
            + "; grey: no finite rate"
            + seeds_pooled(fits, keys, "cell")
            + "."
        )
        yield Page(fig, page_path(folder, "rate_map", number, len(all_pages)), caption)
