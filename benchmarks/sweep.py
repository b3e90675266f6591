"""Sweep speed: the fast path (this project's sweeper) against Hydra's basic path and joblib worker
processes, each beside the sum of its runs' own compute, all measured in one go on this machine.

    python benchmarks/sweep.py              # quickstart + the 288-configuration sweep (~6 min on 2 cores)
    python benchmarks/sweep.py --only grid  # just the 288-configuration sweep

The 288 sweep is 3 cells x 2 activations x 12 scales x 4 seq_lens of small probe runs (hidden 32,
batch 16, seq_len 10-80: 10-100 ms of compute each). Every path runs the same command line in a
fresh process, so times include Python and torch start-up and the final tables and figures.
Columns: wall (the command, end to end); sweep (from the sweep's start to its last run, as the
results callback prints it: composing, launching and running, without Python start-up and the
final tables and figures, which every path shares); tables + figures; compute (the sum of the runs'
own wall_time_s, measured by harness.lab.run around model, recorder and theory); overhead per
configuration = (sweep - compute) / runs, for the paths that run one configuration at a time;
speed-ups against Hydra's basic path, end to end and for the sweep.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SCALES = "0.25,0.5,0.75,0.9,1.0,1.1,1.25,1.5,2.0,2.5,3.0,4.0"
SWEEPS = {
    "quickstart": ["experiment=quickstart"],
    "grid": [
        "cell=rnn,lstm,gru",
        "activation=tanh,relu",
        f"scale={SCALES}",
        "seq_len=10,20,40,80",
        "init=gaussian",
        "hidden_size=32",
        "input_size=32",
        "batch_size=16",
        "name=bench",
    ],
}
PATHS = {
    "fast (in process)": [],
    "basic (Hydra's)": ["hydra/sweeper=basic", "hydra/launcher=basic"],
    "joblib, 1 worker": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"],
    "joblib, 2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}
ON = {"quickstart": ["fast (in process)", "basic (Hydra's)", "joblib, 2 workers"], "grid": list(PATHS)}


def measure(sweep: str, path: str, out: Path) -> dict:
    command = [sys.executable, "-m", "harness", "-m", *SWEEPS[sweep], *PATHS[path], f"hydra.sweep.dir={out}"]
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    phases = re.search(r"sweep ([0-9.]+) s, tables and figures ([0-9.]+) s", result.stdout)
    summary = pd.read_parquet(out / "summary.parquet")
    return {
        "sweep": sweep,
        "path": path,
        "runs": len(summary),
        "wall_s": wall,
        "sweep_s": float(phases.group(1)),
        "tables_figures_s": float(phases.group(2)),
        "compute_s": summary.wall_time_s.sum(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(SWEEPS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sweep in [args.only] if args.only else list(SWEEPS):
            for path in ON[sweep]:
                rows.append(measure(sweep, path, Path(tmp) / f"{sweep}-{len(rows)}"))
                print(f"  {sweep} / {path}: {rows[-1]['wall_s']:.1f} s", file=sys.stderr)
    table = pd.DataFrame(rows)
    basic = table[table.path == "basic (Hydra's)"].set_index("sweep")
    print(f"cores: {os.cpu_count()}; torch threads: default in process, cores / workers in workers\n")
    print(
        "| sweep | path | runs | wall s | sweep s | tables + figures s | compute s | overhead ms/config "
        "| speed-up vs basic: wall | : sweep |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in table.itertuples():
        # In worker processes the compute runs in parallel: overhead per configuration is not defined.
        overhead = "" if "workers" in row.path else f"{1000 * (row.sweep_s - row.compute_s) / row.runs:.1f}"
        print(
            f"| {row.sweep} | {row.path} | {row.runs} | {row.wall_s:.1f} | {row.sweep_s:.1f} "
            f"| {row.tables_figures_s:.1f} | {row.compute_s:.1f} | {overhead} "
            f"| {basic.wall_s[row.sweep] / row.wall_s:.2f} | {basic.sweep_s[row.sweep] / row.sweep_s:.2f} |"
        )
    for sweep, group in table.groupby("sweep", sort=False):
        times = group.set_index("path")
        if {"joblib, 1 worker", "joblib, 2 workers"} <= set(times.index):
            one, two = times.loc["joblib, 1 worker"], times.loc["joblib, 2 workers"]
            print(
                f"{sweep}: 2 workers are {one.wall_s / two.wall_s:.2f}x one end to end, "
                f"{one.sweep_s / two.sweep_s:.2f}x in the sweep"
            )


if __name__ == "__main__":
    main()
