"""The fixed cost of a sweep, this project's sweeper against Hydra's basic one, on the same grids.

    python benchmarks/fixed_cost.py               # 48 and 96 configurations, both paths, 3 repeats (~3 min)
    python benchmarks/fixed_cost.py --repeats 5

A sweep of N configurations costs fixed + N x marginal, end to end in a fresh process (Python and its
imports, validation, composition, the runs, the tables, figures and report). Timing the same grid at
N = 48 and 2N = 96 (the seeds doubled) gives both: marginal = (T(2N) - T(N)) / N and
fixed = T(N) - N x marginal = 2 T(N) - T(2N). Medians of --repeats, the two paths alternating so that
the machine's drift falls on both.
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
SEEDS = {48: "seed=0,1,2,3", 96: "seed=0,1,2,3,4,5,6,7"}


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
    print("| path | T(48) | T(96) | marginal per config | fixed |\n|---|---|---|---|---|")
    for name in PATHS:
        t48, t96 = (statistics.median(times[name, n]) for n in SEEDS)
        marginal = (t96 - t48) / 48
        print(f"| {name} | {t48:.2f} | {t96:.2f} | {marginal * 1000:.0f} ms | {t48 - 48 * marginal:.2f} s |")


if __name__ == "__main__":
    main()
