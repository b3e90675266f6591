"""Rebuild a sweep's aggregate tables, figures and report from its run folders.

    python -m harness.collect results/quickstart/2026-11-22_10-00-00

Works after a failed or interrupted sweep too: finished runs are read, the others are listed in the
summary as failed, incomplete or (named in the sweep's manifest, with no run folder) not_run. Exit
status 1 if any run needs attention (ATTENTION); a duplicate folder of a run is listed, but the run is
there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

from harness.cli.exits import exit_quickly, stop_on_sigterm
from harness.cli.paths import sweep_origin
from harness.core.errors import HarnessError
from harness.lab.rebuild import ATTENTION, collect_and_report


def main(argv: list[str] | None = None) -> int:
    exit_quickly()
    matplotlib.use("Agg")  # figures are files; the command line needs no display
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.collect RESULTS_DIR", file=sys.stderr)
        return 2
    stop_on_sigterm()
    root = Path(args[0])
    try:
        summary = collect_and_report(root, *sweep_origin(root))
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: the tables of {root} may be incomplete; run the same command again to write them",
            file=sys.stderr,
        )
        return 130
    return int(summary.status.isin(ATTENTION).any())


if __name__ == "__main__":
    sys.exit(main())
