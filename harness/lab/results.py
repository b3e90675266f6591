"""Result tables: the per-run profile, atomic writes, and collecting run folders into sweep tables.

A run folder holds `profile.parquet`, `meta.json` and, written last, the completion marker `DONE`;
a folder with Hydra's `.hydra/` but no `DONE` is an incomplete run (killed or still running).
A sweep folder gains `profile.parquet` (all runs' profiles), `units.parquet` and `gates.parquet`
(record.units=true), `fits.parquet` (a fit per run, layer,
state and training step; harness.core.analysis), `losses.parquet` (training runs' loss tables), and
`summary.parquet` / `summary.csv` (one row per run folder, failed and incomplete runs included, with the
run's headline fit, the theory's predictions and their gaps).

What a folder holds that it should not is a row, never a crash: a folder that cannot be read is
"damaged"; a second folder of a run id already read is "duplicate" (a grid that named one point twice:
its numbers are the first's, so it is not read again); a run the sweep's manifest (sweep.json) names but
no run folder holds is "not_run".
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from harness.core.analysis import FIT_COLUMNS
from harness.core.errors import ConfigError
from harness.core.folders import check_rebuild, claim
from harness.core.runfolder import (
    DONE,
    GATES,
    LOSSES,
    META,
    PROFILE,
    SPECTRUM_COLUMNS,
    THEORY_COLUMNS,
    UNCHECKED,
    UNITS,
    check_done,
)
from harness.core.spec import FIELDS, VALIDATORS, config_columns, flat_config, is_config_column, run_id
from harness.lab.fits import FITS, fit_runs, headline
from harness.lab.pool import parts, run_in_processes, workers_for
from harness.lab.summary import write_summary_by_config
from harness.lab.tables import QUANTILES, write_csv, write_or_remove, write_parquet
from harness.lab.theory_table import THEORY

MANIFEST = "sweep.json"  # harness.cli.sweep's: run_ids (and runs: run_id, subdir, overrides) in grid order
STATUSES = ("ok", "failed", "not_applicable")  # a run's status, or its numerical flags joined by commas:
FLAGS = ("diverged", "nan", "overflow", "underflow", "zero")  # harness.core.recorders.status_flags, lab.run
INDEX = "__run_index"  # read_profiles: the row of summary rows a profile row came from
BATCH = 512  # run tables concatenated at once (read_profiles)
PARALLEL_RUNS = 1000  # from here collect reads and fits the runs in a worker per core (harness.lab.pool)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: an incomplete run's config
NOT_READ = ("damaged", "duplicate", "not_run", "skipped")  # rows whose folder's tables are not read
NUMBER = (int, float)  # bool is an int too: excluded where it matters
KINDS: dict[str, tuple[type, ...]] = {  # a column's value types, by its field's annotation (harness.core.spec)
    "str": (str,),
    "Optional[str]": (str,),
    "float": NUMBER,
    "Optional[float]": NUMBER,
    "int": (int,),
    "Optional[int]": (int,),
    "bool": (bool,),
}
INTEGERS = ("int", "Optional[int]")  # the annotations of the config fields that hold whole numbers
NUMBERS = (
    "wall_time_s",
    "startup_s",
    "input_drive_var",
    "input_drive_var_cv",
    *(c for c in THEORY_COLUMNS if c != "theory_note"),
    "final_loss",
    "baseline",
    *SPECTRUM_COLUMNS,
)


class DamagedMeta(ValueError):
    """A meta.json that parses but says something no run writes: its message is the row's reason."""


def find_runs(root: Path) -> list[Path]:
    """Run folders under root (root itself included): where Hydra left a `.hydra/`, or a finished run
    saved from Python (GradientProfile.save: a DONE marker beside meta.json)."""

    def order(path: Path) -> tuple:  # by number, then name: 0 before 00 whatever order the disk lists them
        return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in path.relative_to(root).parts)

    found = []
    for folder, folders, files in os.walk(root):  # one pass of scandir: 10^4 run folders in a second
        here = Path(folder)
        if ".hydra" in folders or DONE in folders + files and (here / META).is_file():
            found.append(here)
    return sorted(found, key=order)


class Profile(NamedTuple):
    """Where a finished run's profile is, and the settings it holds in every row (meta.json's columns):
    read once from meta.json, not from the profile's rows (harness.lab.tables.profile_frame)."""

    path: Path
    settings: dict[str, Any]


