"""What the harness may write, overwrite and delete: the folders it made and the files it writes there.

Every folder the harness makes holds a marker file, `.harness`. In a marked folder the harness's own
entries are the names it writes (NAMES: tables, run files, `.hydra/`, `figures/`, logs, its stale
temporary files) and the marked folders below it (run folders); anything else is the user's. So:

- `check_target` refuses, before any compute, an output folder that is `/`, the home folder, the
  current folder or a folder above it; a file; one inside a run folder or a sweep folder; one that
  is a run folder or a sweep folder of the other kind; one that holds anything the harness did not
  write (any file in an unmarked folder, a name the harness never writes in a marked one); and one
  where a name the harness would write is a symbolic link (results are never written through links:
  the output folder itself may be one, e.g. results/ on a larger disk).
- `check_rebuild` is collect's and plot's rule for rewriting a folder's own tables: a folder the
  harness made (or wrote before markers existed), or one holding no table or report of its name.
- `remove_written` is what an interrupted run removes: the harness's files that were not there
  before it started (`snapshot`), and the folders it made that are left empty. Never a folder it did
  not make, never a file that was there before, never a file that is not the harness's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.core.errors import ConfigError

MARKER = ".harness"  # in every folder the harness makes: its contents are the harness's to manage
# What the harness writes in its folders: a run's files, a sweep's tables, figures and report, Hydra's.
NAMES = frozenset(
    {
        MARKER,
        "DONE",
        "meta.json",
        "profile.parquet",
        "losses.parquet",
        "units.parquet",
        "gates.parquet",
        "summary.parquet",
        "summary.csv",
        "summary_by_config.parquet",
        "summary_by_config.csv",
        "fits.parquet",
        "spectrum.parquet",
        "mean_field.parquet",
        "report.html",
        "figures",
        "multirun.yaml",
        "sweep.json",
        ".lock",
        ".chunks",
        ".hydra",
        ".submitit",  # the submitit launchers' job logs (their submitit_folder's default, in the sweep's folder)
        ".written",  # harness.lab.tables.WRITTEN: the tables and pages collect and plot may remove
    }
)
WHOLLY_OURS = frozenset({"figures", ".hydra", ".chunks", ".submitit"})  # folders whose every file the harness writes


RUN_MARKS = ("DONE", "meta.json", ".hydra")  # a run folder holds one of these
SWEEP_MARKS = ("sweep.json", "multirun.yaml")  # a sweep folder holds one of these
# What collect and plot write into the folder they rebuild.
TABLES = (
    "summary.csv",
    "summary.parquet",
    "summary_by_config.csv",
    "summary_by_config.parquet",
    "profile.parquet",
    "fits.parquet",
    "losses.parquet",
    "units.parquet",
    "gates.parquet",
    "spectrum.parquet",
    "mean_field.parquet",
    "report.html",
    "figures",
)


def stays_inside(relative: str) -> bool:
    """Whether a path given relative to a folder names something below it (not the folder itself,
    not above it, not elsewhere)."""
    path = os.path.normpath(relative)
    return not os.path.isabs(path) and path != "." and path.split(os.sep)[0] != ".."


def too_long(path: Path | str) -> bool:
    """Whether a part of path is over 255 bytes, NAME_MAX of every common file system."""
    return any(len(os.fsencode(part)) > 255 for part in Path(path).parts)


def is_ours(name: str) -> bool:
    """Whether a name in a marked folder is one the harness writes: NAMES, a run's log (Hydra's
    <job name>.log), or a temporary file of write_atomic (`.<name>.<random>`) left by a killed write."""
    return name in NAMES or name.endswith(".log") or is_temporary(name)


def is_temporary(name: str) -> bool:
    """write_atomic's temporary file for one of the harness's names: `.<name>.<random>`."""
    stem = name[1:].rpartition(".")[0]
    return name.startswith(".") and bool(stem) and (stem in NAMES or stem.endswith((".log", ".png", ".svg", ".yaml")))


def is_run_folder(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_MARKS)


def is_sweep_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in SWEEP_MARKS)


def is_marked(folder: Path) -> bool:
    return (folder / MARKER).is_file() and not (folder / MARKER).is_symlink()


def make_folder(folder: Path) -> None:
    """mkdir -p that marks each folder it makes inside a marked folder (the marker first, so that an
    interrupt leaves none unmarked), except those whose name says they are wholly the harness's
    (figures/, .hydra/, .chunks/). Containers above an output folder (results/<name>/) stay unmarked:
    they are not the harness's to write into."""
    missing = []
    while not folder.exists() and not folder.is_symlink():
        missing.append(folder)
        folder = folder.parent
    inside = is_marked(folder)
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
        if inside and made.name not in WHOLLY_OURS:
            (made / MARKER).touch()


def claim(folder: Path) -> None:
    """Make folder and mark it as the harness's, or mark it if it is there: one Hydra made, or an empty
    one the user named (check_target has refused any other)."""
    make_folder(folder)
    if not (folder / MARKER).exists():
        (folder / MARKER).touch()


def is_empty(folder: Path) -> bool:
    """Whether folder holds nothing (False where it cannot be read: then it is not known to)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def strangers(folder: Path) -> list[Path]:
    """What in folder the harness did not write: everything in an unmarked folder; in a marked one,
    the names it never writes but empty folders, and what its marked subfolders hold that it did not
    write."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    if not is_marked(folder):
        return [Path(e.path) for e in entries]
    found = []
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False) and entry.name not in WHOLLY_OURS and is_marked(path):
            found += strangers(path)
        elif entry.is_dir(follow_symlinks=False) and is_empty(path):
            continue  # holds nothing of anyone's: a run folder that a kill left between its mkdir and its marker
        elif not is_ours(entry.name):
            found.append(path)
    return found


