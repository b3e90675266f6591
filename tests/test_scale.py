"""10^4 configurations: the sweeper composes a grid's jobs as Hydra does without a Hydra composition per
job, the memory estimate is made once per configuration that can differ in it, and the figures of a
10^4-run table stay readable (benchmarks/scale.py measures the costs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.cli.sweep import expand
from harness.cli.sweep.jobs import ESTIMATE_IGNORES, Composer
from harness.core.memory import estimate
from harness.core.spec import RunSpec
from harness.lab import figures as plots
from harness.lab import pool, results
from harness.lab.figures import heatmap, profiles
from harness.lab.fits import FITS
from harness.lab.tables import QUANTILES
from tests.test_figures import BOXES, assert_readable, figures  # noqa: F401  figures: the fixture
from tests.test_plot_without_torch import damaged, sweep  # noqa: F401  the fixtures
from tests.test_plots import BASE
from tests.test_sweep import loader_and_master


def synthetic(scales: np.ndarray, seeds: int, seq_len: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(profile, fits) of len(scales) x seeds runs of one rnn, made directly (no model, no per-run
    frame): log10 norm = lag x (log10 scale - 0.05) plus a little noise of each run's own."""
    scale = np.repeat(scales, seeds)
    seed = np.tile(np.arange(seeds), len(scales))
    runs = len(scale)
    run_id = np.array([f"run{i}" for i in range(runs)])
    lag = np.tile(np.arange(seq_len, -1, -1), runs)
    rate = np.repeat(np.log10(scale) - 0.05, seq_len + 1)
    noise = np.random.default_rng(0).normal(0, 0.05, (len(QUANTILES), runs * (seq_len + 1)))
    settings = {**BASE, "seq_len": seq_len}
    profile = pd.DataFrame(
        {
            "run_id": np.repeat(run_id, seq_len + 1),
            **{key: value for key, value in settings.items() if key not in ("scale", "seed")},
            "scale": np.repeat(scale, seq_len + 1),
            "seed": np.repeat(seed, seq_len + 1),
            "layer": 0,
            "state": "h",
            "t": seq_len - lag,
            "lag": lag,
            "step": 0,
            **{name: rate * lag + (q - 0.5) + noise[i] for i, (name, q) in enumerate(QUANTILES.items())},
        }
    )
    per_step = np.log10(scale) - 0.05
    fits = pd.DataFrame(
        {
            "run_id": run_id,
            **{key: value for key, value in settings.items() if key not in ("scale", "seed")},
            "scale": scale,
            "seed": seed,
            "step": 0,
            "layer": 0,
            "state": "h",
            "rate": per_step * np.log(10),
            "gain_per_step": 10**per_step,
            "half_life": np.where(per_step < 0, np.log10(2) / -np.minimum(per_step, -1e-9), np.nan),
            "regime": np.where(per_step < 0, "vanishing", "exploding"),
            "decay_law": np.where(np.arange(runs) % 3 == 0, "power", "exponential"),
            "power_exponent": np.where(np.arange(runs) % 3 == 0, -1.0, np.nan),
            "log10_gain": per_step * seq_len,
        }
    )
    return profile, fits


@pytest.fixture(scope="module")
def grid_10k() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic(np.round(np.arange(1, 101) * 0.03, 2), seeds=100)