def _run_row(run_dir: Path, root: Path) -> tuple[dict[str, Any], Profile | None]:
    """One summary row (without the fit) for a run folder, and where its profile is if it has one. A
    folder that cannot be read is a row of its own, status "damaged", with what is wrong: named, not
    fatal (a profile that cannot be read is found so by read_profiles)."""
    where = {"run_dir": str(run_dir.relative_to(root))}
    try:
        return _read_run(run_dir, where)
    except DamagedMeta as error:
        return {**where, **hydra_settings(run_dir), "status": "damaged", "error": str(error)}, None
    except Exception as error:  # noqa: BLE001  any unreadable file: bad JSON, an unreadable folder, ...
        return {**where, **hydra_settings(run_dir), "status": "damaged", "error": _reason(error)}, None


def hydra_config(run_dir: Path) -> dict[str, Any]:
    """The run's config as Hydra recorded it (.hydra/config.yaml)."""
    return yaml.load((run_dir / ".hydra" / "config.yaml").read_text(), Loader=YAML_LOADER)


def hydra_settings(run_dir: Path) -> dict[str, Any]:
    """A damaged run's settings as Hydra recorded them, so that its row still says which configuration
    it was; none where that record is missing or unreadable too."""
    try:
        return config_columns(hydra_config(run_dir))
    except Exception:  # noqa: BLE001  no record, or one as damaged as the run: the row names the folder only
        return {}


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _read_run(run_dir: Path, where: dict[str, str]) -> tuple[dict[str, Any], Profile | None]:
    if not (run_dir / DONE).exists():
        config = hydra_config(run_dir)
        try:
            columns = config_columns(config)
            where["run_id"] = run_id(columns)
        except ConfigError:
            columns = flat_config(config)
        return {**where, **columns, "status": "incomplete"}, None
    meta = json.loads((run_dir / META).read_text())
    check_meta(meta)
    # Every run repeats the same keys and most of the same names (cell, activation, ...): one string
    # each for all runs, not one per run (10^4 runs held ~40 MB of copies).
    meta["columns"] = {sys.intern(k): sys.intern(v) if isinstance(v, str) else v for k, v in meta["columns"].items()}
    row = {"run_id": meta["run_id"], **where, **meta["columns"]}
    row.update(
        {
            k: meta.get(k)
            for k in (
                "status",
                "diverged_at",
                "error",
                "wall_time_s",
                "startup_s",
                "input_drive_var",
                "input_drive_var_cv",
                *THEORY_COLUMNS,
                "final_loss",
                "baseline",
                "solved",
            )
        }
    )
    if meta.get("spectrum") is not None:  # theory.spectrum_k > 0
        row.update({"spectrum": meta["spectrum"], **{k: meta.get(k) for k in SPECTRUM_COLUMNS}})
    if (run_dir / PROFILE).exists():
        return row, Profile(run_dir / PROFILE, meta["columns"])
    lost = check_done(run_dir)  # none written (a failed run), or one the run wrote and DONE lists, since lost
    if lost not in (None, UNCHECKED):
        return {**where, **meta["columns"], "status": "damaged", "error": lost}, None
    return row, None


def _own_columns(profile: Profile, index: int, run: str) -> pa.Table:
    """A profile's columns but the run's settings (a profile's file costs per column read, and most of
    its columns are the settings repeated in every row), with the run's index among the rows (INDEX).
    Raises ValueError where it holds rows of other runs than `run` (a sweep's table once written over a
    run's own): they would be filed under this run's settings."""
    parquet = pq.ParquetFile(profile.path)
    check_profile_schema(parquet.schema_arrow)
    if parquet.metadata.num_rows == 0:
        raise ValueError(f"{PROFILE} has no rows")
    names = [n for n in parquet.schema_arrow.names if n == "run_id" or n not in profile.settings]
    table = parquet.read(columns=names, use_pandas_metadata=False).replace_schema_metadata(None)
    ids = pc.unique(table.column("run_id")).to_pylist()
    if ids and ids != [run]:
        others = ", ".join(str(i) for i in ids if i != run)
        raise ValueError(f"{PROFILE} holds rows of other runs ({others}), not only this run's {run}")
    return table.append_column(INDEX, pa.array(np.full(table.num_rows, index, dtype=np.int32)))


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


