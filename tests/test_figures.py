"""What the figures draw, read back from their artists, against what the tables hold; the same
figures against stored reference images; and the report in a real browser engine.

Semantic tests (each guards one of the defects a reviewer found, named in its docstring) build small
tables in the test. Image tests draw each figure kind from fixed tables checked into
tests/data/figures/ and compare it with tests/data/figures/baseline/<name>.png by matplotlib's own
RMS image comparison (matplotlib.testing.compare.compare_images) within TOLERANCE; after a deliberate
change, look at the new images and regenerate them with
    HARNESS_REGENERATE_BASELINES=1 .venv/bin/python -m pytest tests/test_figures.py -k baseline
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.testing.compare import compare_images

from harness.lab import figures as plots
from harness.lab import pool
from harness.lab.report import write_report
from tests.test_plots import sweep

DATA = Path(__file__).parent / "data" / "figures"
BASELINE = DATA / "baseline"
# RMS difference over 0-255 grey levels. Identical matplotlib and freetype versions draw identical
# pixels (0.0); 2 absorbs antialiasing differences between machines, while a changed colour, line or
# label moves the RMS far past it (a swapped cell colour: > 5; see test_a_swapped_colour_fails).
TOLERANCE = 2.0


BOXES: dict = {}  # figure name -> (its box, [(text, its box)]) as laid out for saving


@pytest.fixture
def figures(monkeypatch):
    """Every figure made, before it is closed: name -> (figure, caption), laid out as saved."""
    made = {}
    save = plots.save
    BOXES.clear()  # only this test's figures

    def keep(fig, path, caption):
        fig.canvas.draw()  # laid out, as it will be saved; measured now, before saving changes the dpi
        BOXES[path.name] = fig.bbox.frozen(), [(t.get_text(), t.get_window_extent().frozen()) for t in texts(fig)]
        made[path.name] = (fig, caption)
        return save(fig, path, caption)

    monkeypatch.setattr(plots, "save", keep)
    return made


def three_cells(**axes) -> pd.DataFrame:
    return sweep(cell=["gru", "rnn", "lstm"], **axes)  # out of order on purpose


def summary_of(profile: pd.DataFrame, **columns) -> pd.DataFrame:
    runs = profile.drop_duplicates("run_id")[["run_id", "cell", "scale"]].assign(status="ok", **columns)
    return runs.reset_index(drop=True)


def texts(fig) -> list[matplotlib.text.Text]:
    """The texts a reader reads: titles, axis labels, the tick labels drawn (ticks inside the view),
    legend entries, annotations, figure titles; visible and not empty."""
    found = [*fig.texts, *(t for legend in fig.legends for t in legend.get_texts())]
    for ax in fig.axes:
        found += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend():
            found += ax.get_legend().get_texts()
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            found += [
                tick.label1
                for tick, at in zip(axis.get_major_ticks(), axis.get_majorticklocs())
                if low - span <= at <= high + span
            ]
    return [t for t in found if t.get_visible() and t.get_text().strip()]


# 1. phase: the legend said "exact recorder" for autograd runs too.
def test_the_phase_legend_names_the_recorders_present(tmp_path, figures):
    profile = three_cells(scale=[0.5, 1.0, 2.0], recorder=["autograd"])
    plots.make_figures(tmp_path, profile)
    fig, caption = figures["phase"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("autograd recorder" in t for t in legend) and not any("exact" in t for t in legend)
    assert "autograd recorder" in caption


# 2. captions named bands that were not drawn: the caption is written from what was drawn.
def test_captions_describe_what_was_drawn(tmp_path, figures):
    one_sample = sweep(scale=[0.5, 2.0])
    one_sample[["log10_norm_q25", "log10_norm_q75"]] = np.nan  # no batch band to draw
    plots.make_figures(tmp_path, one_sample)
    _, caption = figures["profiles"]
    assert "no batch band" in caption and "shaded" not in caption
    plots.make_figures(tmp_path, sweep(scale=[0.5, 2.0]))
    fig, caption = figures["profiles"]
    assert "shaded: the batch's 25–75% range" in caption
    assert any(isinstance(c, matplotlib.collections.PolyCollection) for c in fig.axes[0].collections)


def test_the_profiles_of_trained_runs_say_which_step_they_draw(tmp_path, figures):
    """A trained sweep's profiles page draws each run's first recorded step; its caption said nothing
    of which step, so two remedies' identical panels read as 'the remedy changed nothing'."""
    plots.make_figures(tmp_path, sweep(scale=[0.5, 2.0]))
    assert "initialisation" not in figures["profiles"][1]
    trained = pd.concat([sweep(scale=[0.5, 2.0]).assign(step=step) for step in (0, 50)], ignore_index=True)
    plots.make_figures(tmp_path, trained)
    assert (
        "at initialisation (each run's first recorded step; training_profiles shows the later ones)"
        in (figures["profiles"][1])
    )


