"""collect and harness.plot on folders the harness wrote but that are not as expected: two folders of one
run id, runs the manifest names that never ran, damaged sweep tables, meta.json with wrong types, and a
--where value of the wrong type. Each is a row, a line or an exit status, never a traceback."""

import json
import shutil

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from harness.cli.collect import main as collect_main
from harness.cli.paths import CONF_DIR
from harness.cli.plot import main as plot_main
from harness.core.spec import run_id
from harness.lab import results
from harness.lab import run as run_module
from harness.lab.results import collect

KEYS = ["run_id", "layer", "state", "t", "step"]
SETTINGS = ["seq_len=6", "hidden_size=3", "input_size=2", "batch_size=2", "cell=lstm", "record.units=true"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A finished two-run sweep folder as Hydra leaves it (record.units=true: units and gates too)."""
    sweep = tmp_path_factory.mktemp("built")
    for num, scale in enumerate(["1.0", "0.5"]):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*SETTINGS, f"scale={scale}"])
        run_module.run(cfg, sweep / str(num))
        (sweep / str(num) / ".hydra").mkdir()
    return sweep


@pytest.fixture
def detailed(built, tmp_path):
    """A copy of built, units and gates tables included."""
    out = tmp_path / "sweep"
    shutil.copytree(built, out)
    return out


@pytest.fixture
def sweep(detailed):
    """A copy of built without its units and gates tables: fewer figures to draw."""
    for table in [*detailed.glob("*/units.parquet"), *detailed.glob("*/gates.parquet")]:
        table.unlink()
    return detailed


def ids(sweep):
    return [json.loads((sweep / n / "meta.json").read_text())["run_id"] for n in "01"]


def test_a_run_folder_holding_another_run_is_refused_and_left_as_it_was(sweep, capsys):
    """collect of a run folder with a run copied inside it wrote the two runs' profile over the outer
    run's own (its DONE no longer vouching for it), then failed with a traceback on the next collect."""
    outer = sweep / "0"
    shutil.copytree(sweep / "1", outer / "inner")
    before = {p: p.read_bytes() for p in outer.rglob("*") if p.is_file()}
    for command in (collect_main, plot_main):
        assert command([str(outer)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and "a run folder with other run folders inside it (inner)" in error
    assert {p: p.read_bytes() for p in outer.rglob("*") if p.is_file()} == before


def test_a_profile_holding_another_runs_rows_is_damaged_not_filed_under_this_run(sweep, capsys):
    """A run's profile.parquet replaced by another run's (as the sweep's table once overwrote a run's
    own): its rows would have gone under this run's settings, and the figures failed with a traceback."""
    first, second = ids(sweep)
    shutil.copy(sweep / "1" / "profile.parquet", sweep / "0" / "profile.parquet")
    assert collect_main([str(sweep)]) == 1
    assert (
        f"  damaged: 0 (ValueError: profile.parquet holds rows of other runs ({second}), not only this run's {first})"
        in (capsys.readouterr().out)
    )
    profile = pd.read_parquet(sweep / "profile.parquet")
    assert set(profile.run_id) == {second} and (profile.scale == 0.5).all()  # run 1's rows, once, as run 1's


@pytest.mark.slow  # collected and drawn three times, units and gates included
def test_two_folders_of_one_run_id_are_read_once_and_the_second_is_a_duplicate(detailed, capsys):
    sweep = detailed
    shutil.copytree(sweep / "0", sweep / "2")  # a grid that named one point twice (scale=1,1.0)
    profile, summary, _ = collect(sweep)
    assert summary.run_dir.tolist() == ["0", "1", "2"]
    assert summary.status.tolist() == ["ok", "ok", "duplicate"] and summary.run_id[2] == summary.run_id[0]
    assert "also in 0" in summary.error[2]
    assert not profile.duplicated(KEYS).any()
    fits = pd.read_parquet(sweep / "fits.parquet")
    assert not fits.duplicated(["run_id", "layer", "state", "step"]).any()
    for name in ("units.parquet", "gates.parquet"):
        table = pd.read_parquet(sweep / name)
        assert len(table) == sum(len(pd.read_parquet(sweep / n / name)) for n in "01")
    assert collect_main([str(sweep)]) == 0 and "duplicate: 2" in capsys.readouterr().out
    assert plot_main([str(sweep)]) == 0


def test_a_sweep_stopped_before_any_run_finished_is_named_as_such(tmp_path, capsys):
    """An interrupt before the first run finished leaves the manifest alone (the runs' files removed):
    collect and plot say what the folder is and what to do, in one line (it read 'no run folders in it;
    expected a sweep or run folder')."""
    (tmp_path / "sweep.json").write_text(json.dumps({"run_ids": ["0123456789ab", "ba9876543210"], "runs": []}))
    for main in (collect_main, plot_main):
        assert main([str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "a sweep none of whose 2 runs finished" in err
        assert "run its command again" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]


def test_runs_the_manifest_names_without_a_finished_folder_are_listed_as_not_run(sweep, capsys):
    first, second = ids(sweep)
    runs = [
        {"run_id": first, "subdir": "0", "overrides": ["scale=1.0"]},
        {"run_id": second, "subdir": "1", "overrides": ["scale=0.5"]},
        {"run_id": "0123456789ab", "subdir": "2", "overrides": ["scale=2.0", "seq_len=6"]},
        {"run_id": "ba9876543210", "subdir": "3", "overrides": ["scale=3.0"]},
    ]
    (sweep / "sweep.json").write_text(
        json.dumps({"run_ids": [r["run_id"] for r in runs], "invocations": [], "runs": runs})
    )
    (sweep / "3").mkdir()
    (sweep / "3" / "harness.log").write_text("")  # started, never got to write .hydra/ or DONE
    _, summary, _ = collect(sweep)
    missing = summary[summary.status == "not_run"]
    assert missing.run_id.tolist() == ["0123456789ab", "ba9876543210"] and missing.run_dir.tolist() == ["2", "3"]
    assert missing.error.tolist() == ["scale=2.0 seq_len=6", "scale=3.0"]
    # their overrides' settings, typed as a run's: the report counts them as swept (scale took 4 values;
    # it said "Held fixed: scale=1.0" or so when only some runs had finished)
    assert missing.scale.tolist() == [2.0, 3.0] and missing.seq_len.tolist() == [6, pd.NA]
    assert str(summary.seq_len.dtype) in ("int64", "Int64")
    assert collect_main([str(sweep)]) == 1
    assert "not_run: 2 (scale=2.0 seq_len=6)" in capsys.readouterr().out
    report = (sweep / "report.html").read_text()
    assert "<b>Swept:</b> scale (4 values)" in report and "scale=1.0" not in report.split("Held fixed")[1]
    assert plot_main([str(sweep)]) == 0

    # An older manifest names only the ids: those no folder holds are listed, without a folder.
    (sweep / "sweep.json").write_text(json.dumps({"run_ids": [first, second, "0123456789ab"]}))
    summary = collect(sweep)[1]
    assert summary[summary.status == "not_run"].run_id.tolist() == ["0123456789ab"]
    assert summary[summary.status == "not_run"].run_dir.tolist() == [""]

    # No manifest (or one that cannot be read): the run folders alone.
    (sweep / "sweep.json").write_text("{ truncated")
    assert collect(sweep)[1].status.tolist() == ["ok", "ok"]
    (sweep / "sweep.json").unlink()
    assert collect(sweep)[1].status.tolist() == ["ok", "ok"]


@pytest.mark.parametrize(
    "name",
    [
        "units.parquet",
        "gates.parquet",
        pytest.param("summary.parquet", marks=pytest.mark.slow),
        pytest.param("profile.parquet", marks=pytest.mark.slow),
    ],
)  # slow: every table again
def test_a_damaged_sweep_table_is_rebuilt_with_one_line(detailed, capsys, name):
    sweep = detailed
    collect(sweep)
    table = sweep / name
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])  # a half-written table
    assert plot_main([str(sweep)]) == 0
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and name in err and "Traceback" not in err
    assert len(pd.read_parquet(table)) > 0  # rebuilt from the run folders


def test_a_damaged_sweep_table_no_run_gives_is_left_out_with_one_line(detailed, capsys):
    sweep = detailed
    collect(sweep)
    for n in "01":
        (sweep / n / "units.parquet").unlink()  # the runs no longer give it: the sweep's copy is all there was
    (sweep / "units.parquet").write_bytes(b"garbage")
    assert plot_main([str(sweep)]) == 0
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "units.parquet" in err
    assert collect_main([str(sweep)]) == 0


@pytest.mark.parametrize(
    "edit, reason",
    [
        ({"columns": {"scale": "abc"}}, "meta.json: scale=abc: expected a finite number"),
        ({"status": 5}, "meta.json: status 5 is not one of ok, failed, not_applicable"),
        ({"status": "fine"}, "meta.json: status fine is not one of ok, failed, not_applicable"),
        ({"run_id": 7}, "meta.json: run_id 7 is not a string"),
        ({"columns": {"seq_len": 99}}, "meta.json: its columns do not give its run_id"),
        ({"columns": ["scale"]}, "meta.json: columns is not a mapping"),
    ],
)
def test_meta_json_with_wrong_types_or_another_run_is_a_damaged_row(sweep, capsys, edit, reason):
    path = sweep / "1" / "meta.json"
    meta = json.loads(path.read_text())
    for key, value in edit.items():
        meta[key] = {**meta[key], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(meta))
    summary = collect(sweep)[1]
    assert summary.status.tolist() == ["ok", "damaged"] and summary.error[1].startswith(reason)
    assert collect_main([str(sweep)]) == 1 and plot_main([str(sweep)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_every_status_a_run_writes_is_accepted(sweep):
    path = sweep / "1" / "meta.json"
    meta = json.loads(path.read_text())
    for status in ["ok", "failed", "not_applicable", "diverged,zero", "nan,overflow,underflow"]:
        path.write_text(json.dumps({**meta, "status": status}))
        assert collect(sweep)[1].status.tolist() == ["ok", status]


def test_where_a_number_is_expected_but_not_given_is_one_line(sweep, tmp_path, capsys):
    collect(sweep)
    assert plot_main([str(sweep), "--where", "scale=abc", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --where scale=abc: ") and len(err.splitlines()) == 1
    assert plot_main([str(sweep), "--where", "scale=0.5,1", "--out", str(tmp_path / "y")]) == 0
    # an empty value names the values the key takes (it listed every column of the summary)
    for item in ("cell=", "cell=rnn,"):
        assert plot_main([str(sweep), "--where", item, "--out", str(tmp_path / "z")]) == 2
        err = capsys.readouterr().err
        assert err == f"error: --where {item}: an empty value of cell; expected cell=VALUE[,VALUE...] of lstm\n"


def as_another_run(folder, **columns) -> None:
    """Make the run folder a run of other settings (meta.json's columns and run id, its profile's run id)."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["columns"] = {**meta["columns"], **columns}
    meta["run_id"] = run_id(meta["columns"])
    (folder / "meta.json").write_text(json.dumps(meta))
    profile = pd.read_parquet(folder / "profile.parquet")
    profile["run_id"] = meta["run_id"]
    profile.to_parquet(folder / "profile.parquet")


@pytest.mark.parametrize("parallel", [False, True], ids=["in process", "two workers"])
def test_the_sweeps_profile_is_its_runs_own_profiles_whatever_runs_drop_out(sweep, monkeypatch, parallel):
    """Each row of the sweep's profile carries its own run's settings, taken by the run's position among
    the rows read: with a duplicate and a run whose profile cannot be read between two good runs, the
    positions shift, and a row filed under the wrong run would show here; read in this process and in
    two forked workers (each a part of the runs). The reference: the runs' own profile.parquet, written
    by each run with its settings in every row."""
    if parallel:
        monkeypatch.setattr(results, "PARALLEL_RUNS", 1)
    shutil.copytree(sweep / "0", sweep / "00")  # after 0 (the same number, a longer name): the duplicate
    shutil.copytree(sweep / "0", sweep / "01")
    as_another_run(sweep / "01", seed=7)  # a run of its own, read between 00 and 1
    (sweep / "01" / "profile.parquet").write_bytes(b"not a parquet file")  # its meta.json is sound
    profile, summary, _ = collect(sweep)
    assert dict(zip(summary.run_dir, summary.status)) == {"0": "ok", "00": "duplicate", "01": "damaged", "1": "ok"}
    assert summary.error[2].startswith("ArrowInvalid")  # dropped out reading profiles, not reading meta.json
    expected = pd.concat([pd.read_parquet(sweep / n / "profile.parquet") for n in "01"], ignore_index=True)
    pd.testing.assert_frame_equal(profile, expected)


TABLES = ["summary", "profile", "fits", "summary_by_config"]


def test_a_user_cells_arguments_are_columns_of_their_type_beside_runs_without_them(sweep):
    """A sweep of lstm and a user cell whose arguments are a whole number and true: the user cell's runs
    were once all damaged (meta.json's true taken for a wrong type), its whole number became 3.0 in the
    summary and summary_by_config (a gap where lstm has none), and true was an object, no mask, in the
    profile, fits and summary_by_config. Both columns keep their type in every table, a gap for lstm."""
    as_another_run(sweep / "1", cell="Flagged", **{"cell._target_": "my_cells.Flagged"})
    as_another_run(sweep / "1", **{"cell.kwargs.units": 3, "cell.kwargs.flag": True})
    profile, summary, _ = collect(sweep)
    assert summary.status.tolist() == ["ok", "ok"] and plot_main([str(sweep)]) == 0  # summary_by_config too
    tables = [summary, profile, *(pd.read_parquet(sweep / f"{name}.parquet") for name in TABLES)]
    for name, table in zip(["summary frame", "profile frame", *TABLES], tables):
        arguments = table[["cell.kwargs.units", "cell.kwargs.flag"]]
        assert arguments.dtypes.astype(str).tolist() == ["Int64", "boolean"], name
        assert arguments[table.cell == "Flagged"].drop_duplicates().values.tolist() == [[3, True]], name
        assert arguments[table.cell == "lstm"].isna().all().all(), name
        assert len(table[table["cell.kwargs.flag"].fillna(False)]) == (table.cell == "Flagged").sum(), name  # a mask
    assert pd.read_csv(sweep / "summary.csv")["cell.kwargs.units"].dropna().tolist() == [3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished sweep folder of two trained runs (the adding task) as Hydra leaves it."""
    sweep = tmp_path_factory.mktemp("trained")
    for seed in (0, 1):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*TRAINED, f"seed={seed}"])
        run_module.run(cfg, sweep / str(seed))
        (sweep / str(seed) / ".hydra").mkdir()
    return sweep


TRAINED = ["task=adding", "train.steps=2", "train.record_every=1", "seq_len=6", "hidden_size=3", "batch_size=2"]


def test_a_runs_loss_table_that_cannot_be_read_is_left_out_with_one_line(trained, tmp_path, capsys):
    """It ended collect and harness.plot in a traceback; a units or gates table that cannot be read was
    already one line on stderr, the run's other tables kept."""
    sweep = tmp_path / "sweep"
    shutil.copytree(trained, sweep)
    (sweep / "1" / "losses.parquet").write_bytes(b"not a parquet file")
    for command in (collect_main, plot_main):
        assert command([str(sweep)]) == 0
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"{sweep / '1' / 'losses.parquet'}: cannot be read (ArrowInvalid); left out of the sweep's table"
        ]
    losses = pd.read_parquet(sweep / "losses.parquet")
    assert losses.seed.unique().tolist() == [0] and len(losses) == len(
        pd.read_parquet(trained / "0" / "losses.parquet")
    )


def test_a_folder_harness_plot_wrote_elsewhere_is_plotted_again_with_its_losses(trained, tmp_path):
    """harness.plot --out wrote every table the figures read but the losses: plotted again from there
    (no run folders to read them from), the losses figure was gone."""
    sweep, out, again = tmp_path / "sweep", tmp_path / "out", tmp_path / "again"
    shutil.copytree(trained, sweep)
    assert plot_main([str(sweep), "--where", "seed=0,1", "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "losses.parquet"), pd.read_parquet(sweep / "losses.parquet"))
    assert plot_main([str(out), "--out", str(again)]) == 0
    drawn = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "losses.png" in drawn and sorted(p.name for p in (again / "figures").glob("*.png")) == drawn


def test_a_user_cells_argument_of_two_kinds_is_written_as_text(sweep):
    """2 in one run and "abc" in another: pyarrow refused the column, so the sweep's tables could not be
    written, at its end or by collect (a traceback), ever. Such a column is held as text in the files."""
    user_cell = {"cell": "Mine", "cell._target_": "my_cells.Mine"}
    as_another_run(sweep / "0", **user_cell, **{"cell.kwargs.k": 2})
    as_another_run(sweep / "1", **user_cell, **{"cell.kwargs.k": "abc"})
    assert collect_main([str(sweep)]) == 0 and plot_main([str(sweep)]) == 0
    for name in ("summary.parquet", "profile.parquet", "fits.parquet", "summary_by_config.parquet"):
        table = pd.read_parquet(sweep / name)
        assert sorted(table["cell.kwargs.k"].unique()) == ["2", "abc"], name
    assert pd.read_parquet(sweep / "summary.parquet").status.tolist() == ["ok", "ok"]


def test_a_finished_runs_profile_lost_since_is_a_damaged_row(detailed, capsys):
    """Its DONE lists profile.parquet: without it the run was an ok row with no rate and no word of why.
    A run that wrote no profile (DONE lists none) stays what its meta.json says."""
    (detailed / "1" / "profile.parquet").unlink()
    profile, summary, _ = collect(detailed)
    assert summary.status.tolist() == ["ok", "damaged"] and summary.error[1] == "profile.parquet is missing"
    assert summary.seq_len.tolist() == [6, 6] and profile.run_id.unique().tolist() == [ids(detailed)[0]]
    assert collect_main([str(detailed)]) == 1
    assert "Traceback" not in capsys.readouterr().err
    done = json.loads((detailed / "1" / "DONE").read_text())
    del done["files"]["profile.parquet"]
    (detailed / "1" / "DONE").write_text(json.dumps(done))
    assert collect(detailed)[1].status.tolist() == ["ok", "ok"]


def test_solved_is_true_or_false_or_none_whatever_rows_are_damaged(sweep, tmp_path, capsys):
    """An untrained sweep's solved was objects (all None), or numbers (NaN) once a row was damaged,
    so that --where solved=false was refused as 'solved is a number'."""
    for damage in (None, "meta.json"):
        if damage:
            (sweep / "1" / damage).write_text("{")
        summary = collect(sweep)[1]
        assert str(summary.solved.dtype) == "boolean" and summary.solved.isna().all()
        assert str(pd.read_parquet(sweep / "summary.parquet").solved.dtype) == "boolean"
        assert plot_main([str(sweep), "--where", "solved=false", "--out", str(tmp_path / str(damage))]) == 2
        assert capsys.readouterr().err.startswith("error: --where solved=false: no runs left to plot")


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("text", "profile.parquet: its log10_norm column holds large_string"),
        ("no t", "profile.parquet has no t column"),
        ("no median", "profile.parquet has no log10_norm column"),
        ("no rows", "profile.parquet has no rows"),
        ("no run_id", "profile.parquet has no run_id column"),  # it read "holds rows of other runs (None)"
    ],
)
def test_a_profile_that_reads_but_is_not_what_a_run_writes_is_a_damaged_row(sweep, capsys, damage, reason):
    """A profile of another shape ended collect and plot in a traceback (pyarrow could not join it to
    the others), or, empty or without its median, left the run ok with no rate and no word of why."""
    path = sweep / "1" / "profile.parquet"
    profile = pd.read_parquet(path)
    edited = {
        "text": lambda p: p.assign(log10_norm=p.log10_norm.astype(str)),
        "no t": lambda p: p.drop(columns=["t", "lag"]),
        "no median": lambda p: p.drop(columns=["log10_norm"]),
        "no rows": lambda p: p.iloc[:0],
        "no run_id": lambda p: p.drop(columns=["run_id"]),
    }[damage](profile)
    edited.to_parquet(path)
    summary = collect(sweep)[1]
    assert summary.status.tolist() == ["ok", "damaged"] and reason in summary.error[1]
    assert collect_main([str(sweep)]) == 1 and plot_main([str(sweep)]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("edit", [lambda meta: [1, 2], lambda meta: {**meta, "git_commit": [1]}])
def test_a_meta_json_of_another_shape_never_ends_the_report_in_a_traceback(sweep, capsys, edit):
    """The report reads each run's git commit from meta.json: a list there, or a commit that is no
    string, ended collect and plot in AttributeError or TypeError."""
    path = sweep / "1" / "meta.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    assert collect_main([str(sweep)]) in (0, 1) and plot_main([str(sweep)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_sweep_whose_every_profile_is_damaged_keeps_no_table_or_figure_of_before(sweep, capsys):
    """Every profile unreadable: plot ended in AttributeError (a summary without run_id), and collect
    left the fits, summary_by_config and figures of the runs as they were before, beside a summary of
    damaged runs. A file of the user's in figures/ stays."""
    assert collect_main([str(sweep)]) == 0
    drawn = sweep / "figures"
    assert (sweep / "fits.parquet").exists() and (sweep / "summary_by_config.parquet").exists()
    assert any(drawn.glob("*.png"))
    (drawn / "mine.txt").write_text("mine")
    for run in "01":
        (sweep / run / "profile.parquet").write_bytes(b"junk")
    assert collect_main([str(sweep)]) == 1
    assert plot_main([str(sweep)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    left = {"fits.parquet", "summary_by_config.parquet", "summary_by_config.csv"} & {p.name for p in sweep.iterdir()}
    assert not left and sorted(p.name for p in drawn.iterdir()) == ["mine.txt"]


def test_fewer_runs_plotted_into_the_same_out_leave_no_page_or_table_of_the_others(sweep, tmp_path):
    """--out drawn again with a narrower --where: the pages of figures the kept runs no longer give
    (and SVG copies of pages since redrawn as PNG alone) stayed beside the new ones."""
    out = tmp_path / "out"
    assert plot_main([str(sweep), "--where", "scale=0.5,1.0", "--out", str(out), "--svg"]) == 0
    before = {p.name for p in (out / "figures").iterdir()}
    assert {"heatmap.png", "heatmap.svg", "profiles.svg"} <= before  # scale varies: a heatmap
    (out / "figures" / "mine.txt").write_text("mine")
    assert plot_main([str(sweep), "--where", "scale=0.5", "--out", str(out)]) == 0
    # one run: its profiles alone (heatmap and phase need scale to vary), and the user's file
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["mine.txt", "profiles.png"]
    assert pd.read_parquet(out / "summary_by_config.parquet").scale.tolist() == [0.5]


def test_figures_drawn_from_python_into_a_folder_of_the_users_remove_none_of_its_files(sweep, tmp_path):
    """make_figures into a folder the harness did not make: a page it does not draw there is left."""
    from harness.lab.figures import make_figures

    profile, summary, _ = collect(sweep)
    first = summary.run_id[0]
    mine = tmp_path / "mine" / "figures"
    mine.mkdir(parents=True)
    (mine / "heatmap.png").write_text("mine")
    drawn = make_figures(mine.parent, profile[profile.run_id == first], summary[summary.run_id == first])
    assert [page.path.name for page in drawn] == ["profiles.png"]  # one run: no heatmap of its own
    assert (mine / "heatmap.png").read_text() == "mine"


def test_tables_and_pages_the_harness_did_not_write_are_never_removed(sweep, tmp_path):
    """Only what collect and plot recorded writing is removed when they no longer write it: a Hydra
    app's output folder of the user's (its .hydra/ makes it look like a run) kept its own fits.parquet
    only until the first collect; pages of the user's named like the harness's stay in figures/."""
    app = tmp_path / "app"
    (app / ".hydra").mkdir(parents=True)
    (app / ".hydra" / "config.yaml").write_text("lr: 1\n")
    theirs = ["fits.parquet", "spectrum.parquet", "summary_by_config.csv", "losses.parquet"]
    for name in theirs:
        (app / name).write_text("mine")
    assert collect_main([str(app)]) == 1  # one incomplete run
    assert all((app / name).read_text() == "mine" for name in theirs)
    assert collect_main([str(sweep)]) == 0
    pages = ["phase_2.svg", "heatmap_3.png", "profiles.svg"]
    for name in pages:
        (sweep / "figures" / name).write_text("mine")
    assert collect_main([str(sweep)]) == 0
    assert all((sweep / "figures" / name).read_text() == "mine" for name in pages)


def test_a_run_that_never_ran_has_the_settings_its_overrides_name_as_hydra_reads_them():
    """++key and a user cell's arguments were left out (the report said a swept seed was held fixed),
    and values were read as YAML 1.1 (scale=1e-1 a word, seq_len=010 eight)."""
    lines = ["++seed=2", "+scale=1e-1", "seq_len=010", "cell.kwargs.leak=0.2", "cell.kwargs.mode='tanh'"]
    lines += ["record.units=true", "name=yes", "~hidden_size", "hydra.job.chdir=true", "batch_size=abc"]
    assert results.override_settings(lines) == {
        "seed": 2,
        "scale": 0.1,
        "seq_len": 10,
        "cell.kwargs.leak": 0.2,
        "cell.kwargs.mode": "tanh",
        "record.units": True,
        "name": "yes",
    }
