"""Seeds pooled in the open and no swept axis hidden (issue 26, items 1 and 2).

The per-configuration table's interval against an independent computation (the statistics module and
a printed t table); the phase figure's bars against the same; a sweep of three axes and two seeds
whose every drawn line is matched, from the figure's own artists (panel titles, legend entries, the
colourbar, line styles), to exactly one configuration and one of its runs; panel titles that name
configurations, never run ids; GradientProfile.plot called again and again on one Axes; the report's
"Held fixed"; and a run's wall_time_s without its process's one-time start-up.
"""

from __future__ import annotations

import math
import re
import statistics

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from harness.lab import figures as plots
from harness.lab.figures import layout, phase, profiles
from harness.lab.figures.layout import top_h
from harness.lab.profile import GradientProfile
from harness.lab.report import held_fixed, write_report
from harness.lab.results import write_summary
from harness.lab.summary import summary_by_config, t_interval, t_quantile
from tests.test_plots import BASE, sweep

# Student t, two-sided 95% (the 0.975 quantile), as printed in every statistics text.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
T_TABLE.update({15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980})


@pytest.fixture
def figures(monkeypatch):
    """Every figure make_figures saves, before it is closed: name -> (figure, caption)."""
    made = {}
    save = plots.save

    def keep(fig, path, caption):
        fig.canvas.draw()
        made[path.name] = (fig, caption)
        return save(fig, path, caption)

    monkeypatch.setattr(plots, "save", keep)
    return made


def close(value: float, expected: float, half: float, df: int):
    """value == expected within what the printed t's three decimals leave of the half width."""
    assert value == pytest.approx(expected, abs=half * 0.0006 / T_TABLE[df] + 1e-12)


def t_density(x: np.ndarray, df: int) -> np.ndarray:
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    return c * (1 + x**2 / df) ** (-(df + 1) / 2)


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_the_t_quantile_is_the_printed_one_and_the_density_integrates_to_it(df):
    q = t_quantile(0.975, df)
    assert q == pytest.approx(T_TABLE[df], abs=6e-4)
    x = np.linspace(0, q, 200_001)  # P(0 <= T <= q) = 0.475, by the trapezoid rule on the density
    assert np.trapezoid(t_density(x, df), x) == pytest.approx(0.475, abs=1e-7)


def seeded_summary() -> pd.DataFrame:
    """A seed=0..4 sweep over three scales for two cells, as summary rows, with a failed run, a
    diverged one (kept: its numbers were measured) and a configuration run with one seed only."""
    rng = np.random.default_rng(26)
    rows = []
    for cell in ("rnn", "lstm"):
        for scale in (0.5, 1.0, 2.0):
            for seed in range(5):
                rate = math.log(scale) - 0.8 + 0.08 * rng.standard_normal()
                rows.append(
                    {
                        **BASE,
                        "cell": cell,
                        "scale": scale,
                        "seed": seed,
                        "run_id": f"{cell}-{scale}-{seed}",
                        "run_dir": f"{cell}/{scale}/{seed}",
                        "status": "ok",
                        "rate": rate,
                        "half_life": math.log(2) / abs(rate),
                        "power_exponent": -20 * abs(rate),
                        "horizon": 3 / abs(rate),
                        "horizon_censored": False,
                        "log10_gain": rate * BASE["seq_len"] / math.log(10) + 0.1 * rng.standard_normal(),
                        "theory_lyapunov": rate - 0.01 * seed,
                        "gap_lyapunov": 0.01 * seed,
                    }
                )
    rows[3]["status"] = "failed"  # rnn, 0.5, seed 3: never measured, never pooled
    rows[3]["rate"] = float("nan")
    rows[7]["status"] = "diverged"  # rnn, 1.0, seed 2: measured, pooled
    rows.append({**rows[0], "hidden_size": 16, "run_id": "wide", "run_dir": "wide"})  # one seed alone
    return pd.DataFrame(rows)


