"""Tables, figures and report rebuilt from stored run folders, with no model run: what
`python -m harness.collect` and `python -m harness.plot` do (harness.cli holds only their command
lines), and the table stage at the end of every sweep.

    collect_and_report(root)                 a sweep's tables, figures and report from its run folders
    plot(folders, out, where)                the same from one or more sweeps' stored tables, filtered
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.core.errors import ConfigError
from harness.core.folders import check_rebuild, check_target, claim, is_run_folder
from harness.core.runfolder import LOSSES, PROFILE
from harness.lab.figures import FOLDER_TABLES, make_figures
from harness.lab.fits import FITS, KEYS, read_fits
from harness.lab.report import write_report
from harness.lab.results import (
    collect,
    collect_losses,
    concatenated,
    find_runs,
    read_table,
    readable,
    write_summary,
)
from harness.lab.tables import write_or_remove, write_parquet
from harness.lab.theory_curves import FILE as MEAN_FIELD

ATTENTION = ["failed", "incomplete", "damaged", "skipped", "not_run"]  # listed after the summary line; exit 1
NOTED = ["duplicate"]  # listed too, but its run was read from another folder


def collect_and_report(
    root: Path,
    command: str | None = None,
    question: str | None = None,
    curves: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Write root's tables, figures and report, print where they are and which runs need attention.
    command, question: what made the sweep and what its experiment asks, for the report. curves: the
    sweep's end computes the mean-field curves from the summary (harness.lab.theory_curves, which needs
    the networks); without it, the phase figure draws those stored in root, if any."""
    profile, summary, losses = collect(root)
    if curves is not None:
        table = curves(summary[summary.status != "duplicate"])
        if not table.empty:
            write_parquet(table, root / MEAN_FIELD)
    # The fits collect computed, read back from its fits.parquet (it returns none): not fitted again.
    fits = read_fits(root)
    figures = make_figures(root, profile, summary[summary.status != "duplicate"], losses, fits)  # a run once
    report = write_report(root, summary, figures, source=root, command=command, question=question)
    counts = summary.status.value_counts().to_dict()
    print(f"{root}: {len(summary)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())})")
    tables = [root / "summary.csv", root / PROFILE]
    written = {
        "tables": ", ".join(map(str, tables)) if all(p.exists() for p in tables) else "",
        "figures": root / "figures" if figures else "",
        "report": report,
    }
    print("; ".join(f"{what}: {where}" for what, where in written.items() if where))
    name_runs(summary[summary.status.isin(ATTENTION + NOTED)])
    return summary


def name_runs(rows: pd.DataFrame, folders: pd.Series | None = None) -> None:
    """A line per run that needs attention: its status, its folder (under the sweep folder its row's
    entry in `folders` names, where given) and what is wrong."""
    for row in rows.itertuples():
        error = getattr(row, "error", None)
        where = row.run_dir if folders is None else Path(folders[row.Index]) / str(row.run_dir)
        print(f"  {row.status}: {where}" + (f" ({error})" if isinstance(error, str) and error else ""))