def test_figures_of_ten_thousand_runs_pool_seeds_and_no_text_overlaps(tmp_path, figures, grid_10k):  # noqa: F811
    profile, fits = grid_10k
    folder = tmp_path / "figures"
    for figure, tables in (
        (plots.plot_profiles, (profile, set())),
        (plots.plot_decay_laws, (profile, fits)),
        (plots.plot_heatmap, (profile,)),
    ):
        figure(*tables, folder)
    for name in ("profiles", "profiles_loglog", "heatmap"):
        assert_readable(name)
    fig, caption = figures["profiles"]
    assert "Seeds pooled (seeds 0–99)" in caption and "median over its configuration's 100 seeds" in caption
    lines = [c for ax in fig.axes for c in ax.collections if isinstance(c, profiles.LineCollection)]
    assert sum(len(c.get_segments()) for c in lines) == 100  # a line per scale, not per run
    fig, caption = figures["heatmap"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert 3 <= len(labels) < 100 and labels[0] == "0.03"  # thinned to what fits, from the first scale
    assert "100 seeds" in caption


def test_a_few_runs_still_draw_a_line_each(tmp_path, figures):  # noqa: F811
    profile, _ = synthetic(np.array([0.5, 1.0, 2.0]), seeds=3)
    plots.plot_profiles(profile, set(), tmp_path)
    fig, caption = figures["profiles"]
    assert "Seeds not pooled" in caption and len(fig.axes[0].lines) == 9 + 1  # a line per run, and gain 1
    assert [t.get_text() for t in _heatmap_ticks(profile, tmp_path, figures)] == ["0.5", "1", "2"]
    # one seed to a configuration, other seeds in others: said so (it read "each of a configuration's 1 seeds")
    one_each = profile[profile.seed == profile.scale.map({0.5: 0, 1.0: 1, 2.0: 2})]
    plots.plot_profiles(one_each, set(), tmp_path)
    assert "Seeds: seeds 0–2, one to a configuration." in figures["profiles"][1]


def _heatmap_ticks(profile: pd.DataFrame, folder, figures) -> list:  # noqa: F811
    for page in heatmap.draw_heatmap(profile, folder):
        return page.figure.axes[0].get_yticklabels()
    return []


JOBS = [
    ["scale=2", "seed=3"],  # int to float through the schema
    ["seq_len=7", "scale=0.5", "name=x"],
    ["cell=lstm", "cell.forget_bias=1.5", "scale=1e-3"],  # a group, then one of its values
    ["remedy=clip", "train.clip_norm=2.0", "task=adding"],
    ["+hydra.job.env_set.HARNESS_X=1", "seed=2"],  # a hydra value: composed whole
    ["experiment=quickstart", "seed=1"],
]


@pytest.mark.parametrize("overrides", JOBS, ids=[" ".join(j) for j in JOBS])
def test_a_job_set_in_a_shared_plain_dict_is_the_job_hydra_composes(overrides):
    loader, master = loader_and_master()
    composer = Composer(loader, master)
    for num in range(2):  # the second time from what the first learnt
        job = composer.job(num, overrides)
        expected = loader.load_sweep_config(master, overrides)
        assert job.config == {k: v for k, v in expected.items() if k != "hydra"}, num
        assert type(job.config["scale"]) is float and type(job.config["seed"]) is int


def test_jobs_share_their_bases_untouched_parts_and_never_write_them(tmp_path):
    loader, master = loader_and_master()
    composer = Composer(loader, master)
    grid = expand({}, ["scale=0.5,1,2", "seed=range(0,4)"], loader)
    jobs = [composer.job(num, overrides) for num, overrides in enumerate(grid)]
    assert len({job.run_id for job in jobs}) == 12
    assert jobs[0].config["cell"] is jobs[11].config["cell"]  # shared, so ~1 KB a job
    assert [(job.config["scale"], job.config["seed"]) for job in jobs[:5]] == [
        (0.5, 0),
        (0.5, 1),
        (0.5, 2),
        (0.5, 3),
        (1.0, 0),
    ]
    assert len(composer.fits) == 1  # one estimate for the grid: it reads neither seed nor scale


@pytest.mark.parametrize("cell", ["rnn", "lstm", "lru"])
def test_the_memory_estimate_reads_neither_seed_nor_scale(cell):
    base = RunSpec.from_columns({"cell": cell, "seq_len": 100, "hidden_size": 16})
    other = RunSpec.from_columns({"cell": cell, "seq_len": 100, "hidden_size": 16, "seed": 7, "scale": 3.5})
    assert ESTIMATE_IGNORES == ("seed", "scale")
    assert estimate(base, 4 << 30) == estimate(other, 4 << 30)


def test_the_parts_cover_every_item_once_in_order():
    assert pool.parts(10, 3) == [range(0, 3), range(3, 6), range(6, 10)]
    assert pool.parts(1, 2) == [range(0, 1)] and pool.parts(0, 2) == []


def test_runs_read_and_fitted_in_worker_processes_are_those_read_in_one(damaged, monkeypatch):  # noqa: F811
    """From PARALLEL_RUNS runs on, collect reads and fits its runs in forked workers, a part each: the
    same tables as read and fitted in this process, the damaged runs' rows included (what a worker
    finds wrong comes back with its part: its own copy of the rows is not the parent's)."""
    tables = {}
    for workers in (1, 2):
        monkeypatch.setattr(results, "workers_for", lambda count, threshold, workers=workers: workers)
        profile, summary, _ = results.collect(damaged)
        tables[workers] = profile, summary, pd.read_parquet(damaged / FITS)
    assert tables[2][1].status.tolist().count("damaged") == 2  # a truncated profile, a garbage meta.json
    assert "ArrowInvalid" in tables[2][1].set_index("run_dir").error["1"]  # found in a worker
    for serial, parallel in zip(tables[1], tables[2]):
        pd.testing.assert_frame_equal(serial, parallel)