def test_summary_by_config_pools_seeds_with_the_t_interval_computed_independently(tmp_path):
    summary = seeded_summary()
    write_summary(summary, tmp_path)  # the sweep's tables, as collect and plot write them
    table = pd.read_parquet(tmp_path / "summary_by_config.parquet")
    assert (tmp_path / "summary_by_config.csv").exists()
    assert "seed" not in table and {"cell", "scale", "hidden_size", "init", "seq_len"} <= set(table.columns)
    print(table[["cell", "scale", "hidden_size", "n_seeds", "seeds", "rate_mean", "rate_ci_low", "rate_ci_high"]])
    assert len(table) == 7  # 2 cells x 3 scales, and the wide one
    for row in table.itertuples():
        runs = summary[
            (summary.cell == row.cell)
            & (summary.scale == row.scale)
            & (summary.hidden_size == row.hidden_size)
            & (summary.status != "failed")
        ]
        assert row.n_seeds == len(runs) and row.seeds == ",".join(map(str, sorted(runs.seed)))
        for metric in ("rate", "half_life", "power_exponent", "horizon", "log10_gain", "gap_lyapunov"):
            values = list(runs[metric])
            assert getattr(row, f"{metric}_n") == len(values)
            assert getattr(row, f"{metric}_mean") == pytest.approx(statistics.mean(values), rel=1e-12)
            assert getattr(row, f"{metric}_median") == pytest.approx(statistics.median(values), rel=1e-12)
            if len(values) < 2:
                assert math.isnan(getattr(row, f"{metric}_ci_low")) and math.isnan(getattr(row, f"{metric}_ci_high"))
                continue
            df = len(values) - 1
            half = T_TABLE[df] * statistics.stdev(values) / math.sqrt(len(values))
            close(getattr(row, f"{metric}_ci_low"), statistics.mean(values) - half, half, df)
            close(getattr(row, f"{metric}_ci_high"), statistics.mean(values) + half, half, df)
    counts = table.set_index(["cell", "scale", "hidden_size"]).n_seeds
    assert counts[("rnn", 0.5, 8)] == 4 and counts[("rnn", 1.0, 8)] == 5 and counts[("rnn", 0.5, 16)] == 1
    assert (table.horizon_censored_n == 0).all()


def test_t_interval_of_nothing_and_of_non_finite_values():
    assert t_interval([]).n == 0 and math.isnan(t_interval([]).mean)
    spread = t_interval([1.0, float("inf"), 3.0, float("nan")])  # the finite values only
    # s = sqrt(2), n = 2: mean +- 12.706 s / sqrt(2)
    assert spread.n == 2 and spread.mean == 2.0 and spread.ci_high == pytest.approx(2.0 + 12.706, abs=1e-3)


def phase_fits(summary: pd.DataFrame) -> pd.DataFrame:
    runs = summary[summary.status != "failed"].drop(columns=["gap_lyapunov"])
    return runs.assign(recorder="exact", log10_gain=runs.rate * runs.seq_len / math.log(10))