PROFILE_SCHEMA = {  # what every run's profile holds (harness.lab.tables), by column: its kind of values
    "run_id": is_text,
    "layer": pa.types.is_integer,
    "state": is_text,
    "t": pa.types.is_integer,
    "lag": pa.types.is_integer,
    "step": pa.types.is_integer,
    **{name: pa.types.is_floating for name in QUANTILES},
}


def check_profile_schema(schema: pa.Schema) -> None:
    """Raise ValueError where a profile lacks a column every run's profile holds, or holds it as
    another kind of value (a table edited or written by other code: it would not join the others)."""
    for name, is_kind in PROFILE_SCHEMA.items():
        if name not in schema.names:
            raise ValueError(f"{PROFILE} has no {name} column")
        if not is_kind(schema.field(name).type):
            raise ValueError(f"{PROFILE}: its {name} column holds {schema.field(name).type}, not what a run writes")


def read_profiles(rows: list[dict[str, Any]], profiles: list[Profile | None], workers: int = 1) -> pa.Table | None:
    """Every run's profile without its settings' columns, in one table (None where no run has one),
    INDEX naming each row's run; a run whose profile cannot be read becomes a "damaged" row, its
    profile None. Read in `workers` forked processes at once, each a consecutive part of the runs
    (harness.lab.pool), concatenated in the runs' order."""
    read = [i for i, profile in enumerate(profiles) if profile is not None]
    jobs = [
        functools.partial(_read_part, rows, profiles, read[part.start : part.stop])
        for part in parts(len(read), workers)
    ]
    tables = []
    for table, errors in run_in_processes(jobs, workers):
        tables += [table] if table is not None else []
        for i, reason in errors.items():  # meta.json was read: the row keeps its configuration, not its run id
            rows[i] = {"run_dir": rows[i]["run_dir"], **profiles[i].settings, "status": "damaged", "error": reason}
            profiles[i] = None
    return pa.concat_tables(tables, promote_options="default") if tables else None


def _read_part(
    rows: list[dict[str, Any]], profiles: list[Profile | None], indices: list[int]
) -> tuple[pa.Table | None, dict[int, str]]:
    """(the profiles of runs `indices` in one table, or None; {index: why} for those that cannot be
    read: a truncated or garbage parquet file, another run's rows). Their tables are concatenated BATCH
    at a time: 10^4 small tables held apart cost ~15 KB each in Arrow's bookkeeping, 10x what their
    numbers take."""
    batches: list[pa.Table] = []
    pending: list[pa.Table] = []
    errors: dict[int, str] = {}
    for i in indices:
        try:
            pending.append(_own_columns(profiles[i], i, rows[i]["run_id"]))
        except Exception as error:  # noqa: BLE001  named in the summary, never fatal
            errors[i] = _reason(error)
        if len(pending) == BATCH:
            batches.append(pa.concat_tables(pending, promote_options="default").combine_chunks())
            pending = []
    tables = batches + pending
    return (pa.concat_tables(tables, promote_options="default") if tables else None), errors


def join_profiles(rows: list[dict[str, Any]], own: pa.Table | None, profiles: list[Profile | None]) -> pd.DataFrame:
    """One profile table of the runs still read (profiles[i] not None: a duplicate's is not), in their
    order, each run's settings beside its rows, integer columns kept integers (whole_numbers).

    Each row's settings are taken by its run's position (INDEX), not joined on run_id: at 10^4 runs a
    merge on run_id held ~73 MB, this ~59 MB, about what the joined table itself holds."""
    kept = [i for i, profile in enumerate(profiles) if profile is not None]
    if own is None or not kept:
        return pd.DataFrame()
    if len(kept) < len(profiles):  # duplicates and damaged runs drop out
        own = own.filter(pc.is_in(own.column(INDEX), value_set=pa.array(kept, pa.int32())))
    settings = pd.DataFrame([{"run_id": rows[i]["run_id"], **profiles[i].settings} for i in kept])
    integers = {f.name for f in own.schema if pa.types.is_integer(f.type)} - {INDEX}
    integers |= typed_settings((profiles[i] for i in kept), int)
    positions = np.searchsorted(np.asarray(kept), own.column(INDEX).to_numpy())  # kept is in order
    measured = own.drop_columns([c for c in own.column_names if c == INDEX or c in settings]).to_pandas()
    frame = pd.concat([settings.take(positions).reset_index(drop=True), measured], axis=1)
    for key in typed_settings((profiles[i] for i in kept), bool):  # objects where some runs lack it: no mask
        if frame[key].dtype == object:
            frame[key] = frame[key].astype("boolean")
    return whole_numbers(frame, integers)