# 3 and 5. titles clipped at the edge, labels drawn over each other ("critical 1.85" over "exploding").
def test_no_text_leaves_the_figure_or_overlaps_another(tmp_path, figures):
    # 36 lines in the phase figure: its legend must still fit (a colour per cell, a style per combination)
    profile = sweep(
        cell=["rnn", "lstm", "gru"],
        activation=["tanh", "relu"],
        remedy=["none", "clip", "weight_decay"],
        seq_len=[10, 20],
        scale=[0.5, 1.0, 2.0],
    )
    summary = summary_of(profile, rate_init=-0.1, final_loss=0.1, baseline=0.2)
    summary["remedy"] = profile.drop_duplicates("run_id").remedy.to_numpy()
    plots.make_figures(tmp_path, profile, summary)
    for kind in ("phase", "profiles", "learnability"):
        assert_readable(next(n for n in figures if n.startswith(kind)))


def assert_readable(name: str) -> None:
    """No text of the figure `name` (as laid out for saving) leaves the figure or overlaps another."""
    page, boxes = BOXES[name]
    page = page.padded(8)  # a text's box reaches a few px beyond its glyphs
    for text, box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, f"{name}: {text}"
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            overlap = (
                min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0),
                min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0),
            )
            assert min(overlap) <= 3.0, f"{name}: {a!r} overlaps {b!r}"  # neighbouring legend rows touch by ~2 px


def test_every_other_figure_kind_is_readable(tmp_path, figures):
    """The same check on the stored tables' figures (profiles, heatmap, phase, seq_len, both training
    pages, losses, learnability), layers, the log-log profiles and the spectrum."""
    profile, summary, losses = stored_tables()
    plots.make_figures(tmp_path / "stored", profile, summary, losses)
    deep = sweep(num_layers=[2], scale=[0.5, 2.0])
    plots.make_figures(tmp_path / "deep", deep)
    power = sweep(cell=["rnn", "lru"], scale=[0.9, 1.0])
    lru = power.run_id.isin(power[power.cell == "lru"].run_id)
    power.loc[lru, "log10_norm"] = -0.5 * np.log10(1 + power.loc[lru, "lag"])  # a power law
    plots.make_figures(tmp_path / "power", power)
    spectra = summary_of(sweep(scale=[0.5, 1.0, 2.0]), rate=[-0.7, -0.1, 0.4], lyapunov_dimension=[0, 0, 3.5])
    spectra["spectrum"] = [list(np.linspace(r, r - 2, 8)) for r in (-0.7, -0.1, 0.4)]
    plots.plot_spectrum(spectra, tmp_path / "spectrum")
    kinds = {
        "profiles",
        "heatmap",
        "phase",
        "seq_len",
        "training_profiles_1",
        "training_profiles_2",
        "losses",
        "learnability",
        "layers",
        "profiles_loglog",
        "spectrum",
    }
    assert kinds <= set(BOXES)
    for name in kinds:
        assert_readable(name)


# 4. heatmap: the colour range was set by the single most extreme run.
def test_the_heatmap_range_is_robust_and_says_it_clips(tmp_path, figures):
    profile = sweep(scale=list(np.linspace(0.3, 1.5, 60)))
    extreme = profile.run_id == profile.run_id.iloc[-1]  # 1.6% of the cells
    profile.loc[extreme, "log10_norm"] *= 50  # one run 50x steeper than the rest
    plots.make_figures(tmp_path, profile)
    fig, caption = figures["heatmap"]
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.halfrange < 0.5 * np.nanmax(np.abs(profile.log10_norm))
    colourbar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert colourbar._colorbar.extend == "both" and "end colours" in caption


