"""Which code computed a run: recorded in its meta.json, compared when a sweep resumes.

    version   the installed package's version
    git       the checkout's commit, with -dirty if it has local changes (None outside a checkout)
    source    SHA-256 over this package's Python files: what `git` cannot tell apart (two dirty states)
    targets   SHA-256 of the source of every `_target_` in the config (a user's own cell): its file and the
              Python files beside it that it may import (target_hash)

Two runs agree on their code (`same_code`) when version, source and targets agree. git is kept for the
record but not compared: a commit that changes only documentation does not change any number.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import subprocess
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]  # harness/
COMPARED = ("version", "source", "targets")


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (with -dirty if it has local changes), or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=PACKAGE,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.lru_cache(maxsize=1)
def package_version() -> str | None:
    try:
        return importlib.metadata.version("harness")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


MAX_SOURCES = 500  # files hashed for one _target_ at most: beyond, the folder is not a project's own code


@functools.cache
def target_hash(target: str) -> str | None:
    """SHA-256 of the source a dotted `_target_` runs: its module's file and the Python files beside it
    that it may import (its top-level package, or for a lone module the .py files of its folder),
    found without importing anything; None where there is no such file (then the run fails on its own)."""
    module = target.rpartition(".")[0]
    top = module.partition(".")[0]
    try:
        spec, top_spec = importlib.util.find_spec(module), importlib.util.find_spec(top)
    except (ImportError, ValueError, AttributeError):
        return None
    origin = spec and spec.origin
    if not origin or not Path(origin).is_file():
        return None
    locations = list(top_spec.submodule_search_locations or []) if top_spec else []
    files = sorted(
        {p for folder in locations for p in Path(folder).rglob("*.py")}
        if locations
        else Path(origin).parent.glob("*.py")
    )
    if len(files) > MAX_SOURCES or Path(origin) not in files:
        files = [Path(origin)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def targets(config: Any) -> list[str]:
    """Every `_target_` in a (nested) config, in order."""
    if isinstance(config, dict):
        own = [config["_target_"]] if isinstance(config.get("_target_"), str) else []
        return own + [t for key, value in config.items() if key != "_target_" for t in targets(value)]
    if isinstance(config, list):
        return [t for value in config for t in targets(value)]
    return []


def code_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The code that computes a run of this (resolved) config: see the module's docstring."""
    return {
        "version": package_version(),
        "git": git_commit(),
        "source": source_hash(),
        "targets": {target: target_hash(target) for target in targets(config)},
    }


def same_code(recorded: Any, current: dict[str, Any]) -> bool:
    return isinstance(recorded, dict) and all(recorded.get(key) == current[key] for key in COMPARED)