def typed_settings(profiles: Iterable[Profile | None], kind: type) -> set[str]:
    """The settings some run holds as a `kind` (int: a whole number, never true or false; bool), spec
    fields or not (a user cell's cell.kwargs.units: whole_numbers knows the fields alone)."""
    return {
        key
        for profile in profiles
        if profile is not None
        for key, value in profile.settings.items()
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    }


def check_meta(meta: Any) -> None:
    """Raise DamagedMeta unless meta holds what a run writes: a wrong type would otherwise reach the
    tables (pyarrow refuses a column of mixed types) or the figures, and a run id its columns do not
    give would file one run's numbers under another's settings."""

    def damaged(reason: str) -> DamagedMeta:
        return DamagedMeta(f"meta.json: {reason}")

    if not isinstance(meta, dict):
        raise damaged("not a JSON object")
    rid, columns, status = meta.get("run_id"), meta.get("columns"), meta.get("status")
    if not isinstance(rid, str):
        raise damaged(f"run_id {rid} is not a string")
    if not isinstance(columns, dict):
        raise damaged("columns is not a mapping")
    for key, value in columns.items():
        if key not in FIELDS:  # a user cell's argument (cell.kwargs.units, .flag) or a Python-saved profile's own
            continue
        kinds = KINDS.get(FIELDS[key].type, (object,))
        if value is None or isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            continue  # an older run's value of the right type stands even where a rule has tightened since
        try:
            VALIDATORS[key](key, value)
            reason = f"{key}={value}: expected {FIELDS[key].type}"
        except Exception as error:  # noqa: BLE001  ConfigError, or a TypeError on a list or mapping
            reason = str(error).splitlines()[0] if isinstance(error, ConfigError) else f"{key}={value}: {error}"
        raise damaged(reason)
    if not (status in STATUSES or isinstance(status, str) and set(status.split(",")) <= set(FLAGS)):
        raise damaged(
            f"status {status} is not one of {', '.join(STATUSES)} or flags joined by commas ({', '.join(FLAGS)})"
        )
    for key in NUMBERS:
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise damaged(f"{key} {value} is not a number")
    for key in ("error", "theory_note"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise damaged(f"{key} {meta[key]} is not a string")
    step = meta.get("diverged_at")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise damaged(f"diverged_at {step} is not a time step (a whole number >= 0) or null")
    if meta.get("solved") is not None and not isinstance(meta["solved"], bool):
        raise damaged(f"solved {meta['solved']} is not true, false or null")
    spectrum = meta.get("spectrum")
    if spectrum is not None and not (
        isinstance(spectrum, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in spectrum)
    ):
        raise damaged("spectrum is not a list of numbers")
    if run_id(columns) != rid:
        raise damaged(f"its columns do not give its run_id {rid} (edited, or another run's meta.json)")


def mark_duplicates(rows: list[dict[str, Any]], profiles: list[Any]) -> None:
    """A run id in more than one folder is read once: from its first finished folder (else its first),
    the others become rows of status "duplicate" naming it, their tables unread (profiles[i] = None)."""
    read: dict[str, int] = {}
    for i, row in enumerate(rows):
        rid = row.get("run_id")
        if isinstance(rid, str) and (rid not in read or "incomplete" == rows[read[rid]]["status"] != row["status"]):
            read[rid] = i
    for i, row in enumerate(rows):
        rid = row.get("run_id")
        if isinstance(rid, str) and read[rid] != i:
            rows[i] = {
                **row,
                "status": "duplicate",
                "error": f"run_id {rid} is also in {rows[read[rid]]['run_dir']}: read from there",
            }
            profiles[i] = None


def read_manifest(root: Path) -> dict[str, Any] | None:
    """root's sweep.json, or None if it has none; one that cannot be read is named on stderr."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        return manifest
    except (OSError, ValueError) as error:
        print(f"{path}: cannot be read ({type(error).__name__}); runs that never ran are not listed", file=sys.stderr)
        return None


def not_run(root: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row of status "not_run" for each run of the sweep's manifest that no run folder holds (the
    folder of a run that started but never wrote .hydra/ holds none): run_id, run_dir its folder-to-be
    and, as its error, the overrides that run it. An older manifest lists only run ids: run_dir is empty,
    and a folder whose id cannot be read (damaged) is taken to hold the id of its number in the grid
    (Hydra's default subdir, hydra.job.num), so that it is not listed twice."""
    manifest = read_manifest(root)
    if manifest is None:
        return []
    runs, ids = manifest.get("runs"), manifest.get("run_ids")
    if isinstance(runs, list):  # (run_id, run_dir, overrides, the folder it would be in)
        named = [
            (r["run_id"], str(r.get("subdir", "")), r.get("overrides"), str(r.get("subdir", "")))
            for r in runs
            if isinstance(r, dict) and isinstance(r.get("run_id"), str)
        ]
    else:
        named = [
            (rid, "", None, str(num))
            for num, rid in enumerate(ids if isinstance(ids, list) else [])
            if isinstance(rid, str)
        ]
    held = {row.get("run_id") for row in rows}
    unnamed = {row["run_dir"] for row in rows if not isinstance(row.get("run_id"), str)}  # damaged: no id read
    missing = {}
    for rid, subdir, overrides, folder in named:
        if rid not in held and rid not in missing and folder not in unnamed:
            words = " ".join(map(str, overrides)) if isinstance(overrides, list) else ""
            missing[rid] = {
                "run_id": rid,
                "run_dir": subdir,
                **override_settings(overrides if isinstance(overrides, list) else []),
                "status": "not_run",
                "error": words or f"named in {MANIFEST}; no run folder holds it",
            }
    return list(missing.values())


def override_settings(overrides: list[Any]) -> dict[str, Any]:
    """The settings a run's overrides set (seed=24, ++seed=2, cell=lstm, cell.kwargs.leak=0.2), typed as
    its meta.json would hold them, so that a run that never ran still says which configuration it is
    (the report's Swept and Held fixed count it). Spec fields and user cells' arguments only; a value
    its field refuses is left out."""
    settings = {}
    for line in overrides:
        key, equals, text = str(line).lstrip("+").partition("=")
        if not equals or not (key in VALIDATORS or key.startswith("cell.kwargs.")) or "${" in text:
            continue  # ~key, hydra.*, a key of no run's columns, an interpolation
        value = override_value(text)
        try:
            settings[key] = VALIDATORS[key](key, value) if key in VALIDATORS else value
        except ConfigError:
            continue
    return settings


def override_value(text: str) -> Any:
    """A plain override value as Hydra's grammar reads it: a whole number (010 is ten), a number (1e-1),
    true/false, null, else the text without its quotes."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    words = {"true": True, "false": False, "null": None}
    if text.lower() in words:
        return words[text.lower()]
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text


def read_table(path: Path) -> pd.DataFrame | None:
    """A run's optional table, or None if it has none or it cannot be read (said on stderr)."""
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as error:  # noqa: BLE001  a damaged file: named, left out, not fatal
        print(f"{path}: cannot be read ({type(error).__name__}); left out of the sweep's table", file=sys.stderr)
        return None


def readable(path: Path) -> bool:
    """Whether a parquet file's footer (its schema and row groups) can be read: a truncated one's cannot."""
    try:
        pq.read_metadata(path)
        return True
    except Exception:  # noqa: BLE001  ArrowInvalid, OSError, ...
        return False


def find_links(root: Path) -> list[Path]:
    """Symbolic links to folders inside root: never read (nor written) as runs, but named."""
    return sorted(
        Path(folder) / name
        for folder, folders, _ in os.walk(root)  # scandir's entries know their kind: no stat per file
        for name in folders
        if os.path.islink(os.path.join(folder, name))
    )


def whole_numbers(frame: pd.DataFrame, integers: Collection[str] = ()) -> pd.DataFrame:
    """frame with its integer columns held as integers: the config fields typed int (harness.core.spec)
    and `integers` (columns an integer table gave). A row without them (damaged, skipped, not_run: no
    settings read) leaves a gap, which pandas would fill with NaN, turning seq_len 30 into 30.0: such a
    column is nullable Int64 instead (int64 where no row has a gap). A column holding a fraction is
    left as it is."""
    for column in frame.columns:
        if not (column in integers or column in FIELDS and FIELDS[column].type in INTEGERS):
            continue
        values = frame[column]
        if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
            frame[column] = values.astype("Int64" if values.isna().any() else "int64")
    return frame


def true_or_false(frame: pd.DataFrame, booleans: Collection[str] = ()) -> pd.DataFrame:
    """frame with its true/false columns (truncated, horizon_censored, record.units, solved) held as
    booleans. A row without them (damaged, skipped, not_run, no fit) leaves a gap, and pandas would hold
    the column as objects, which no mask takes (summary[summary.truncated] raises): such a column is
    nullable boolean instead; so is each of `booleans` (columns a boolean table gave) that a table
    holding it as missing numbers (an untrained sweep's solved) made 0.0, 1.0 and NaN. A column
    without a true or false value is left as it is."""
    for column in frame.columns:
        values = frame[column]
        known = values.dropna()
        if not len(known) or pd.api.types.is_bool_dtype(values):
            continue
        if (values.dtype == object and all(isinstance(value, (bool, np.bool_)) for value in known)) or (
            column in booleans and pd.api.types.is_numeric_dtype(values) and known.isin([0, 1]).all()
        ):
            frame[column] = values.astype("boolean")
    return frame


def concatenated(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """frames one after another, a column that is integer or true/false in one of them kept so where
    another's rows have none (a damaged run, an older table, an untrained sweep's solved)."""
    frame = pd.concat(frames, ignore_index=True)
    return true_or_false(whole_numbers(frame, integer_columns(*frames)), boolean_columns(*frames))


def boolean_columns(*frames: pd.DataFrame) -> set[str]:
    """The columns of boolean dtype in any of frames."""
    return {c for frame in frames for c in frame.columns if pd.api.types.is_bool_dtype(frame[c])}


def integer_columns(*frames: pd.DataFrame) -> set[str]:
    """The columns of integer dtype in any of frames."""
    return {c for frame in frames for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])}


