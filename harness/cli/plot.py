"""Rebuild every figure and the report of one or more sweeps from their stored tables; no model runs.

    python -m harness.plot results/quickstart/2026-11-22_10-00-00
    python -m harness.plot results/quickstart/<time> --where cell=lstm,gru --out results/gated
    python -m harness.plot results/scale/<a> results/scale/<b> --out results/scale/both
    python -m harness.plot results/quickstart/<time> --svg      # vector copies of the figures too

A folder without aggregate tables (a sweep that failed or was interrupted) is collected first.
With --where or several folders, --out names where the figures, tables and report go.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

from harness.cli.exits import exit_quickly, stop_on_sigterm
from harness.cli.paths import sweep_origin
from harness.core.errors import HarnessError
from harness.lab.rebuild import check_out, plot


def main(argv: list[str] | None = None) -> int:
    exit_quickly()
    matplotlib.use("Agg")  # figures are files; the command line needs no display
    parser = argparse.ArgumentParser(prog="python -m harness.plot", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep (or run) folders")
    parser.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE[,VALUE...]", help="keep only these runs (repeatable)"
    )
    parser.add_argument("--out", type=Path, help="where to write (default: the one folder given)")
    parser.add_argument("--svg", action="store_true", help="an SVG copy of every figure beside its PNG")
    args = parser.parse_args(argv)
    if args.out is None and (len(args.folders) > 1 or args.where):
        parser.error("--out is needed with several folders or --where")
    stop_on_sigterm()
    try:
        check_out(args.folders, args.out, filtered=bool(args.where) or len(args.folders) > 1)
        origin = sweep_origin(args.folders[0]) if len(args.folders) == 1 else (None, None)
        return plot(args.folders, args.out or args.folders[0], args.where, args.svg, *origin)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: the figures in {args.out or args.folders[0]} may be incomplete; run the same command "
            "again to draw them",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
