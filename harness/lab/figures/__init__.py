"""Figures, drawn from stored tables only (never by rerunning a model; see harness.plot).

Every figure follows what the sweep varied: panels split by cell (columns) and by the other varied
axes (rows), colour by scale (or by seq_len when scale is fixed), and a figure whose axis did not vary
is not drawn. Each is written as PNG under <folder>/figures/ (and as SVG with vector=True), with a
caption its code writes from what it drew. The figure kinds, in the order FIGURES registers them
below (make_figures draws them, and the report shows them, in that order):

module       figure             shows                                                drawn when
profiles.py  profiles           log10 ||dL/dh_{T-k}|| against the lag k, per run     always
             profiles_loglog    the same on log-log axes, coloured by decay law      a run decays as a power law
heatmap.py   heatmap            scale x lag -> log10 gain, diverging about gain 1    scale varied
             rate_map           scale x seq_len -> fitted rate, seeds' median        scale and seq_len 3+ values
phase.py     phase              fitted rate against scale, regimes shaded, and the   scale varied
                                predictions of harness.lab.theory_table.THEORY
seq_len.py   seq_len            end-to-end log10 gain against seq_len                seq_len varied
heatmap.py   layers             layer x lag -> log10 norm of each layer's h          num_layers > 1
training.py  training_profiles  the profile at init and at each recorded step        trained runs
             losses             eval loss against training step, with the baseline   trained runs
             learnability       final eval loss / baseline against the rate at init  2+ trained runs
spectrum.py  spectrum           Lyapunov spectra, and their top exponents by scale   theory.spectrum_k > 0
units.py     units, gates       per state entry; per gate and weight-gradient share  record.units=true
The other figures use each run's first recorded step (initialisation). Shared by them: style.py
(facets, colours, looks), layout.py (panels, axes, legends, lines), output.py (Page, Drawn, save);
harness.lab.pool draws them in forked workers.

To add a figure:
1. a module here (or a function in the module of its kind) opening with a docstring that says what
   it draws, with draw_<kind>(<tables>..., folder) -> Iterator[Page] yielding each page it draws as
   Page(figure, folder / "<kind>", caption) (output.page_path names several pages), the caption
   written from what it drew; it yields nothing when the tables give it nothing to show;
2. one registration line below, where it is to come in the report, and the module in the import
   beside the others: plot_<kind> = register("<kind>", <module>.draw_<kind>, ("<table>", ...)), the
   tables named from TABLES in draw_<kind>'s argument order (it is drawn when it has them all);
3. a test: copy test_seq_len_ticks_are_the_swept_lengths in tests/test_figures.py (its `figures`
   fixture holds each figure saved, and its caption); for an image baseline from the stored tables
   of tests/data/figures/, add its name to KINDS there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import pandas as pd

from harness.core.errors import ConfigError
from harness.core.folders import is_temporary
from harness.core.runfolder import GATES, THEORY_COLUMNS, UNITS
from harness.core.spec import RECORDING
from harness.lab.figures import heatmap, phase, profiles, seq_len, spectrum, training, units
from harness.lab.figures.output import VECTOR, Drawn, Page, save  # Drawn, Page and save for callers too
from harness.lab.figures.style import CELL_COLOURS  # noqa: F401  every figure's cell colours, for callers
from harness.lab.fits import at_first_step, fit_runs, headline, stored_fits
from harness.lab.pool import run_in_processes, workers_for
from harness.lab.summary import repeated_recordings, told_apart
from harness.lab.tables import replace_written
from harness.lab.theory_curves import FILE as MEAN_FIELD

# What a figure may be drawn from; make_figures gives each that exists.
TABLES = {
    "profile": "every run's profile (profile.parquet)",
    "fits": "each run's headline fit at its first step, with its drive and predictions from the summary",
    "flagged": "the ids of the runs whose status carries numerical flags (a set)",
    "summary": "a row per run (summary.parquet)",
    "losses": "the trained runs' eval losses (losses.parquet)",
    "units": "per state entry (units.parquet, record.units=true)",
    "gates": "per gate (gates.parquet, record.units=true)",
    "mean_field": "the mean-field curves of the sweep's lines (mean_field.parquet, harness.lab.theory_curves)",
}
# Of those, the ones read from the sweep folder, only for a figure that has the others it needs
# (harness.plot copies them when it writes a subset of runs elsewhere).
FOLDER_TABLES = {"units": UNITS, "gates": GATES, "mean_field": MEAN_FIELD}


class Figure(NamedTuple):
    """A figure kind: what draws its pages, and the tables they are drawn from."""

    name: str
    draw: Callable[..., Iterable[Page]]
    tables: tuple[str, ...]  # names in TABLES, in draw's arguments' order (the folder follows)
    optional: tuple[str, ...] = ()  # of those, the ones it draws without (given None)

    def __call__(self, *arguments: Any) -> list[Drawn]:
        """Its pages drawn and written (arguments: its tables, then the folder)."""
        # Every page of every figure is written here, by this module's save: a test's spy in its place sees them all.
        return [save(*page) for page in self.draw(*arguments)]


FIGURES: dict[str, Figure] = {}


def register(
    name: str, draw: Callable[..., Iterable[Page]], tables: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Figure:
    """Add a figure kind to FIGURES, after those before it, and return it (to draw it directly)."""
    unknown = set(tables) - set(TABLES) or set(optional) - set(tables)
    if unknown:
        raise ValueError(f"figure {name}: {', '.join(sorted(unknown))}: expected names of TABLES it is drawn from")
    FIGURES[name] = Figure(name, draw, tables, optional)
    return FIGURES[name]


plot_profiles = register("profiles", profiles.draw_profiles, ("profile", "flagged"))
plot_decay_laws = register("profiles_loglog", profiles.draw_decay_laws, ("profile", "fits"))
plot_heatmap = register("heatmap", heatmap.draw_heatmap, ("profile",))
plot_rate_map = register("rate_map", heatmap.draw_rate_map, ("fits",))
plot_phase = register("phase", phase.draw_phase, ("fits", "mean_field"), optional=("mean_field",))
plot_seq_len = register("seq_len", seq_len.draw_seq_len, ("fits",))
plot_layers = register("layers", heatmap.draw_layers, ("profile",))
plot_training_profiles = register(
    "training_profiles", training.draw_training_profiles, ("profile", "summary"), optional=("summary",)
)
plot_losses = register("losses", training.draw_losses, ("losses",))
plot_learnability = register("learnability", training.draw_learnability, ("summary",))
plot_spectrum = register("spectrum", spectrum.draw_spectrum, ("summary",))
plot_units = register("units", units.draw_units, ("units", "summary"))
plot_gates = register("gates", units.draw_gates, ("gates", "profile", "summary"))

# From two figure kinds on, they are drawn in forked workers: a fork costs milliseconds and a figure kind
# 0.1-2 s (on 2 cores, the 18-run quickstart's three kinds take 0.9 s instead of 1.3, a 48-run sweep's
# four 1.15 s instead of 1.8).
PARALLEL_FIGURES = 2


def recordings_named(*frames: pd.DataFrame | None) -> list[pd.DataFrame | None]:
    """The frames (profile first, then summary, ...) with `recording` left where it tells runs apart
    (harness.lab.summary.told_apart, decided on the summary's runs, else the profile's), and a recording
    saved twice under one seed drawn once (repeated_recordings), as summary_by_config pools them: the
    figures pool the same seeds."""
    profile, summary = frames[0], frames[1]
    runs = profile if summary is None else summary
    if RECORDING not in runs:
        return list(frames)
    runs = runs.dropna(subset=["run_id"]).drop_duplicates("run_id")
    again = set(runs.run_id[repeated_recordings(runs)])
    kept = told_apart(runs).set_index("run_id")[RECORDING]
    named = [frame[~frame.run_id.isin(again)] if frame is not None and "run_id" in frame else frame for frame in frames]
    return [
        frame.assign(**{RECORDING: frame.run_id.map(kept)}) if frame is not None and RECORDING in frame else frame
        for frame in named
    ]


def make_figures(
    root: Path,
    profile: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    losses: pd.DataFrame | None = None,
    fits: pd.DataFrame | None = None,
    vector: bool = False,
    workers: int | None = None,
) -> list[Drawn]:
    """Every figure the tables support, under root/figures/; returns what was written (PNG and caption).

    The fits are each run's at its first recorded step: those of `fits` (fit_runs of the profile, as
    collect computed and stored it) where it holds the profile's, else fitted from the profile
    (harness.core.analysis), to the same frame (tested). The summary, when given, marks the runs whose
    status carries numerical flags. The figures are drawn in `workers` processes at once (default: one
    per core where PARALLEL_FIGURES kinds or more are drawn, else this process alone); the files and
    captions do not depend on it (tested).
    """
    folder = Path(root) / "figures"
    if folder.is_symlink():
        raise ConfigError(
            f"{folder}: a symbolic link; figures are never written through links; expected a real folder or none"
        )
    if profile.empty:
        remove_stale(folder, [], vector)
        return []
    profile, summary, losses, fits = recordings_named(profile, summary, losses, fits)
    given = {
        "profile": profile,
        "fits": fits_beside(profile, summary, fits),
        "summary": summary,
        "losses": losses,
        "flagged": set() if summary is None else set(summary.run_id[~summary.status.isin(["ok"])].dropna()),
    }
    jobs = [
        functools.partial(draw_styled, figure, (*tables, folder), vector)
        for figure in FIGURES.values()
        for tables in [tables_for(figure, given, Path(root))]
        if tables is not None
    ]
    workers = workers_for(len(jobs), PARALLEL_FIGURES) if workers is None else workers
    before = set(temporaries(folder))
    try:
        drawn = [drawn for figures in run_in_processes(jobs, workers) for drawn in figures]
    except BaseException:  # an interrupt kills the workers, midway through a page's write for some
        for stale in set(temporaries(folder)) - before:
            stale.unlink(missing_ok=True)
        raise
    remove_stale(folder, drawn, vector)
    return drawn


def remove_stale(folder: Path, drawn: list[Drawn], vector: bool) -> None:
    """Remove the pages (and SVG copies) an earlier drawing into folder wrote and this one did not: a
    figure the runs no longer give, a page fewer, an SVG of a page since drawn as PNG alone. Only pages
    the harness recorded writing (harness.lab.tables.replace_written); any other file stays."""
    pages = {f"{folder.name}/{p.path.name}" for p in drawn}
    pages |= {f"{folder.name}/{p.path.with_suffix('.svg').name}" for p in drawn} if vector else set()
    replace_written(folder.parent, pages, lambda name: name.startswith(f"{folder.name}/"))


def temporaries(folder: Path) -> list[Path]:
    """The temporary files of pages being written in folder (harness.core.runfolder.write_atomic)."""
    return [path for path in folder.glob(".*") if is_temporary(path.name)]


def fits_beside(profile: pd.DataFrame, summary: pd.DataFrame | None, fits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each run's headline fit at its first recorded step, with the drive and the predictions the
    summary stores with the run; read from `fits` (fit_runs of these runs) where it holds them."""
    first = at_first_step(profile)
    stored = None if fits is None else stored_fits(first, at_first_step(fits))
    fits = headline(fit_runs(first) if stored is None else stored)
    beside = [c for c in ("input_drive_var", *THEORY_COLUMNS) if summary is not None and c in summary]
    if beside:
        fits = fits.join(summary.set_index("run_id")[beside], on="run_id")
    return fits


def tables_for(figure: Figure, given: dict[str, Any], root: Path) -> tuple | None:
    """The tables `figure` is drawn from, in its arguments' order, or None where one it needs is missing."""
    if any(given.get(name) is None for name in figure.tables if name not in (*FOLDER_TABLES, *figure.optional)):
        return None
    stored = {name: root / FOLDER_TABLES[name] for name in figure.tables if name in FOLDER_TABLES}
    if not all(path.exists() for name, path in stored.items() if name not in figure.optional):
        return None
    return tuple(
        (pd.read_parquet(stored[name]) if stored[name].exists() else None) if name in stored else given.get(name)
        for name in figure.tables
    )


def draw_styled(figure: Figure, arguments: tuple, vector: bool) -> list[Drawn]:
    """One figure kind's pages, in these figures' style (and nobody else's)."""
    token = VECTOR.set(vector)
    try:
        with plt.rc_context({"font.size": 10, "axes.titlesize": 10}):
            return figure(*arguments)
    finally:
        VECTOR.reset(token)