def links(folder: Path) -> list[Path]:
    """Symbolic links where the harness would write: in folder, its marked subfolders and the folders
    wholly its own (.hydra/, figures/)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            found.append(path)
        elif entry.is_dir() and (entry.name in WHOLLY_OURS or is_marked(path)):
            found += links(path)
    return found


def check_target(
    key: str, folder: Path, cwd: Path | None = None, kind: str = "sweep", run_id: str | None = None
) -> None:
    """Raise ConfigError (one line) unless folder may hold this harness output (kind: "run", "sweep"
    or "plot"; a run of run_id may go into its own finished folder, not another's): see the module doc."""
    try:
        _check_target(key, folder, Path(os.path.realpath(cwd or Path.cwd())), kind)
        finished = finished_run(folder)
        if kind == "run" and finished is not None and finished != run_id:
            raise ConfigError(
                f"{key}={folder}: holds the finished run {finished}, not this run's {run_id}; "
                "expected a new folder, or this run's own"
            )
    except OSError as error:  # a name too long, a loop of links: not a usable folder
        raise ConfigError(
            f"{key}={folder}: not a usable folder ({error.strerror or error}); expected a path "
            "of folders you can write to"
        ) from None


def _check_target(key: str, folder: Path, cwd: Path, kind: str) -> None:
    real = Path(os.path.realpath(folder))
    home = Path(os.path.realpath(Path.home()))
    if real == Path(real.anchor) or real == home or real in (cwd, *cwd.parents):
        where = (
            "the root folder"
            if real == Path(real.anchor)
            else "your home folder"
            if real == home
            else "the current folder or one above it"
        )
        raise ConfigError(f"{key}={folder}: {where}; expected a folder of its own for results (e.g. results/mine)")
    for parent in real.parents:
        if is_run_folder(parent) or is_sweep_folder(parent):
            what = "run" if is_run_folder(parent) else "sweep"
            raise ConfigError(
                f"{key}={folder}: inside the {what} folder {parent}, whose files are its own; "
                "expected a folder outside any run or sweep"
            )
    if real.exists() and not real.is_dir():
        raise ConfigError(f"{key}={folder}: a file; expected a folder")
    if not real.is_dir():
        return
    if kind != "run" and is_run_folder(real):
        raise ConfigError(f"{key}={folder}: a run's folder, whose files are its own; expected a new folder")
    if kind != "sweep" and is_sweep_folder(real):
        raise ConfigError(f"{key}={folder}: a sweep's folder, whose tables are its own; expected a new folder")
    foreign = strangers(real)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ConfigError(
            f"{key}={folder}: holds {os.path.relpath(foreign[0], real)}{more}, which the harness "
            "did not write (it never writes beside a file of yours); expected a new or empty folder, or "
            "one holding only the harness's files (move it out to write there)"
        )
    linked = links(real)
    if linked:
        raise ConfigError(
            f"{key}={folder}: {os.path.relpath(linked[0], real)} is a symbolic link; results are "
            "never written through links; expected a real file or folder, or none"
        )


def finished_run(folder: Path) -> str | None:
    """The run_id of the finished run in folder (DONE and a meta.json naming it), or None."""
    try:
        return str(json.loads((folder / "meta.json").read_text())["run_id"]) if (folder / "DONE").is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_rebuild(folder: Path) -> None:
    """Raise ConfigError unless collect or plot may rewrite folder's own tables, figures and report: a
    folder the harness made, a sweep or run folder it wrote before folders were marked, or one that
    holds none of those names (a folder of runs saved from Python); never a table of the user's."""
    if is_marked(folder) or is_sweep_folder(folder) or is_run_folder(folder):
        return
    theirs = next((name for name in TABLES if (folder / name).exists() or (folder / name).is_symlink()), None)
    if theirs is not None:
        raise ConfigError(
            f"{folder}: holds {theirs}, which the harness did not write; expected a folder the "
            f"harness made (one it wrote before folders were marked: touch {folder}/{MARKER}), or "
            "--out for the tables and figures"
        )


def snapshot(folder: Path) -> set[Path]:
    """Every file and folder under folder now (none if it does not exist), for remove_written; paths
    are absolute, as remove_written compares them."""
    folder, found = Path(os.path.abspath(folder)), set()
    for parent, dirs, files in os.walk(folder):
        found.add(Path(parent))
        found.update(Path(parent, name) for name in files + [d for d in dirs if Path(parent, d).is_symlink()])
    return found


def remove_written(folder: Path, before: set[Path]) -> tuple[list[Path], bool]:
    """Remove the harness's files under folder that are not in `before`, then the folders it made that
    are left empty; return (the files removed, whether folder itself was removed)."""
    folder, removed = Path(os.path.abspath(folder)), []
    for parent, dirs, files in os.walk(folder, topdown=False):
        here = Path(parent)
        owned = here.name in WHOLLY_OURS or is_marked(here) or here == folder
        for name in files + [d for d in dirs if Path(parent, d).is_symlink()]:
            path = here / name
            if path not in before and owned and (is_ours(name) or here.name in WHOLLY_OURS):
                path.unlink()
                removed.append(path)
        if here not in before and not any(here.iterdir()):
            here.rmdir()
    removed = [p for p in removed if p.name != MARKER]
    return sorted(removed), not folder.exists()