def summary_config(summary: pd.DataFrame) -> list[str]:
    """The summary's config columns (the run's settings), in their order."""
    return [c for c in summary.columns if is_config_column(c)]


def spectrum_table(summary: pd.DataFrame) -> pd.DataFrame:
    """spectrum.parquet: a row per run and exponent (index 1..k, exponent in nats per step), beside the
    run's config columns; empty where no run computed a spectrum (theory.spectrum_k = 0)."""
    if "spectrum" not in summary:
        return pd.DataFrame()
    runs = summary[summary.spectrum.map(lambda s: s is not None and len(s) > 0 if not isinstance(s, float) else False)]
    config = ["run_id", *summary_config(summary)]
    table = runs[config + ["spectrum"]].explode("spectrum").rename(columns={"spectrum": "exponent"})
    table["exponent"] = table.exponent.astype(float)
    table.insert(len(config), "index", table.groupby("run_id").cumcount() + 1)
    return table.reset_index(drop=True)


def write_summary(summary: pd.DataFrame, root: Path) -> None:
    """summary.parquet (the spectra as a list column), summary.csv (without them), spectrum.parquet and
    summary_by_config.parquet / .csv (seeds pooled: harness.lab.summary)."""
    write_parquet(summary, root / "summary.parquet")
    write_csv(summary.drop(columns="spectrum", errors="ignore"), root / "summary.csv")
    write_summary_by_config(summary, root)
    write_or_remove(spectrum_table(summary), root / "spectrum.parquet")