def test_the_phase_figure_draws_each_configurations_interval_and_says_what_it_pooled(tmp_path):
    fits = phase_fits(seeded_summary())
    fits = fits[fits.hidden_size == 8]
    (page,) = phase.draw_phase(fits, None, tmp_path)
    ax, gaps = page.figure.axes[:2]
    bars = [c for c in ax.collections if isinstance(c, matplotlib.collections.LineCollection)]
    drawn = {}  # (colour, x) -> (low, high), read back from the bars' segments
    for collection in bars:
        colour = matplotlib.colors.to_hex(collection.get_colors()[0])
        for segment in collection.get_segments():
            (x, low), (_, high) = segment
            drawn[(colour, round(float(x), 9))] = (low, high)
    colours = {"rnn": plots.CELL_COLOURS["rnn"].lower(), "lstm": plots.CELL_COLOURS["lstm"].lower()}
    for (cell, scale), runs in fits.groupby(["cell", "scale"]):
        values = list(runs.rate)
        df = len(values) - 1
        half = T_TABLE[df] * statistics.stdev(values) / math.sqrt(len(values))
        low, high = drawn[(colours[cell], scale)]
        close(low, statistics.mean(values) - half, half, df)
        close(high, statistics.mean(values) + half, half, df)
        line = next(line for line in ax.lines if line.get_label() == f"cell={cell}")
        assert line.get_ydata()[list(line.get_xdata()).index(scale)] == pytest.approx(statistics.mean(values))
    assert len(drawn) == 6
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "95% t interval of the mean over seeds" in legend
    assert "seeds pooled (seeds 0–4)" in page.caption and "n = 4–5 seeds" in page.caption
    assert any(isinstance(c, matplotlib.collections.LineCollection) for c in gaps.collections)  # the gaps' bars
    # the diverged run (rnn, scale 1, seed 2: measured, pooled) boxes its point, and the caption names it
    (boxed,) = [line for line in ax.lines if line.get_gid() == "flagged"]
    rnn = fits[(fits.cell == "rnn") & (fits.scale == 1.0)].rate
    assert list(boxed.get_xdata()) == [1.0] and list(boxed.get_ydata()) == [pytest.approx(rnn.mean())]
    assert "boxed: a point with a run whose status carries numerical flags" in page.caption
    assert "cell=rnn at scale 1" in page.caption and "a run with numerical flags" in legend
    print("phase caption:", page.caption)
    plt.close(page.figure)


def test_one_seed_per_configuration_draws_no_bars_and_says_nothing_of_seeds(tmp_path):
    fits = phase_fits(seeded_summary())
    fits = fits[(fits.seed == 0) & (fits.hidden_size == 8)]
    (page,) = phase.draw_phase(fits, None, tmp_path)
    assert not [c for c in page.figure.axes[0].collections if isinstance(c, matplotlib.collections.LineCollection)]
    assert "seed" not in page.caption
    plt.close(page.figure)


# --- three swept axes (cell, scale, seq_len) and two seeds: every line is one configuration's run.

THREE = {"cell": ["rnn", "lstm"], "scale": [0.5, 1.0, 2.0], "seq_len": [10, 20], "seed": [0, 1]}


def parse(text: str) -> dict[str, str]:
    """'cell=rnn, seq_len=10' (wrapped or not) -> {'cell': 'rnn', 'seq_len': '10'}."""
    return dict(part.split("=", 1) for part in text.replace("\n", " ").split(", ") if "=" in part)


def value_text(value) -> str:
    return str(value)


