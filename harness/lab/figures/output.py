"""What a figure becomes: a page drawn (a matplotlib figure, where it goes, its caption), then a PNG
(and an SVG when asked for) written beside the caption that says what it shows."""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt

from harness.core.runfolder import write_atomic


class Page(NamedTuple):
    """A figure drawn and not yet written: path without suffix, and the caption written from what was drawn."""

    figure: plt.Figure
    path: Path
    caption: str


class Drawn(NamedTuple):
    """A figure written: its PNG (an SVG beside it when asked for) and the caption that says what it shows."""

    path: Path
    caption: str


# make_figures(vector=True) asks every figure for an SVG copy too (a third of the drawing time).
VECTOR: contextvars.ContextVar[bool] = contextvars.ContextVar("vector", default=False)


DPI = 130  # the PNGs' resolution


def save(fig: plt.Figure, path: Path, caption: str) -> Drawn:
    """PNG (and SVG, see VECTOR). Data artists stay inside their axes, so the layout need not measure
    each of them (with hundreds of runs that measuring was most of the time), and it is computed once,
    here, at the PNG's resolution: savefig with a layout engine set would draw the whole figure once
    with rendering off to lay it out, then again to render it (the same pixels: tested)."""
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections]:
            artist.set_in_layout(False)
    fig.set_dpi(DPI)
    if fig.axes and fig.get_layout_engine() is not None:  # as Figure.draw: no axes, nothing to lay out
        fig.get_layout_engine().execute(fig)
        with plt.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)  # none at all (the axes keep their positions), whatever the rcParams
    write_atomic(path.with_suffix(".png"), lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    if VECTOR.get():
        write_atomic(path.with_suffix(".svg"), lambda tmp: fig.savefig(tmp, format="svg"))
    plt.close(fig)
    return Drawn(path.with_suffix(".png"), caption)


def page_path(folder: Path, name: str, page: int, count: int) -> Path:
    """name, or name_<page> (from 1) when the figure takes several pages."""
    return folder / (name if count == 1 else f"{name}_{page + 1}")
