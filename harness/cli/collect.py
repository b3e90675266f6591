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
import pandas as pd

from harness.cli.exits import stop_on_sigterm
from harness.cli.paths import sweep_origin
from harness.lab.figures import make_figures
from harness.lab.report import write_report
from harness.core.errors import HarnessError
from harness.core.runfolder import PROFILE
from harness.lab.results import collect

ATTENTION = ["failed", "incomplete", "damaged", "skipped", "not_run"]  # listed after the summary line; exit 1
NOTED = ["duplicate"]  # listed too, but its run was read from another folder


def collect_and_report(root: Path) -> pd.DataFrame:
    """Write root's tables and figures, print where they are and which runs need attention."""
    profile, summary, losses = collect(root)
    figures = make_figures(root, profile, summary[summary.status != "duplicate"], losses)  # a run once
    command, question = sweep_origin(root)
    report = write_report(root, summary, figures, source=root, command=command, question=question)
    counts = summary.status.value_counts().to_dict()
    print(f"{root}: {len(summary)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())})")
    tables = [root / "summary.csv", root / PROFILE]
    written = {"tables": ", ".join(map(str, tables)) if all(p.exists() for p in tables) else "",
               "figures": root / "figures" if figures else "", "report": report}
    print("; ".join(f"{what}: {where}" for what, where in written.items() if where))
    for row in summary[summary.status.isin(ATTENTION + NOTED)].itertuples():
        error = getattr(row, "error", None)
        print(f"  {row.status}: {row.run_dir}" + (f" ({error})" if isinstance(error, str) and error else ""))
    return summary


def main(argv: list[str] | None = None) -> int:
    matplotlib.use("Agg")  # figures are files; the command line needs no display
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.collect RESULTS_DIR", file=sys.stderr)
        return 2
    stop_on_sigterm()
    root = Path(args[0])
    try:
        summary = collect_and_report(root)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: the tables of {root} may be incomplete; run the same command again to write them",
              file=sys.stderr)
        return 130
    return int(summary.status.isin(ATTENTION).any())


if __name__ == "__main__":
    sys.exit(main())