def colourbar_of(fig) -> tuple[str, object, object]:
    """(its label, norm, colormap) of the figure's one colourbar."""
    (bar,) = [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    return bar.ax.get_ylabel(), bar.norm, bar.cmap


def decode_colour(colour, values, norm, cmap):
    """The one swept value whose colour the line has."""
    found = [v for v in values if np.allclose(matplotlib.colors.to_rgba(colour), cmap(norm(float(v))))]
    assert len(found) == 1, (colour, found)
    return found[0]


def runs_of(top: pd.DataFrame, config: dict[str, str]) -> dict[str, np.ndarray]:
    """run_id -> its profile sorted by lag, for the runs whose columns read as config."""
    mask = np.ones(len(top), bool)
    for key, text in config.items():
        mask &= top[key].map(value_text).to_numpy() == text
    return {rid: run.sort_values("lag").log10_norm.to_numpy() for rid, run in top[mask].groupby("run_id")}


def match_profile_lines(fig, top: pd.DataFrame, lags_from: int = 0, style_key=None) -> set[str]:
    """Each data line of each panel decoded from its panel's title and its colour (the colourbar)
    to one configuration of all three axes, and matched to one of that configuration's runs; returns
    the runs matched."""
    label, norm, cmap = colourbar_of(fig)
    assert label == "scale"
    matched = set()
    for ax in fig.axes:
        if getattr(ax, "_colorbar", None) is not None or not ax.get_title():
            continue
        config = parse(ax.get_title())
        assert set(config) == {"cell", "seq_len"}, ax.get_title()  # the panel names the axes colour does not
        for line in ax.lines:
            if len(line.get_xdata()) <= 2 or matplotlib.colors.to_hex(line.get_color()) == "#000000":
                continue  # the zero line; the theory's black lines
            scale = decode_colour(line.get_color(), THREE["scale"], norm, cmap)
            runs = runs_of(top[top.lag >= lags_from], {**config, "scale": value_text(scale)})
            assert len(runs) == len(THREE["seed"])  # one configuration: its seeds
            ydata = np.asarray(line.get_ydata(), float)
            same = [rid for rid, values in runs.items() if np.allclose(values, ydata, equal_nan=True)]
            assert len(same) == 1, (ax.get_title(), scale)
            matched.add(same[0])
            if style_key is not None:
                style_key(line, same[0])
    return matched


def test_three_swept_axes_every_line_is_matched_to_its_configuration(tmp_path, figures):
    profile = sweep(**THREE)
    top = top_h(profile)
    everyone = set(profile.run_id)
    plots.make_figures(tmp_path, profile)
    assert {"profiles", "heatmap", "phase", "seq_len"} <= set(figures)

    fig, caption = figures["profiles"]
    assert match_profile_lines(fig, top) == everyone  # every run drawn, each once, each decodable
    assert "seeds 0, 1" in caption and "line of its own" in caption

    fits = plots.fits_beside(profile, None)
    for name, x, metric in (("phase", "scale", "rate"), ("seq_len", "seq_len", "log10_gain")):
        fig, caption = figures[name]
        ax = fig.axes[0]
        handles = ax.get_legend().legend_handles
        keys = {h.get_label(): h for h in handles}
        lines = [line for line in ax.lines if not line.get_label().startswith("_")]
        others = [a for a in ("cell", "scale", "seq_len") if a != x]
        assert len(lines) == 2 * 3 * 2 // len(THREE[x])
        for line in lines:
            config = parse(line.get_label())
            assert set(config) == set(others), line.get_label()
            # The legend explains the look: the cell's colour, the other axis' marker.
            assert line.get_color() == keys[f"cell={config['cell']}"].get_color()
            other = next(a for a in others if a != "cell")
            assert line.get_marker() == keys[f"{other}={config[other]}"].get_marker()
            runs = fits[(fits.cell == config["cell"]) & (fits[other].map(value_text) == config[other])]
            expected = runs.groupby(x)[metric].mean()
            assert np.allclose(line.get_xdata(), expected.index) and np.allclose(line.get_ydata(), expected)
        assert "seeds pooled (seeds 0, 1)" in caption and "n = 2 seeds" in caption

    fig, caption = figures["heatmap"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert {tuple(sorted(parse(ax.get_title()).items())) for ax in panels} == {
        (("cell", c), ("seq_len", str(t))) for c in THREE["cell"] for t in THREE["seq_len"]
    }
    for ax in panels:  # a row per scale, ticked with it (the labels shown on the first column only)
        assert ax.yaxis.get_major_formatter().format_ticks(ax.get_yticks()) == ["0.5", "1", "2"]
    assert "seeds pooled (seeds 0, 1)" in caption and "median over its configuration's 2 seeds" in caption


def test_panels_follow_the_axes_values_as_numbers_not_as_text():
    """seq_len 50, 300, 1000 in that order (as text, 1000 would come first), cells in their own order."""
    frame = pd.DataFrame(
        [{"cell": c, "seq_len": t, "lag": 0, "run_id": f"{c}{t}"} for c in ("lstm", "rnn") for t in (1000, 50, 300)]
    )
    columns, pages = layout.panels(frame, ["seq_len"])
    assert columns == 2
    assert [text for text, _ in pages[0]] == [
        f"cell={c}, seq_len={t}" for t in (50, 300, 1000) for c in ("rnn", "lstm")
    ]
    assert sorted([(2.0,), ("b",), (float("nan"),), (10,), ("a",), (None,)], key=layout.value_order)[:4] == [
        (2.0,),
        (10,),
        ("a",),
        ("b",),
    ]


def test_three_swept_axes_on_log_log_axes_colour_and_panel_name_the_run_and_style_its_law(tmp_path):
    profile = sweep(**THREE)
    fits = plots.fits_beside(profile, None)
    power = fits.scale == 1.0  # named power laws here, whatever the fit said: the style follows the name
    fits["decay_law"] = np.where(power, "power", "exponential")
    (page,) = profiles.draw_decay_laws(profile, fits, tmp_path)
    legend = page.figure.legends[0]
    legend = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles)}
    law_of = fits.set_index("run_id").decay_law

    def style_key(line, run_id):
        assert line.get_linestyle() == legend[f"measured, {law_of[run_id]}"].get_linestyle()

    matched = match_profile_lines(page.figure, top_h(profile), lags_from=1, style_key=style_key)
    assert matched == set(profile.run_id)
    assert "coloured by scale" in page.caption and "power solid" in page.caption and "seeds 0, 1" in page.caption
    plt.close(page.figure)


