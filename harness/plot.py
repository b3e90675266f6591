"""Rebuild the figures of a sweep (or one run) from its stored tables; no model is run.

    python -m harness.plot results/quickstart/2026-11-22_10-00-00
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from harness.plots import make_figures
from harness.results import PROFILE, collect


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.plot RESULTS_DIR", file=sys.stderr)
        return 2
    root = Path(args[0])
    profile = pd.read_parquet(root / PROFILE) if (root / PROFILE).exists() else collect(root)[0]
    for path in make_figures(root, profile):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
