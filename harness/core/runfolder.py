"""A run folder on disk, as the command line and harness.record's GradientProfile.save write it, and
the long profile table.

    <run>/profile.parquet   a row per (training step, layer, state, t): batch quantiles of log10 norms
    <run>/meta.json         run_id, the run's columns, status, theory, timings, versions
    <run>/losses.parquet    training runs only
    <run>/units.parquet     record.units=true: a row per (t, state block, unit): batch-median log10 |dL/dS_t,j|
    <run>/gates.parquet     record.units=true: a row per (t, layer, gate): batch-median log10 ||dL/d hw_t^g||
                            and log10 ||C_t^g|| (step t's part of dL/dW_hh); rnn, lstm, gru, minimal
    <run>/DONE              written last: the run is complete, with each file's size and SHA-256 (write_done)

Every file is written through a temporary file and a rename, so a reader never sees half of one, and
every folder is made by harness.core.folders.make_folder, which marks it as the harness's.
Tables are built and written by harness.lab.tables (the core layer imports torch and numpy alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from harness.core.folders import make_folder

DONE = "DONE"
PROFILE, META, LOSSES = "profile.parquet", "meta.json", "losses.parquet"
UNITS, GATES = "units.parquet", "gates.parquet"  # record.units=true (harness.core.detail)
RUN_FILES = (META, PROFILE, LOSSES, UNITS, GATES)  # what DONE vouches for
# meta.json's theory keys (harness.core.theory writes them; the summary carries them as columns)
THEORY_COLUMNS = ("theory_linear", "theory_mean_field", "theory_critical_scale", "theory_lyapunov", "theory_note")
SPECTRUM_COLUMNS = ("lyapunov_dimension", "entropy_rate", "spectrum_sum")  # with theory.spectrum_k > 0


def write_atomic(path: Path, write: Any) -> None:
    """Call write(temporary path) in path's folder, then rename it to path: readers never see half a
    file, and a symbolic link placed at path is replaced, never written through. The temporary file
    is made as any file the process makes (0666 less its umask: a cluster's group can read results),
    so the umask is never read, let alone changed."""
    make_folder(path.parent)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}"  # harness.core.folders.is_temporary
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(data: bytes, path: Path) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(text: str, path: Path) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json(data: dict[str, Any], path: Path) -> None:
    write_text(json.dumps(data, indent=2, default=str) + "\n", path)


def file_digest(path: Path) -> dict[str, Any]:
    """A file's size and SHA-256, as DONE records them."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as data:  # hashlib.file_digest is Python 3.11+
        while chunk := data.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def write_done(out_dir: Path) -> None:
    """DONE, written last: the run's files with their sizes and checksums, so that a resume or a reader
    can tell a finished run from one whose files were damaged since (check_done)."""
    files = sorted(p.name for p in out_dir.iterdir() if p.name in RUN_FILES and p.is_file() and not p.is_symlink())
    write_json({"files": {name: file_digest(out_dir / name) for name in files}}, out_dir / DONE)


UNCHECKED = "DONE lists no checksums"  # check_done's word for a DONE written before checksums were


def check_done(out_dir: Path) -> str | None:
    """None if out_dir's DONE is there and every file it lists has its size and checksum; else what
    is wrong, in a few words. An empty DONE (written before checksums were) cannot be checked."""
    try:
        files = json.loads((out_dir / DONE).read_text())["files"]
        listed = {str(name): (int(f["size"]), str(f["sha256"])) for name, f in files.items()}
    except FileNotFoundError:
        return "no DONE"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return UNCHECKED
    for name, (size, sha256) in listed.items():
        try:
            found = file_digest(out_dir / name)
        except OSError:
            return f"{name} is missing"
        if (found["size"], found["sha256"]) != (size, sha256):
            return f"{name} was changed or damaged since the run wrote it"
    return None