def test_a_panel_title_leaves_out_a_cell_key_its_cell_does_not_take():
    """A union of a user cell's sweep and a built-in cell's: the rnn panels read
    'cell=rnn, cell.kwargs.flag=<NA>, cell.kwargs.mode=nan'; a value of another key stays, empty or not."""
    names = ["cell", "cell.kwargs.flag", "cell.kwargs.mode", "cell.forget_bias", "seed"]
    assert layout.facet_label(("rnn", pd.NA, float("nan"), float("nan"), 3), names) == "cell=rnn, seed=3"
    assert layout.facet_label(("Mine", True, "tanh", float("nan"), pd.NA), names) == (
        "cell=Mine, cell.kwargs.flag=True, cell.kwargs.mode=tanh, seed=<NA>"
    )
    assert layout.facet_label(("lstm", pd.NA, float("nan"), 1.0, 0), names) == "cell=lstm, cell.forget_bias=1.0, seed=0"


def test_training_panels_are_titled_by_configuration_never_by_run_id(tmp_path, figures):
    profile = sweep(cell=["rnn"], seed=[0, 1, 2])
    trained = pd.concat([profile, profile.assign(step=50, log10_norm=profile.log10_norm / 2)], ignore_index=True)
    plots.make_figures(tmp_path, trained)
    fig, _ = figures["training_profiles"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sorted(titles) == ["seed=0", "seed=1", "seed=2"]
    assert not any(rid in title for rid in profile.run_id.unique() for title in titles)

    alone = pd.concat(
        [sweep(cell=["lstm"]), sweep(cell=["lstm"]).assign(step=50)], ignore_index=True
    )  # nothing varies: the title is the cell, not the hash
    plots.make_figures(tmp_path / "one", alone)
    fig, _ = figures["training_profiles"]
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["cell=lstm"]


def profile_of(cell: str, rate: float, seed: int) -> GradientProfile:
    lag = torch.arange(20, -1, -1, dtype=torch.float64)
    noise = 0.1 * torch.randn(21, 8, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    log_norms = rate * lag[:, None, None] + noise
    return GradientProfile(log_norms, ("h",), {**BASE, "cell": cell, "seed": seed}, "exact")


def test_gradient_profile_plot_called_again_on_one_axes_names_the_band_once():
    _, ax = plt.subplots()
    for n, cell in enumerate(["rnn", "gru", "lstm"]):
        profile_of(cell, -0.1 * (n + 1), n).plot(ax=ax)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == len(set(texts)) == 4, texts
    assert texts[-1] == "25-75% of the batch" and texts.count("25-75% of the batch") == 1
    assert sum(1 for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)) == 3  # each band
    profile_of("rnn", -0.5, 7).plot(ax=ax, label="mine")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts.count("25-75% of the batch") == 1 and "mine" in texts
    # Two more profiles of the rnn (another seed; the same one again): numbered, never a second entry of a name.
    profile_of("rnn", -0.2, 8).plot(ax=ax)
    profile_of("rnn", -0.2, 8).plot(ax=ax)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == len(set(texts)) == 7, texts
    rnn = [t for t in texts if t.startswith("rnn, ")]
    assert [t.removeprefix(rnn[0]) for t in rnn] == ["", " (2)", " (3)"], texts
    plt.close("all")


def test_held_fixed_lists_only_the_keys_that_apply_to_the_cells_run(tmp_path):
    summary = pd.DataFrame(
        [
            {
                **BASE,
                "run_id": f"r{i}",
                "run_dir": str(i),
                "status": "ok",
                "cell": cell,
                "scale": scale,
                "cell.forget_bias": 0.0,
                "cell.r_min": 0.0,
                "cell.r_max": 1.0,
                "cell.max_phase": 6.28,
                "cell.chrono_tmax": None,
                "train.steps": 0,
                "train.lr": 0.001,
                "train.omega": 0.0,
            }
            for i, (cell, scale) in enumerate([("rnn", 1.0), ("rnn", 2.0), ("lstm", 1.0), ("lstm", 2.0)])
        ]
    )
    fixed = held_fixed(summary, ["cell.forget_bias", "cell.r_min", "cell.r_max", "cell.max_phase", "train.lr",
                                 "train.omega", "train.steps", "hidden_size", "cell.chrono_tmax"])  # fmt: skip
    assert fixed == {"cell.forget_bias": "0.0 (lstm)", "train.steps": "0", "hidden_size": "8"}
    report = write_report(tmp_path, summary, []).read_text()
    assert "cell.forget_bias=0.0 (lstm)" in report
    for key in ("cell.r_min", "cell.r_max", "cell.max_phase", "train.lr", "train.omega"):
        assert f"{key}=" not in report, key
    lru = summary.assign(cell="lru")
    assert "cell.r_min" in held_fixed(lru, ["cell.r_min", "cell.forget_bias"])
    assert "cell.forget_bias" not in held_fixed(lru, ["cell.r_min", "cell.forget_bias"])
    trained = summary.assign(**{"train.steps": 100})
    assert held_fixed(trained, ["train.lr"]) == {"train.lr": "0.001"}
    # A user cell's arguments, beside built-in cells that have none: named with the cell; true as typed.
    mine = summary.assign(
        cell=["rnn", "rnn", "Mine", "Mine"],
        **{"cell.kwargs.k": [None, None, 2, 99], "cell.kwargs.flag": [None, None, True, True]},
    )
    assert held_fixed(mine, ["cell.kwargs.flag"]) == {"cell.kwargs.flag": "true (Mine)"}
    report = write_report(tmp_path, mine.assign(**{"record.units": True}), []).read_text()
    assert "cell.kwargs.k (2 values)" in report and "record.units=true" in report


def test_the_report_summarises_by_configuration_where_seeds_were_pooled(tmp_path):
    summary = seeded_summary()
    report = write_report(tmp_path, summary, []).read_text()
    assert "By configuration, seeds pooled" in report and "rate mean [95% interval]" in report
    row = summary_by_config(summary).iloc[0]
    assert f"{row.rate_mean:.4g} [{row.rate_ci_low:.4g}, {row.rate_ci_high:.4g}]" in report
    once = write_report(tmp_path, summary[summary.seed == 0], []).read_text()
    assert "By configuration" not in once  # one seed each: the runs' table is the summary
    unmeasured = summary.assign(gap_lyapunov=summary.gap_lyapunov.where(summary.cell == "rnn"))  # none for lstm
    cells = re.findall(r"<td>([^<]*)</td>", write_report(tmp_path, unmeasured, []).read_text())
    assert "nan" not in cells and "" in cells  # a blank cell where no seed gave a value, as in the median's


def test_a_gap_in_an_integer_column_is_blank_in_the_report(tmp_path):
    """A damaged run leaves seq_len <NA> in a nullable integer column; the page shows a blank cell."""
    summary = seeded_summary().astype({"seq_len": "Int64"})
    summary.loc[summary.index[0], "seq_len"] = pd.NA
    report = write_report(tmp_path, summary, []).read_text()
    assert "&lt;NA&gt;" not in report and "<NA>" not in report


def test_the_losses_figure_pools_seeds_into_a_geometric_mean_with_its_interval(tmp_path):
    """remedy none and clip, three seeds each: a line per remedy at 10^(mean log10 loss) over the
    seeds, shaded between 10^(mean ± t(0.975, 2) s/√3), t(0.975, 2) = 4.302652729911275 from tables."""
    from harness.lab.figures.training import draw_losses

    rng = np.random.default_rng(7)
    steps = np.arange(0, 50, 10)
    rows = []
    for remedy in ("none", "clip"):
        for seed in range(3):
            for step in steps:
                loss = 0.2 * math.exp(-step / 40) * math.exp(0.3 * rng.standard_normal())
                rows.append(
                    {**BASE, "remedy": remedy, "seed": seed, "run_id": f"{remedy}{seed}", "step": step}
                    | {"eval_loss": loss, "baseline": 0.167}
                )
    losses = pd.DataFrame(rows)
    (page,) = draw_losses(losses, tmp_path)
    (ax,) = [a for a in page.figure.axes if a.lines]
    for remedy in ("none", "clip"):
        log10 = np.log10(losses[losses.remedy == remedy].pivot(index="step", columns="seed", values="eval_loss"))
        mean, half = log10.mean(axis=1), 4.302652729911275 * log10.std(axis=1, ddof=1) / math.sqrt(3)
        drawn = [
            line
            for line in ax.lines
            if len(line.get_ydata()) == len(steps) and np.allclose(line.get_ydata(), 10**mean, rtol=1e-12)
        ]
        assert len(drawn) == 1, remedy
        spans = [
            (c.get_paths()[0].vertices[:, 1].min(), c.get_paths()[0].vertices[:, 1].max())
            for c in ax.collections
            if c.get_gid() == "interval"
        ]
        expected = ((10 ** (mean - half)).min(), (10 ** (mean + half)).max())
        assert any(np.allclose(span, expected, rtol=1e-9) for span in spans), remedy
    assert len(ax.lines) == 2 + 1  # two lines and the baseline, never one line per seed
    assert "n = 3" in page.caption and "95% Student t interval" in page.caption
    plt.close(page.figure)


def test_the_learnability_figure_draws_each_configurations_interval_over_seeds(tmp_path):
    """Two remedies x three seeds: one cross per configuration at (mean rate, 10^mean log10 loss ratio),
    its bars the t intervals computed here (t(0.975, 2) = 4.302652729911275 from tables)."""
    from harness.lab.figures.training import draw_learnability

    rng = np.random.default_rng(3)
    summary = pd.DataFrame(
        [
            {**BASE, "remedy": remedy, "seed": seed, "run_id": f"{remedy}{seed}", "status": "ok"}
            | {"rate_init": -0.1 * (1 + i) + 0.02 * rng.standard_normal(), "baseline": 0.167}
            | {"final_loss": 0.167 * 10 ** (-i + 0.2 * rng.standard_normal())}
            for i, remedy in enumerate(("none", "clip"))
            for seed in range(3)
        ]
    )
    (page,) = draw_learnability(summary, tmp_path)
    ax = page.figure.axes[0]
    assert len(ax.containers) == 2
    t = 4.302652729911275
    legend = {
        text.get_text(): handle for text, handle in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)
    }
    for remedy, container in zip(("clip", "none"), ax.containers):  # config groups in sorted order
        runs = summary[summary.remedy == remedy]
        log10 = np.log10(runs.final_loss / runs.baseline)
        # each cross is centred on its remedy's marker, as the legend gives it: crosses that meet are told apart
        assert container.lines[0].get_marker() == legend[f"remedy={remedy}"].get_marker()
        (x,), (y,) = container.lines[0].get_data()
        assert x == pytest.approx(runs.rate_init.mean(), rel=1e-12)
        assert y == pytest.approx(10 ** log10.mean(), rel=1e-12)
        xbar, ybar = (segments.get_segments()[0] for segments in container.lines[2])
        half = t * runs.rate_init.std(ddof=1) / math.sqrt(3)
        assert xbar[:, 0] == pytest.approx([x - half, x + half], rel=1e-9)
        half = t * log10.std(ddof=1) / math.sqrt(3)
        assert ybar[:, 1] == pytest.approx([10 ** (log10.mean() - half), 10 ** (log10.mean() + half)], rel=1e-9)
    assert "n = 3" in page.caption
    plt.close(page.figure)