def test_the_heatmap_has_a_row_of_one_height_per_swept_scale(tmp_path, figures):
    """Edges halfway between uneven scales (0.5, 2, 2.5) made rows of different heights and an axis
    reaching below the smallest scale, as if scales near 0 had been run."""
    plots.make_figures(tmp_path, sweep(scale=[0.5, 2.0, 2.5]))
    ax = figures["heatmap"][0].axes[0]
    rows = np.unique(ax.collections[0].get_coordinates()[..., 1])
    assert rows.tolist() == [-0.5, 0.5, 1.5, 2.5]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "2", "2.5"]
    assert ax.get_ylim() == (-0.5, 2.5)


# 6. the same cell had different colours in different figures, and panels came alphabetically.
def test_each_cell_keeps_its_colour_and_place_everywhere(tmp_path, figures):
    profile = three_cells(scale=[0.5, 1.0, 2.0])
    summary = summary_of(profile, rate_init=-0.1, final_loss=0.1, baseline=0.2)
    plots.make_figures(tmp_path, profile, summary)
    titles = [ax.get_title() for ax in figures["profiles"][0].axes if ax.get_label() != "<colorbar>"]
    assert titles == ["cell=rnn", "cell=lstm", "cell=gru"]
    phase = {
        line.get_label(): line.get_color()
        for line in figures["phase"][0].axes[0].lines
        if line.get_label().startswith("cell=")
    }
    assert phase == {f"cell={c}": plots.CELL_COLOURS[c] for c in ("rnn", "lstm", "gru")}
    legend = figures["phase"][0].axes[0].get_legend()
    keys = {
        t.get_text(): h.get_color()
        for t, h in zip(legend.get_texts(), legend.legend_handles)
        if t.get_text().startswith("cell=")
    }
    assert keys == phase
    scatter = figures["learnability"][0].axes[0].collections
    colours = [matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in scatter]
    assert colours == [plots.CELL_COLOURS[c].lower() for c in ("rnn", "lstm", "gru")]


# 7. the seq_len axis had no ticks at the swept lengths.
def test_seq_len_ticks_are_the_swept_lengths(tmp_path, figures):
    plots.make_figures(tmp_path, sweep(seq_len=[10, 20, 40, 80]))
    ax = figures["seq_len"][0].axes[0]
    assert list(ax.get_xticks()) == [10, 20, 40, 80]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20", "40", "80"]


# 8. the 25-75% band was invisible.
def test_the_batch_band_is_visible_under_its_line(tmp_path, figures):
    plots.make_figures(tmp_path, sweep(scale=[0.5, 2.0]))
    ax = figures["profiles"][0].axes[0]
    bands = [c for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)]
    assert sum(len(b.get_paths()) for b in bands) == 2 and all(b.get_alpha() >= 0.25 for b in bands)
    assert all(b.get_zorder() < line.get_zorder() for b in bands for line in ax.lines if line.get_linewidth() > 1)


def test_a_band_with_gaps_is_a_polygon_per_finite_stretch():
    """Where a quantile is nan or inf the band stops, as fill_between(where=finite) draws it: here the
    stretches are lags 0-1 and 3-4, each its low edge forwards and its high edge back."""
    lag = np.arange(6.0)
    low = np.array([0.0, 1.0, np.nan, 3.0, 4.0, -np.inf])
    polygons = plots.profiles.band_polygons(lag, low, low + 1)
    assert [p.tolist() for p in polygons] == [
        [[0, 0], [1, 1], [1, 2], [0, 1]],
        [[3, 3], [4, 4], [4, 5], [3, 4]],
    ]


# 9. training_profiles silently omitted runs.
def test_every_trained_run_has_a_training_panel(tmp_path, figures):
    runs = sweep(cell=["rnn", "lstm", "gru"], remedy=[f"r{i}" for i in range(6)])  # 18 runs: two pages
    profile = pd.concat([runs.assign(step=step) for step in (0, 10)], ignore_index=True)
    plots.make_figures(tmp_path, profile)
    panels = [
        ax
        for name, (fig, _) in figures.items()
        if name.startswith("training_profiles")
        for ax in fig.axes
        if ax.get_label() != "<colorbar>"
    ]
    assert len(panels) == 18
    assert {ax.get_title() for ax in panels} == {
        f"cell={c}, remedy=r{i}" for c in ("rnn", "lstm", "gru") for i in range(6)
    }


