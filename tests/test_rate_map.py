"""The rate map (harness.lab.figures.heatmap.draw_rate_map): the fitted rate over scale x seq_len, the
view of a large grid. Each cell of the map is its configuration's median over seeds, checked against
medians computed here; 10^4 configurations stay readable; fewer than three values of an axis draw none."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pandas as pd

from harness.lab import figures as plots
from tests.test_figures import assert_readable, figures  # noqa: F401  figures: the fixture
from tests.test_plots import BASE


def rate(cell: str, scale: float, length: int, seed: int) -> float:
    return np.log(scale) - 1 / length + 0.1 * seed**2 + (0.5 if cell == "gru" else 0.0)


def fits(scales, lengths, seeds: int, cells=("rnn",)) -> pd.DataFrame:
    """A fit per run, its rate log(scale) - 1 / seq_len plus an offset per seed and per cell."""
    rows = [
        {
            **BASE,
            "run_id": f"run{i}",
            "cell": cell,
            "scale": float(scale),
            "seq_len": int(length),
            "seed": seed,
            "step": 0,
            "layer": 0,
            "state": "h",
            "rate": rate(cell, scale, length, seed),
        }
        for i, (cell, scale, length, seed) in enumerate(itertools.product(cells, scales, lengths, range(seeds)))
    ]
    return pd.DataFrame(rows)


def test_each_cell_of_the_map_is_its_configurations_median_over_seeds(tmp_path, figures):  # noqa: F811
    scales, lengths = (0.5, 1.0, 2.0, 4.0), (10, 20, 300, 1000)
    table = fits(scales, lengths, seeds=3, cells=("rnn", "gru"))
    plots.plot_rate_map(table, tmp_path)
    fig, caption = figures["rate_map"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["cell=rnn", "cell=gru"]
    for ax, cell in zip(panels, ("rnn", "gru")):
        mesh = ax.collections[0].get_array().reshape(len(lengths), len(scales))  # rows: seq_len, upwards
        for (row, length), (column, scale) in itertools.product(enumerate(lengths), enumerate(scales)):
            seeds = [rate(cell, scale, length, seed) for seed in range(3)]
            assert abs(mesh[row, column] - statistics.median(seeds)) < 1e-12
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1", "2", "4"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["10", "20", "300", "1000"]
    assert "seeds pooled (seeds 0–2): each cell the median over its configuration's 3 seeds" in caption
    assert "over scale and seq_len" in caption


def test_ten_thousand_configurations_are_a_readable_map(tmp_path, figures):  # noqa: F811
    plots.plot_rate_map(fits(np.round(np.arange(1, 101) * 0.03, 2), np.arange(10, 1010, 10), seeds=1), tmp_path)
    assert_readable("rate_map")  # ticks thinned: no label overlaps another or leaves the figure
    fig, caption = figures["rate_map"]
    ax = fig.axes[0]
    assert 3 <= len(ax.get_xticklabels()) < 100 and 3 <= len(ax.get_yticklabels()) < 100
    assert ax.collections[0].get_array().size == 10_000 and "seeds pooled" not in caption


def test_no_map_where_an_axis_takes_fewer_than_three_values(tmp_path, figures):  # noqa: F811
    plots.plot_rate_map(fits((0.5, 1.0, 2.0), (10, 20), seeds=2), tmp_path)
    plots.plot_rate_map(fits((0.5, 1.0), (10, 20, 40), seeds=2), tmp_path)
    assert "rate_map" not in figures
