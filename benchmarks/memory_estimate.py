"""How close the memory estimate (harness.core.memory.estimate) comes to what a run really uses.

    python benchmarks/memory_estimate.py                  # every case, about 5 minutes on 2 cores
    python benchmarks/memory_estimate.py --only lstm      # the cases whose name contains "lstm"

Each case runs as its own process (`python -m harness KEY=VALUE ... hydra.run.dir=<tmp>`), and its peak
resident memory is read from the kernel when it exits (os.wait4's ru_maxrss: the whole process, its
interpreter and torch included, which is what the estimate must cover). The estimate is computed here,
in this process, from the same overrides composed the way the command line composes them before a run
(harness.cli.main.check_command), with the memory it would see available. Prints a markdown table:
case | estimate | peak RSS | estimate/peak, and exits 1 if any ratio is below 1 (the estimate was
short) or above MAX_RATIO (it would refuse runs that fit).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from harness.cli.hydra_internals import load_master
from harness.cli.paths import CONF_DIR
from harness.core.memory import available_memory, estimate, size
from harness.core.spec import RunSpec, config_columns

ROOT = Path(__file__).resolve().parent.parent
MAX_RATIO = 1.5

# (name, overrides): the four of issue 23, then the cells, training, units, the spectrum and float64.
CASES = [
    ("rnn long narrow", "seq_len=200000 hidden_size=16 input_size=16 batch_size=4"),
    ("lstm autograd", "cell=lstm recorder=autograd seq_len=20000 hidden_size=64 batch_size=32"),
    ("lru", "cell=lru seq_len=5000 hidden_size=64 batch_size=32"),
    ("rnn hidden 8000", "hidden_size=8000"),
    ("lstm exact", "cell=lstm seq_len=10000 hidden_size=128 batch_size=32"),
    ("gru exact", "cell=gru seq_len=10000 hidden_size=128 batch_size=32"),
    ("adding trained", "task=adding train.steps=20 train.record_every=10 seq_len=2000 hidden_size=128 batch_size=32"),
    ("units", "record.units=true seq_len=5000 hidden_size=128 batch_size=32"),
    ("spectrum", "theory.spectrum_k=32 seq_len=5000 hidden_size=256 batch_size=32"),
    ("float64 linear", "dtype=float64 activation=identity hidden_size=3000"),
]


def spec_of(overrides: list[str]) -> RunSpec:
    """The run's validated spec, composed as the command line does before it runs (check_command)."""
    _, master = load_master(str(CONF_DIR), overrides, False)
    config = OmegaConf.to_container(master, resolve=False)
    config.pop("hydra")
    return RunSpec.from_columns(config_columns(OmegaConf.to_container(OmegaConf.create(config), resolve=True)))


def peak_rss(overrides: list[str]) -> tuple[int, float]:
    """(peak resident bytes, seconds) of one run of `python -m harness overrides` in a folder of its own."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "harness", *overrides, f"hydra.run.dir={folder}/run"]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        if process.returncode:
            sys.exit(f"{' '.join(overrides)}: exit {process.returncode}\n{output.decode(errors='replace')[-3000:]}")
    return usage.ru_maxrss * 1024, elapsed  # Linux reports kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args()
    available = available_memory()
    rows, bad = [], []
    for name, line in CASES:
        if args.only not in name:
            continue
        overrides = line.split()
        parts = estimate(spec_of(overrides), available)
        total = sum(parts.values())
        peak, seconds = peak_rss(overrides)
        ratio = total / peak
        rows.append(f"| {name}: `{line}` | {size(total)} | {size(peak)} | {ratio:.2f} |")
        print(
            f"{name}: {size(total)} estimated, {size(peak)} peak, {seconds:.0f} s; "
            + ", ".join(f"{part} {size(n)}" for part, n in parts.items() if n),
            file=sys.stderr,
            flush=True,
        )
        if not 1 <= ratio <= MAX_RATIO:
            bad.append(name)
    print("| case | estimate | peak RSS | estimate/peak |\n|---|---|---|---|")
    print("\n".join(rows))
    if bad:
        sys.exit(f"estimate/peak outside [1, {MAX_RATIO}]: {', '.join(bad)}")


if __name__ == "__main__":
    main()
