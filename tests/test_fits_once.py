"""The table stage fits each run once: collect computes and stores the fits (fits.parquet), and the
figures take them from it (from collect_and_report, and from the sources' stored fits in
harness.plot, filtered as the profile is) instead of fitting every run again, a third of the table
stage at 10^4 runs. The figures get the very frame they would fit themselves; stored fits that are
not the profile's are fitted again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.cli.plot import main as plot_main
from harness.lab import figures as plots
from harness.lab.fits import FITS, fit_runs, read_fits, stored_fits
from harness.lab.rebuild import collect_and_report
from tests.conftest import ROOT
from tests.test_plots import sweep as profiles

SCHEMA0 = ROOT / "tests" / "data" / "schema0_sweep"


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A finished four-run sweep (tests/data/schema0_sweep: stored, so no model runs here)."""
    return Path(shutil.copytree(SCHEMA0, tmp_path / "sweep"))


@pytest.fixture
def used(monkeypatch) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """For each make_figures call: (the fits frame its figures got, the one fitted from its profile as
    before). Fitting inside make_figures raises: its fits must be those it was given."""
    fit, beside = plots.fit_runs, plots.fits_beside
    calls = []

    def refit(profile: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError("make_figures fitted the runs again")

    def spy(profile: pd.DataFrame, summary: pd.DataFrame | None, fits: pd.DataFrame | None = None) -> pd.DataFrame:
        assert fits is not None, "no stored fits given"
        monkeypatch.setattr(plots, "fit_runs", refit)
        frame = beside(profile, summary, fits)
        monkeypatch.setattr(plots, "fit_runs", fit)
        calls.append((frame, beside(profile, summary)))
        return frame

    monkeypatch.setattr(plots, "fits_beside", spy)
    return calls


def test_collect_and_report_draws_from_the_fits_collect_computed(sweep, monkeypatch):
    def refit(profile: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError("make_figures fitted the runs again")

    monkeypatch.setattr(plots, "fit_runs", refit)
    collect_and_report(sweep)
    assert (sweep / FITS).exists() and (sweep / "figures" / "phase.png").exists()


def test_the_figures_get_the_frame_they_would_fit_themselves(sweep, tmp_path, used):
    collect_and_report(sweep)
    assert plot_main([str(sweep)]) == 0  # the stored tables redrawn
    assert plot_main([str(sweep), "--where", "cell=lstm", "--out", str(tmp_path / "lstm")]) == 0
    # The folder plot wrote holds the fits of its runs, as a sweep's does (what fit_runs gives of its profile).
    written = pd.read_parquet(tmp_path / "lstm" / FITS).reset_index(drop=True)
    pd.testing.assert_frame_equal(written, fit_runs(pd.read_parquet(tmp_path / "lstm" / "profile.parquet")))
    # Two sweeps at once, one run in both (read once, from the first).
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, runs in ((first, "012"), (second, "23")):
        folder.mkdir()
        for run in runs:
            shutil.copytree(sweep / run, folder / run)
        collect_and_report(folder)
    assert plot_main([str(second), str(first), "--out", str(tmp_path / "both")]) == 0
    assert [len(frame) for frame, _ in used] == [4, 4, 2, 3, 2, 4]
    for frame, fitted in used:
        pd.testing.assert_frame_equal(frame, fitted, check_exact=True)


def test_stored_fits_give_what_fit_runs_gives_of_a_trained_sweep():
    profile = profiles(cell=["rnn", "lstm"], scale=[0.5, 2.0], num_layers=[2])
    trained = pd.concat([profile.assign(step=50, log10_norm=profile.log10_norm / 2), profile], ignore_index=True)
    trained = trained.sample(frac=1, random_state=0)  # a run's steps and rows in any order
    summary = trained.drop_duplicates("run_id")[["run_id", "cell", "scale"]].assign(status="ok", input_drive_var=1.0)
    fits = fit_runs(trained)
    pd.testing.assert_frame_equal(stored_fits(trained, fits), fits, check_exact=True)
    pd.testing.assert_frame_equal(
        plots.fits_beside(trained, summary, fits), plots.fits_beside(trained, summary), check_exact=True
    )


def test_stored_fits_that_are_not_the_profiles_are_fitted_again(sweep, tmp_path, capsys):
    collect_and_report(sweep)
    profile, fits = pd.read_parquet(sweep / "profile.parquet"), read_fits(sweep)
    assert stored_fits(profile, fits) is not None
    assert stored_fits(profile, fits[fits.run_id != fits.run_id.iloc[0]]) is None  # a run missing
    assert stored_fits(profile, fits[::-1]) is None  # another order
    assert stored_fits(profile, fits.drop(columns="horizon")) is None  # an older analysis' columns
    (sweep / FITS).write_bytes((sweep / FITS).read_bytes()[:100])
    assert read_fits(sweep) is None
    assert plot_main([str(sweep), "--out", str(tmp_path / "again")]) == 0  # fitted again, and drawn
    assert (tmp_path / "again" / "figures" / "phase.png").exists()