def test_the_phase_gaps_of_one_cells_lines_stand_apart_in_the_legends_order(tmp_path):
    """With hidden_size swept too, the rnn's two lines share its colour; their gaps in the lower panel
    (a marker per prediction, the colour the cell's) stood on the same x, so that neither could be
    matched to its line. They stand side by side at each scale in the legend's order, and the
    caption says so."""
    fits = phase_fits(seeded_summary())
    (page,) = phase.draw_phase(fits, None, tmp_path)
    ax, gaps = page.figure.axes[:2]
    labels = [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]
    assert labels == ["cell=rnn, hidden_size=8", "cell=rnn, hidden_size=16", "cell=lstm, hidden_size=8"]
    points = [line for line in gaps.lines if line.get_marker() == "x"]  # not the bars' caps ("_") nor the zero line
    assert len(points) == 3  # a series of gaps per line (one prediction here: the Lyapunov exponent)
    scales = np.asarray(sorted(fits.scale.unique()))
    offsets = []
    for line in points:  # each point's distance from the scale it stands for
        x = np.asarray(line.get_xdata(), float)
        offset = x - scales[np.abs(x[:, None] - scales[None, :]).argmin(axis=1)]
        assert np.allclose(offset, offset[0])  # one offset per line, at every scale
        offsets.append(offset[0])
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    assert "its gaps stand side by side at each scale, in the legend's order" in page.caption
    plt.close(page.figure)