def stored_losses(folder: Path, summary: pd.DataFrame) -> pd.DataFrame:
    """The runs' loss tables from their folders, or, in a folder without run folders (written by
    harness.plot --out), its own losses.parquet."""
    losses = collect_losses(folder, summary)
    stored = read_table(folder / LOSSES) if losses.empty else None  # None: none, or unreadable (said)
    return losses if stored is None else stored


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A folder's (profile, summary, losses): the stored aggregates, or collected from its run folders
    when there are none or they cannot be read (a damaged table is rebuilt, or left out where no run
    folder gives it again, and one line says so). A duplicate folder's row is left out: its run is the
    row of the folder it names (harness.lab.results)."""

    def first(profile: pd.DataFrame, summary: pd.DataFrame, losses: pd.DataFrame) -> tuple:
        return profile, summary[summary.status != "duplicate"] if "status" in summary else summary, losses

    if not ((folder / PROFILE).exists() and (folder / "summary.parquet").exists()):
        return first(*collect(folder))
    stored = {}
    for name in (PROFILE, "summary.parquet"):
        try:
            stored[name] = pd.read_parquet(folder / name)
        except Exception as error:  # noqa: BLE001  a truncated or garbage table: rebuild it
            print(
                f"{folder}: its tables cannot be read ({type(error).__name__}); rebuilding them from the run "
                f"folders ({name} is damaged)",
                file=sys.stderr,
            )
            return first(*collect(folder))
    damaged = [
        folder / name for name in FOLDER_TABLES.values() if (folder / name).exists() and not readable(folder / name)
    ]
    if not damaged:
        return first(stored[PROFILE], stored["summary.parquet"], stored_losses(folder, stored["summary.parquet"]))
    tables = collect(folder)  # one it cannot give again it removes, and says so
    for path in damaged:
        if path.exists():
            print(f"{path}: cannot be read; rebuilt from the run folders", file=sys.stderr)
    return first(*tables)


TRUTH = {"true": True, "false": False, "1": True, "0": False}  # --where's words for a true/false column


def keep(frame: pd.DataFrame, key: str, values: list[str]) -> pd.Series:
    """Rows whose `key` is one of `values` (true/false and numbers compared as such)."""
    column = frame[key]
    if pd.api.types.is_bool_dtype(column):  # a gap (pd.NA) is no value: kept by none
        return column.isin([TRUTH[value.lower()] for value in values]).astype(bool)
    if pd.api.types.is_numeric_dtype(column):
        return column.isin([float(v) for v in values])
    return column.astype(str).isin(values)


def parse_where(items: list[str], frame: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """--where's (key, values); raise ConfigError on a key the summary lacks or a value its column cannot
    hold (a word for a number)."""
    filters = []
    for item in items:
        key, _, values = item.partition("=")
        if key in frame and not all(values.split(",")):  # cell= or cell=rnn,
            taken = list(map(str, frame[key].dropna().unique()))
            listed = ", ".join(taken[:8]) + (", ..." if len(taken) > 8 else "")
            raise ConfigError(f"--where {item}: an empty value of {key}; expected {key}=VALUE[,VALUE...] of {listed}")
        if key not in frame:
            raise ConfigError(
                f"--where {item}: expected KEY=VALUE[,VALUE...] with KEY one of "
                f"{', '.join(c for c in frame.columns if not c.startswith('log10'))}"
            )
        if pd.api.types.is_bool_dtype(frame[key]):
            for value in values.split(","):
                if value.lower() not in TRUTH:
                    raise ConfigError(
                        f"--where {item}: {key} is true or false; {value} is neither (expected true, false, 1 or 0)"
                    )
        elif pd.api.types.is_numeric_dtype(frame[key]):
            for value in values.split(","):
                try:
                    float(value)
                except ValueError:
                    raise ConfigError(f"--where {item}: {key} is a number; {value} is not") from None
        filters.append((key, values.split(",")))
    return filters


def check_out(folders: list[Path], out: Path | None, filtered: bool) -> None:
    """Where the figures and tables may go (raise ConfigError): never inside a run folder (its own
    profile.parquet would be replaced by the sweep's) unless it is that one run redrawn; the source
    folder only when the output is all of it (a subset or a union would replace its tables); any
    other folder only if it is new, empty or the harness's, and holds no runs (their tables would be
    replaced by other runs'). Paths are compared as the file system resolves them, whatever their
    spelling. (A linked figures/ is refused where figures are drawn.)"""
    target = Path(os.path.realpath(out or folders[0]))
    sources = {Path(os.path.realpath(folder)) for folder in folders}
    redrawn = target in sources and not filtered
    run = next((p for p in [target, *target.parents] if is_run_folder(p)), None)
    if run is not None and not (redrawn and run == target):
        raise ConfigError(
            f"--out {out}: inside the run folder {run}, whose own files it would replace; expected a "
            "folder outside any run"
        )
    if target in sources and filtered:
        raise ConfigError(
            f"--out {out}: the source folder {target}, whose tables a subset or union would replace; "
            "expected a folder of its own"
        )
    if redrawn:
        check_rebuild(target)
        return
    check_target("--out", out, kind="plot")
    held = find_runs(target) if target.is_dir() else []
    if held:
        raise ConfigError(
            f"--out {out}: holds runs of its own ({held[0].relative_to(target)}/"
            f"{f' and {len(held) - 1} more' if len(held) > 1 else ''}), whose tables these would replace; "
            "expected a folder of its own"
        )


def plot(
    folders: list[Path],
    out: Path,
    where: list[str],
    vector: bool = False,
    command: str | None = None,
    question: str | None = None,
) -> int:
    """Figures, tables and report of the runs in folders (filtered by where) into out; command and
    question (what made the one source sweep, what its experiment asks) go to the report. The runs
    that need attention (failed, incomplete, damaged, skipped, not_run) are named after the files
    written, as collect names them: those the filter keeps, and those whose settings are unknown."""
    profiles, summaries, losses = zip(*(load(folder) for folder in folders))
    # One configuration in two sweeps is one run (its numbers are determined by its config).
    summary = concatenated(summaries)
    sources = pd.Series([str(folder) for folder, rows in zip(folders, summaries) for _ in range(len(rows))])
    again = summary.run_id.duplicated() & summary.run_id.notna()  # damaged folders have no id
    summary = summary[~again]
    profile = concatenated(profiles)
    if profile.empty:  # no run's profile could be read: a table without columns
        profile = pd.DataFrame(columns=["run_id"])
    profile = profile[profile.run_id.isin(summary.run_id)]
    profile = profile.drop_duplicates([c for c in ("run_id", "step", "layer", "state", "t") if c in profile])
    kept, unknown = pd.Series(True, index=summary.index), pd.Series(False, index=summary.index)
    for key, values in parse_where(where, summary):
        kept &= keep(summary, key, values)
        unknown |= summary[key].isna()
    attention = summary[(kept | unknown) & summary.status.isin(ATTENTION)] if "status" in summary else summary[:0]
    summary = summary[kept]
    profile = profile[profile.run_id.isin(summary.run_id)]
    if summary.empty:
        raise ConfigError(f"--where {' '.join(where)}: no runs left to plot")
    claim(out)  # checked by check_out: new, empty, the harness's, or the source rebuilt
    elsewhere = Path(os.path.realpath(out)) not in {Path(os.path.realpath(folder)) for folder in folders}
    if elsewhere:
        write_parquet(profile, out / PROFILE)
        write_summary(summary, out)
        for name in FOLDER_TABLES.values():  # the tables figures read from the folder: the kept runs' rows
            tables = [table for folder in folders for table in [read_table(folder / name)] if table is not None]
            table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
            # a table of the sweep's lines (mean_field.parquet) is kept whole, each line's curve once
            table = table[table.run_id.isin(summary.run_id)] if "run_id" in table else table.drop_duplicates()
            write_or_remove(table, out / name)  # none: an earlier plot's into out is removed
    losses = pd.concat(losses, ignore_index=True)
    if not losses.empty:
        losses = losses[losses.run_id.isin(summary.run_id)].drop_duplicates(["run_id", "step"])
    if elsewhere:  # plotted again from out, which has no run folders to read them from
        write_or_remove(losses, out / LOSSES)
    # The sources' stored fits, of the runs and steps kept as the profile's are (make_figures fits the
    # runs again where they are not the profile's, or a source has none).
    stored = [read_fits(folder) for folder in folders]
    fits = None
    if all(table is not None for table in stored):
        fits = pd.concat(stored, ignore_index=True)
        fits = fits[fits.run_id.isin(summary.run_id)].drop_duplicates(KEYS)
    if elsewhere:  # out is a sweep folder of its own: its fits beside its profile, as collect writes them
        write_or_remove(pd.DataFrame() if fits is None else fits, out / FITS)  # a source without: none
    figures = make_figures(out, profile, summary, losses, fits, vector=vector)
    source = folders[0] if len(folders) == 1 else None  # several sweeps: no one command made them
    report = write_report(out, summary, figures, source=source, where=where, command=command, question=question)
    for path in [*(drawn.path for drawn in figures), report]:
        print(path)
    for folder, count in sources[again.to_numpy()].value_counts(sort=False).items():
        runs = "1 run of {} is a run" if count == 1 else f"{count} runs of {{}} are runs"
        print(runs.format(folder), "of a folder given before it (the same run_id): drawn once")
    if not attention.empty:
        counts = attention.status.value_counts().to_dict()
        print(f"{len(attention)} runs need attention ({', '.join(f'{n} {s}' for s, n in counts.items())}):")
        name_runs(attention, sources)
    return 0