# 10. a diverged run vanished without a mark.
def test_a_diverged_run_is_drawn_to_where_it_left_the_range_and_a_lost_one_is_listed(tmp_path, figures):
    profile = sweep(scale=[0.5, 1.0, 2.0])
    runs = list(profile.run_id.unique())
    tail = (profile.run_id == runs[2]) & (profile.lag > 10)
    profile.loc[tail, ["log10_norm", "log10_norm_q25", "log10_norm_q75"]] = np.inf  # overflowed 10 steps back
    profile.loc[profile.run_id == runs[1], ["log10_norm", "log10_norm_q25", "log10_norm_q75"]] = np.nan
    plots.make_figures(tmp_path, profile, summary_of(profile).assign(status=["ok", "nan", "diverged"]))
    fig, caption = figures["profiles"]
    ax = fig.axes[0]
    curves = [line for line in ax.lines if line.get_linewidth() > 1.2 and line.get_marker() in ("None", None)]
    assert len(curves) == 2  # the diverged run is drawn; the all-nan run cannot be
    exits = [line for line in ax.lines if line.get_marker() == "X"]
    assert len(exits) == 1 and exits[0].get_xdata()[0] == 10
    assert "scale=1.0" in caption and "no finite value" in caption
    phase, phase_caption = figures["phase"]
    assert "no finite rate" in phase_caption and "1" in phase_caption.split("no finite rate")[1]


# 11. the residual panel's dots and crosses were unexplained.
def test_the_residual_panel_explains_its_markers(tmp_path, figures):
    profile = sweep(scale=[0.5, 1.0, 2.0])
    summary = summary_of(
        profile,
        theory_lyapunov=[-0.8, -0.1, 0.6],
        theory_mean_field=[-0.7, -0.1, 0.5],
        theory_critical_scale=1.2,
        input_drive_var=1.0,
        activation="tanh",
    )
    plots.make_figures(tmp_path, profile, summary)
    fig, caption = figures["phase"]
    lower = fig.axes[1]
    legend = [t.get_text() for t in lower.get_legend().get_texts()]
    assert legend == ["− mean field", "− Lyapunov", "±0.02"]
    assert {line.get_marker() for line in lower.lines if line.get_linestyle() == "None"} == {"o", "x"}
    assert "critical scale" in caption and "1.20" in caption


def test_the_report_says_where_it_was_filtered_and_what_is_fixed(tmp_path):
    profile = three_cells(scale=[0.5, 2.0])
    summary = summary_of(profile, run_dir=[str(i) for i in range(6)], name="demo", hidden_size=8, seq_len=20)
    summary.loc[2, ["status"]] = "failed"
    drawn = plots.make_figures(tmp_path, profile, summary)
    report = write_report(tmp_path, summary, drawn, where=["cell=rnn,gru"]).read_text()
    assert "<title>demo where cell=rnn,gru</title>" in report and "only the runs where cell=rnn,gru" in report
    assert "<code>hidden_size=8</code>" in report and "<code>seq_len=20</code>" in report  # held fixed
    assert "cell (3 values)" in report and "scale (2 values)" in report  # swept
    assert "failed, diverged" in report and "<td>failed</td>" in report
    for figure in drawn:
        assert html.escape(figure.caption) in report


