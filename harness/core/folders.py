"""What the harness may write, overwrite and delete: the folders it made and the files it writes there.

Every folder the harness makes holds a marker file, `.harness`. In a marked folder the harness's own
entries are the names it writes (NAMES: tables, run files, `.hydra/`, `figures/`, logs, its stale
temporary files) and the marked folders below it (run folders); anything else is the user's. So:

- `check_target` refuses, before any compute, an output folder that is `/`, the home folder, the
  current folder or a folder above it; one that holds anything the harness did not write (any file
  in an unmarked folder, a name the harness never writes in a marked one); and one where a folder
  the harness would write into is a symbolic link (results are never written through links).
- `remove_written` is what an interrupted run removes: the harness's files that were not there
  before it started (`snapshot`), and the folders it made that are left empty. Never a folder it did
  not make, never a file that was there before, never a file that is not the harness's.
"""
from __future__ import annotations

import os
from pathlib import Path

from harness.core.errors import ConfigError

MARKER = ".harness"  # in every folder the harness makes: its contents are the harness's to manage
# What the harness writes in its folders: a run's files, a sweep's tables, figures and report, Hydra's.
NAMES = frozenset({MARKER, "DONE", "meta.json", "profile.parquet", "losses.parquet", "units.parquet",
                   "gates.parquet", "summary.parquet", "summary.csv", "fits.parquet", "spectrum.parquet",
                   "report.html", "figures", "multirun.yaml", "sweep.json", ".lock", ".chunks", ".hydra"})
WHOLLY_OURS = frozenset({"figures", ".hydra", ".chunks"})  # folders whose every file the harness writes


def is_ours(name: str) -> bool:
    """Whether a name in a marked folder is one the harness writes: NAMES, a run's log (Hydra's
    <job name>.log), or a temporary file of write_atomic (`.<name>.<random>`) left by a killed write."""
    return name in NAMES or name.endswith(".log") or (name.startswith(".") and name.count(".") >= 2)


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


def strangers(folder: Path) -> list[Path]:
    """What in folder the harness did not write: everything in an unmarked folder; in a marked one,
    the names it never writes, and what its marked subfolders hold that it did not write."""
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
        elif not is_ours(entry.name):
            found.append(path)
    return found


def links(folder: Path) -> list[Path]:
    """Symbolic links to folders where the harness would write: in folder and its marked subfolders."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink() and path.is_dir():
            found.append(path)
        elif entry.is_dir(follow_symlinks=False) and entry.name not in WHOLLY_OURS and is_marked(path):
            found += links(path)
    return found


def check_target(key: str, folder: Path, cwd: Path | None = None) -> None:
    """Raise ConfigError (one line) unless folder may hold this harness output: see the module doc."""
    real = Path(os.path.realpath(folder))
    cwd = Path(os.path.realpath(cwd or Path.cwd()))
    if real == Path(real.anchor) or real == Path(os.path.realpath(Path.home())) or real in (cwd, *cwd.parents):
        where = "the root folder" if real == Path(real.anchor) else "your home folder" \
            if real == Path(os.path.realpath(Path.home())) else "the current folder or one above it"
        raise ConfigError(f"{key}={folder}: {where}; expected a folder of its own for results (e.g. results/mine)")
    if not real.is_dir():
        return
    foreign = strangers(real)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ConfigError(f"{key}={folder}: holds {os.path.relpath(foreign[0], real)}{more}, which the harness "
                          "did not write; expected a new or empty folder, or one the harness made")
    linked = links(real)
    if linked:
        raise ConfigError(f"{key}={folder}: {os.path.relpath(linked[0], real)} is a symbolic link; results are "
                          "never written through links; expected a real folder or none")


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
