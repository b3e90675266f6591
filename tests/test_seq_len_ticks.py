"""The seq_len figure's ticks fit however many lengths were swept: 200 lengths are not 200 labels drawn
over each other (the figure once put a label at every length)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.lab import figures as plots
from tests.test_figures import assert_readable, figures  # noqa: F401  figures: the fixture
from tests.test_plots import BASE


def fits(lengths: np.ndarray, seeds: int = 2) -> pd.DataFrame:
    """Each run's fit, as the seq_len figure reads it: one rnn at every length x seed, its end-to-end
    log10 gain falling with the length, plus a little noise of each run's own."""
    seq_len = np.repeat(lengths, seeds)
    seed = np.tile(np.arange(seeds), len(lengths))
    noise = np.random.default_rng(0).normal(0, 0.05, len(seq_len))
    return pd.DataFrame(
        {
            **{key: value for key, value in BASE.items() if key not in ("seq_len", "seed")},
            "run_id": [f"run{i}" for i in range(len(seq_len))],
            "seq_len": seq_len,
            "seed": seed,
            "step": 0,
            "layer": 0,
            "state": "h",
            "log10_gain": -0.01 * seq_len + noise,
        }
    )


def test_two_hundred_lengths_are_thinned_to_labels_that_do_not_overlap(tmp_path, figures):  # noqa: F811
    lengths = np.arange(10, 2010, 10)
    plots.plot_seq_len(fits(lengths), tmp_path)
    assert_readable("seq_len")  # no text overlaps another or leaves the figure, tick labels included
    ax = figures["seq_len"][0].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 3 <= len(labels) < len(lengths)
    assert labels[0] == "10" and labels[-1] == "2000"  # the sweep's range shows
    assert set(ax.get_xticks()) <= set(lengths)  # ticks only where a length was run
    assert "ticks at as many lengths swept as fit" in figures["seq_len"][1]


def test_a_few_lengths_keep_a_tick_each(tmp_path, figures):  # noqa: F811
    plots.plot_seq_len(fits(np.array([10, 20, 40, 80, 160])), tmp_path)
    fig, caption = figures["seq_len"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["10", "20", "40", "80", "160"]
    assert "ticks at the lengths swept" in caption