def browser_probe(page: Path) -> dict:
    """Open `page` in headless chromium and return, after it loaded, each image's natural width and any
    error a script, a resource or the console reported. The probe is a script added at the top of a
    copy of the page; chromium prints the DOM after the load event (--dump-dom)."""
    probe = (
        "<script>window.__errors=[];addEventListener('error',e=>__errors.push(String(e.message||"
        "(e.target&&(e.target.src||'').slice(0,40)))),true);const __error=console.error;console.error=(...a)"
        "=>{__errors.push(a.join(' '));__error(...a)};addEventListener('load',()=>{const i=[...document.images];"
        "const r=document.createElement('pre');r.id='probe';r.textContent=JSON.stringify({widths:i.map(x=>"
        "x.naturalWidth),errors:__errors});document.body.appendChild(r)});</script>"
    )
    copy = page.with_name("probed.html")
    copy.write_text(page.read_text().replace("<head>", "<head>" + probe, 1))
    result = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = result.stdout.split('<pre id="probe">', 1)
    assert len(found) == 2, f"the page never finished loading: {result.stderr[-500:]}"
    return json.loads(found[1].split("</pre>", 1)[0].replace("&quot;", '"'))


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
def test_the_report_opens_in_a_browser_with_every_image_and_no_error(tmp_path):
    profile = three_cells(scale=[0.5, 1.0, 2.0])
    profile.loc[profile.run_id == "run8", "log10_norm"] = np.inf  # a diverged run
    summary = summary_of(profile, run_dir=[str(i) for i in range(9)], name="demo")
    summary.loc[[3, 8], "status"] = ["failed", "diverged"]
    drawn = plots.make_figures(tmp_path, profile, summary)
    report = write_report(tmp_path, summary, drawn, where=["cell=rnn,lstm,gru"])
    shutil.rmtree(tmp_path / "figures")  # nothing beside the file may be needed
    seen = browser_probe(report)
    print(f"browser: {len(seen['widths'])} images, natural widths {seen['widths']}, errors {seen['errors']}")
    assert len(seen["widths"]) == len(drawn) == 3 and min(seen["widths"]) > 0 and seen["errors"] == []
    # The probe can fail: a broken image is seen as one.
    broken = report.with_name("broken.html")
    broken.write_text(report.read_text().replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    assert min(browser_probe(broken)["widths"]) == 0


def stored_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return tuple(pd.read_parquet(DATA / f"{name}.parquet") for name in ("profile", "summary", "losses"))


KINDS = ["profiles", "heatmap", "phase", "seq_len", "training_profiles_1", "losses", "learnability"]


@pytest.fixture(scope="module")
def drawn_from_stored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stored")
    profile, summary, losses = stored_tables()
    drawn = plots.make_figures(folder, profile, summary, losses, workers=1)
    return {d.path.stem: d for d in drawn}


def test_figures_drawn_in_worker_processes_are_the_figures_drawn_in_one(drawn_from_stored, tmp_path):
    """The 288-run grid draws its figures in forked workers: the same files, byte for byte, and the
    same captions, in the same order, as drawn one after another in this process."""
    profile, summary, losses = stored_tables()
    in_workers = plots.make_figures(tmp_path, profile, summary, losses, workers=2)
    assert [(d.path.name, d.caption) for d in in_workers] == [
        (d.path.name, d.caption) for d in drawn_from_stored.values()
    ]
    for drawn in in_workers:
        assert drawn.path.read_bytes() == drawn_from_stored[drawn.path.stem].path.read_bytes(), drawn.path.name


@pytest.mark.skipif(not pool.FORKS, reason="figures are drawn in workers only where processes fork")
def test_two_figure_kinds_or_more_are_drawn_in_a_worker_per_core_by_default(monkeypatch, tmp_path):
    """However few the runs: a fork costs milliseconds, a figure kind a tenth of a second or more."""
    profile, summary, _ = stored_tables()
    monkeypatch.setattr(plots, "PARALLEL_FIGURES", 2)  # the conftest keeps tests' figures in their process
    monkeypatch.setattr(pool.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    asked = []
    monkeypatch.setattr(plots, "run_in_processes", lambda jobs, workers: asked.append((len(jobs), workers)) or [])
    two_runs = profile[profile.run_id.isin(profile.run_id.unique()[:2])]
    plots.make_figures(tmp_path, two_runs, summary[summary.run_id.isin(two_runs.run_id)])
    [(kinds, workers)] = asked
    assert kinds >= 3 and workers == 3


def test_laying_a_page_out_once_gives_the_pixels_of_matplotlibs_own_savefig(drawn_from_stored, monkeypatch, tmp_path):
    """save lays each page out once and sets its layout engine aside before writing it; matplotlib's
    savefig with the engine still set lays the page out during a draw with rendering off, then
    renders it. Every page drawn from the stored tables is the same, pixel for pixel, both ways."""
    profile, summary, losses = stored_tables()

    def matplotlibs_own(fig, path, caption):
        for ax in fig.axes:  # as save does: data artists are not measured by the layout
            for artist in [*ax.lines, *ax.collections]:
                artist.set_in_layout(False)
        path.parent.mkdir(exist_ok=True)
        fig.savefig(path.with_suffix(".png"), format="png", dpi=plots.output.DPI)
        return plots.Drawn(path.with_suffix(".png"), caption)

    monkeypatch.setattr(plots, "save", matplotlibs_own)
    own = {d.path.stem: d.path for d in plots.make_figures(tmp_path, profile, summary, losses, workers=1)}
    assert own.keys() == drawn_from_stored.keys()
    for name, path in own.items():
        saved = drawn_from_stored[name].path
        assert np.array_equal(matplotlib.image.imread(path), matplotlib.image.imread(saved)), name


def test_a_page_without_axes_is_saved_without_a_layout_warning(tmp_path):
    """A registered figure's page may hold text alone: there is nothing to lay out (as Figure.draw
    skips its engine then), and no warning that no gridspec was found."""
    fig = matplotlib.pyplot.figure(layout="constrained")
    fig.text(0.5, 0.5, "no panels")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.save(fig, tmp_path / "text", "a page of text").path.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_baseline_image(drawn_from_stored, kind):
    made = drawn_from_stored[kind].path
    if os.environ.get("HARNESS_REGENERATE_BASELINES"):
        BASELINE.mkdir(parents=True, exist_ok=True)
        shutil.copy(made, BASELINE / f"{kind}.png")
    difference = compare_images(str(BASELINE / f"{kind}.png"), str(made), tol=TOLERANCE)
    assert difference is None, difference


def test_a_swapped_colour_fails_the_image_test(drawn_from_stored, monkeypatch, tmp_path):
    """The image test can fail: swap rnn's and lstm's colours and the phase figure differs."""
    monkeypatch.setitem(plots.CELL_COLOURS, "rnn", plots.CELL_COLOURS["lstm"])
    monkeypatch.setitem(plots.CELL_COLOURS, "lstm", "#0072B2")
    profile, summary, losses = stored_tables()
    made = {d.path.stem: d.path for d in plots.make_figures(tmp_path, profile, summary, losses)}
    assert compare_images(str(BASELINE / "phase.png"), str(made["phase"]), tol=TOLERANCE) is not None


def test_no_two_loss_lines_look_alike(tmp_path, figures):
    """Nine remedies, eight colours: the ninth line gets a dash, not a colour already taken."""
    losses = pd.DataFrame(
        [
            {
                "run_id": f"r{i}",
                "cell": "rnn",
                "remedy": f"remedy{i}",
                "step": step,
                "eval_loss": 1 / (1 + step * i),
                "baseline": 0.2,
            }
            for i in range(9)
            for step in (0, 10)
        ]
    )
    plots.make_figures(tmp_path, sweep(scale=[1.0]), None, losses)
    fig, _ = figures["losses"]
    looks = [(line.get_color(), line.get_linestyle()) for line in fig.axes[0].lines]
    runs = [look for look in looks if look != ("0.3", "--")]  # the baseline
    assert len(runs) == 9 and len(set(runs)) == 9


def test_an_interrupt_while_pages_are_written_in_workers_leaves_no_temporary_file(monkeypatch, tmp_path):
    """Interrupted, the command kills its workers (harness.lab.pool), some midway through writing a
    page: the page's temporary file is removed; one that was there before, and every page, is kept."""
    profile, summary, _ = stored_tables()
    folder = tmp_path / "figures"
    folder.mkdir()
    earlier = folder / ".phase.png.0badc0de"  # not this call's (another writer's, or the user's)
    earlier.write_bytes(b"")
    (folder / "heatmap.png").write_bytes(b"a page written before")

    def killed_midway(jobs, workers):
        (folder / ".profiles.png.1a2b3c4d").write_bytes(b"half a page")
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "run_in_processes", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        plots.make_figures(tmp_path, profile, summary)
    assert sorted(p.name for p in folder.iterdir()) == [".phase.png.0badc0de", "heatmap.png"]
