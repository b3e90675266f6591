"""The fixed cost of a sweep, this project's sweeper against Hydra's basic one, on the same grids.

    python benchmarks/fixed_cost.py               # 24, 48 and 96 configurations, both paths, 3 repeats (~4 min)
    python benchmarks/fixed_cost.py --repeats 5

A sweep of N configurations costs fixed + N x marginal, end to end in a fresh process (Python and its
imports, validation, composition, the runs, the tables, figures and report). The same grid is timed
at N = 24, 48 and 96 (the seeds doubled, then doubled again) and the line T = fixed + N x marginal
fitted through the three medians (least squares). Beside the fit, the estimate of fixed from each pair
of sizes, 2 T(N) - T(2N) for N = 24 and 48: the spread between them is what this machine's noise
leaves of the estimate (it carries the whole noise of T(2N), seconds of runs on Hydra's path).
Medians of --repeats, the two paths alternating so that the machine's drift falls on both.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["cell=rnn,lstm,gru", "scale=0.5,1,2,4", "seq_len=10", "hidden_size=8", "batch_size=4", "name=fixed"]
PATHS = {"fast (this sweeper)": [], "basic (Hydra's)": ["hydra/sweeper=basic", "hydra/launcher=basic"]}
SEEDS = {24: "seed=0,1", 48: "seed=0,1,2,3", 96: "seed=0,1,2,3,4,5,6,7"}


def wall(path: list[str], seeds: str, out: Path) -> float:
    command = [sys.executable, "-m", "harness", "-m", *GRID, seeds, *path, f"hydra.sweep.dir={out}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[tuple[str, int], list[float]] = {(p, n): [] for p in PATHS for n in SEEDS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, path in PATHS.items():
                for n, seeds in SEEDS.items():
                    times[name, n].append(wall(path, seeds, Path(tmp) / f"{repeat}-{n}-{len(path)}"))
    print(f"medians of {args.repeats}; seconds end to end\n")
    print(
        "| path | T(24) | T(48) | T(96) | marginal per config (fit) | fixed (fit) | fixed from 24, 48 / 48, 96 |\n"
        "|---|---|---|---|---|---|---|"
    )
    for name in PATHS:
        t24, t48, t96 = medians = [statistics.median(times[name, n]) for n in SEEDS]
        marginal, fixed = statistics.linear_regression(list(SEEDS), medians)
        print(
            f"| {name} | {t24:.2f} | {t48:.2f} | {t96:.2f} | {marginal * 1000:.0f} ms | {fixed:.2f} s "
            f"| {2 * t24 - t48:.2f} s / {2 * t48 - t96:.2f} s |"
        )


if __name__ == "__main__":
    main()