def test_seed_lists_are_named_without_building_the_range_between_them():
    """Seeds 0 and 2**63 - 1 (the largest a run takes) ended a sweep's figures in OverflowError: the
    caption compared them with list(range(0, 2**63)); 0, 1, 3e7 took 2 s and 1.3 GB."""
    assert layout.seed_list([0, 2**63 - 1]) == f"seeds 0, {2**63 - 1}"
    assert layout.seed_list([0, 1, 30_000_000]) == "seeds 0, 1, 30000000"
    assert layout.seed_list([3, 4, 5, 6]) == "seeds 3–6" and layout.seed_list([0, 2, 3]) == "seeds 0, 2, 3"


def test_a_pooled_line_beside_lines_named_by_recording_has_a_label_of_its_own():
    """Recordings from Python: T = 20 holds three seeds of one model (pooled), T = 30 two models of one
    seed (told apart by recording). Every line has a legend label, and no two the same (the pooled
    one had none: a blank legend entry)."""
    from harness.lab.figures.layout import line_groups
    from harness.lab.summary import told_apart

    rows = [{"cell": "rnn", "seq_len": 20, "seed": s, "recording": f"r{s}", "run_id": f"a{s}"} for s in range(3)]
    rows += [{"cell": "rnn", "seq_len": 30, "seed": 0, "recording": r, "run_id": r} for r in ("rA", "rB")]
    summary = told_apart(pd.DataFrame(rows))
    assert summary.recording.isna().tolist() == [True, True, True, False, False]
    labels = [line.label for line in line_groups(summary, "seq_len").lines]
    assert sorted(labels) == ["recording=rA", "recording=rB", "seeds pooled (no recording named)"]
