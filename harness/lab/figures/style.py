"""What every figure shares: the axes a sweep may facet by, colours, line looks, labels and sizes."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from harness.core.networks import CELL_TYPES, cell_style

# Axes a sweep may vary, besides cell (the columns) and the colour axis; seed is never a facet.
FACETS = [
    "activation",
    "init",
    "remedy",
    "num_layers",
    "hidden_size",
    "input_size",
    "batch_size",
    "cell.forget_bias",
    "task",
    "recorder",
    "dtype",
    "device",
    "name",
]
ROWS_PER_PAGE = 6
TICK_ROOM = 2.0  # font sizes along an axis each tick label is given (layout.index_ticks): a line and a gap
MAX_LAYER_PANELS = 12
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
SEQUENTIAL, DIVERGING = "viridis", "RdBu_r"
NORM_LABEL = r"$\log_{10}\,\|\partial L/\partial h_{T-k}\|$"
LAG_LABEL = "lag k = T − t (steps back from the loss)"
# One colour and one place per cell in every figure: panels, lines and legends follow the order each
# built-in cell declares (harness.core.networks); user cells come after, coloured by their name.
CELL_ORDER = tuple(cell.name for cell in sorted(CELL_TYPES.values(), key=lambda cell: cell.order))
CELL_COLOURS = {name: CELL_TYPES[name].colour for name in CELL_ORDER}
USER_CELL_COLOURS = ["#882255", "#117733", "#999933", "#332288", "#AA4499", "#44AA99"]
LINE_STYLES = ["-", "--", ":", "-."]
# No x-like marker: "x" is the Lyapunov exponent's (phase) and "X" a run's last finite value (profiles).
MARKERS = ["o", "s", "^", "v", "D", "<", ">", "p", "*", "h", "d", "P"]
TITLE_POINTS = 9
RANGE_PERCENTILE = 90  # of |log10 norm|: the heatmaps' colour range; the top tenth takes the end colours


def cell_colour(cell: str) -> str:
    """The cell's colour, the same in every figure; a user cell's follows from its name."""
    return CELL_COLOURS.get(cell) or USER_CELL_COLOURS[zlib.crc32(str(cell).encode()) % len(USER_CELL_COLOURS)]


def scaled(cell: str) -> str:
    """What `scale` multiplies in this cell (W_hh unless the cell says otherwise; a user cell's
    recurrent_weights count as its W_hh)."""
    style = cell_style(cell)
    return "W_hh" if style is None else style[2]


def cell_rank(cell: Any) -> tuple[int, str]:
    """rnn, lstm, gru, the other built-in cells, then user cells by name."""
    return (CELL_ORDER.index(cell), "") if cell in CELL_ORDER else (len(CELL_ORDER), str(cell))


def ordered_cells(cells: Iterable) -> list:
    return sorted(dict.fromkeys(cells), key=cell_rank)


def look_of(n: int, colour: str) -> dict:
    """The n-th line style with a colour: markers first, then dashes (48 distinct looks)."""
    return {
        "color": colour,
        "marker": MARKERS[n % len(MARKERS)],
        "ls": LINE_STYLES[n // len(MARKERS) % len(LINE_STYLES)],
        "ms": 3.5,
    }