def collect_losses(root: Path, summary: pd.DataFrame) -> pd.DataFrame:
    """Every run's loss table (harness.core.train), beside its config columns; read once per run id
    (a duplicate folder's, or a run_dir a run that never ran would have had, is not read). One that
    cannot be read is left out, said on stderr, as a units or gates table is (read_table)."""
    if "status" in summary:
        summary = summary[~summary.status.isin(NOT_READ)]
    tables = [table for d in summary.run_dir for table in [read_table(root / d / LOSSES)] if table is not None]
    if not tables:
        return pd.DataFrame()
    losses = pd.concat(tables, ignore_index=True)
    config = summary.drop(columns=[c for c in summary.columns if c in losses and c != "run_id"])
    config = config[config.run_id.notna()].drop_duplicates("run_id")
    return losses.merge(config, on="run_id", how="left")


def collect(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rebuild a sweep's tables from its run folders and write them into root; return (profile,
    summary, losses).

    Works on any folder of runs: a finished sweep, a failed or interrupted one, or one run. A sweep's
    units or gates table that cannot be read and that no run folder gives again is removed (said on
    stderr): the sweep's tables are what its run folders hold. From PARALLEL_RUNS runs on, their
    profiles are read and fitted in a forked worker per core (the same tables: tested).
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; expected a sweep or run folder under results/")
    runs = find_runs(root)
    if runs[:1] == [root] and len(runs) > 1:  # the sweep's tables would overwrite the run's own
        inside = ", ".join(str(run.relative_to(root)) for run in runs[1:4]) + (", ..." if len(runs) > 4 else "")
        raise ConfigError(
            f"{root}: a run folder with other run folders inside it ({inside}); its tables are the run's own "
            "and are not rewritten; expected a sweep folder, or a run folder alone"
        )
    if runs:
        check_rebuild(root)  # never over tables of the user's
        claim(root)
    if not runs:
        try:  # quietly: a manifest that cannot be read leaves the error below the one line
            planned = json.loads((root / MANIFEST).read_text()).get("run_ids")
        except (OSError, ValueError, AttributeError):
            planned = None
        if isinstance(planned, list) and planned:  # a sweep stopped before its first run finished
            raise ConfigError(
                f"{root}: a sweep none of whose {len(planned)} runs finished (it was interrupted, or is "
                "still running); expected a finished run: run its command again, which resumes it"
            )
        raise ConfigError(
            f"{root}: no run folders in it (a run folder holds .hydra/, or DONE and meta.json); "
            "expected a sweep or run folder"
        )
    rows, profiles = (list(read) for read in zip(*(_run_row(run, root) for run in runs)))
    integers = typed_settings(profiles, int)  # before duplicates and damaged profiles drop out: their rows stay
    workers = workers_for(len(runs), PARALLEL_RUNS)
    own = read_profiles(rows, profiles, workers)  # before duplicates are told apart: a damaged profile is no run
    mark_duplicates(rows, profiles)
    links = [
        {"run_dir": str(p.relative_to(root)), "status": "skipped", "error": "a symbolic link: not read"}
        for p in find_links(root)
    ]
    summary = pd.DataFrame(rows + not_run(root, rows) + links)
    if "run_id" not in summary:  # no run's id could be read (every one damaged): the column is still there
        summary.insert(0, "run_id", pd.Series([None] * len(summary), dtype=object))
    profile = join_profiles(rows, own, profiles)
    whole_numbers(summary, integers)
    if "diverged_at" in summary:  # nullable: a run whose forward pass stayed finite has none
        summary["diverged_at"] = summary.diverged_at.astype("Int64")
    if "solved" in summary:  # true, false or none (an untrained run's), whatever rows are damaged
        summary["solved"] = summary.solved.astype("boolean")
    if "startup_s" in summary:  # a float even where no run recorded it (older runs): None alone is no number
        summary["startup_s"] = summary.startup_s.astype(float)
    fits = pd.DataFrame()  # none where no run's profile could be read: an earlier collect's is removed
    if not profile.empty:
        fits = fit_runs(profile, workers)
        fitted = headline(fits).set_index("run_id")[FIT_COLUMNS]
        summary = whole_numbers(summary.join(fitted, on="run_id"), integer_columns(fitted))
        at_init = headline(fits[fits.step == fits.groupby("run_id").step.transform("min")])
        summary["rate_init"] = summary.run_id.map(at_init.set_index("run_id").rate)
        for prediction in THEORY:  # measured minus predicted, nats per step
            summary[prediction.gap] = summary.rate - summary.get(prediction.column, float("nan"))
    write_or_remove(fits, root / FITS)
    if runs != [root]:  # a single run folder already holds its own profile (and units, gates)
        write_parquet(profile, root / PROFILE)
        _write_detail_tables(root, runs, rows)
    summary = true_or_false(summary)
    write_summary(summary, root)
    losses = collect_losses(root, summary)
    if runs != [root]:
        write_or_remove(losses, root / LOSSES)
    return profile, summary, losses


def _write_detail_tables(root: Path, runs: list[Path], rows: list[dict[str, Any]]) -> None:
    """Write the sweep's units and gates tables from its runs' own; remove one unreadable and given by none."""
    for name in (UNITS, GATES):  # record.units=true
        tables = [
            table
            for run, row in zip(runs, rows)
            if row.get("status") not in (*NOT_READ, None)
            for table in [read_table(run / name)]
            if table is not None
        ]
        if tables:
            write_parquet(pd.concat(tables, ignore_index=True), root / name)
        elif (root / name).exists() and not readable(root / name):
            (root / name).unlink()
            print(f"{root / name}: cannot be read and no run folder gives it again; removed", file=sys.stderr)
