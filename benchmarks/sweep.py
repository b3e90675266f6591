"""Sweep speed: the fast path (this project's sweeper) against Hydra's basic path and joblib worker
processes, each beside the sum of its runs' own compute, all measured in one go on this machine.

    python benchmarks/sweep.py              # quickstart + the 288-configuration sweep (~8 min on 2 cores)
    python benchmarks/sweep.py --only grid  # just the 288-configuration sweep

The 288 sweep is 3 cells x 2 activations x 12 scales x 4 seq_lens of small probe runs (hidden 32,
batch 16, seq_len 10-80: 10-100 ms of compute each). Every path runs the same command line in a
fresh process, so times include Python and torch start-up and the final tables and figures.
Columns: wall (the command, end to end); compute (the sum of the runs' own wall_time_s, which
harness.run measures around the model, recorder and theory); overhead/config = (wall - compute) / runs,
everything else a configuration costs; sweep-phase overhead/config = (composing + running - compute)
/ runs, from the sweeper's own clock (sweep.json), i.e. without start-up and collection; speed-up
against the basic path. For worker processes compute is spread over the workers, so only wall and
speed-up compare.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SCALES = "0.25,0.5,0.75,0.9,1.0,1.1,1.25,1.5,2.0,2.5,3.0,4.0"
SWEEPS = {
    "quickstart": ["experiment=quickstart"],
    "grid": ["cell=rnn,lstm,gru", "activation=tanh,relu", f"scale={SCALES}", "seq_len=10,20,40,80",
             "init=gaussian", "hidden_size=32", "input_size=32", "batch_size=16", "name=bench"],
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
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = pd.read_parquet(out / "summary.parquet")
    runs, compute = len(summary), summary.wall_time_s.sum()
    row = {"sweep": sweep, "path": path, "runs": runs, "wall_s": wall, "compute_s": compute,
           "overhead_ms_per_config": 1000 * (wall - compute) / runs}
    manifest = out / "sweep.json"
    if manifest.exists() and "workers" not in path:
        last = json.loads(manifest.read_text())["invocations"][-1]
        row["sweep_phase_overhead_ms_per_config"] = 1000 * (last["compose_s"] + last["runs_s"] - compute) / runs
    return row


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
    basic = table[table.path == "basic (Hydra's)"].set_index("sweep").wall_s
    table["speed_up_vs_basic"] = basic.reindex(table.sweep).to_numpy() / table.wall_s
    print(f"cores: {os.cpu_count()}; torch threads: default in process, cores / workers in workers\n")
    print("| sweep | path | runs | wall s | compute s | overhead ms/config | sweep-phase overhead ms/config "
          "| speed-up vs basic |")
    print("|---|---|---|---|---|---|---|---|")
    for row in table.itertuples():
        phase = getattr(row, "sweep_phase_overhead_ms_per_config", float("nan"))
        print(f"| {row.sweep} | {row.path} | {row.runs} | {row.wall_s:.1f} | {row.compute_s:.1f} "
              f"| {row.overhead_ms_per_config:.1f} | {'' if phase != phase else f'{phase:.1f}'} "
              f"| {row.speed_up_vs_basic:.2f} |")
    for sweep, group in table.groupby("sweep", sort=False):
        walls = group.set_index("path").wall_s
        if {"joblib, 1 worker", "joblib, 2 workers"} <= set(walls.index):
            print(f"{sweep}: 2 workers are {walls['joblib, 1 worker'] / walls['joblib, 2 workers']:.2f}x one")


if __name__ == "__main__":
    main()
