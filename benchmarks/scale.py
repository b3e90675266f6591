"""Sweeps of 10^2 to 10^4 tiny configurations: the cost of each stage per configuration, which must stay
flat as the grid grows (issue 26, item 3).

    python benchmarks/scale.py                      # 10^2, 10^3 and 10^4 (~15 min on 2 cores)
    python benchmarks/scale.py --sizes 100 1000     # fewer
    python benchmarks/scale.py --full-up-to 1000    # 10^4: composition and first run only (~1 min)

Each size N is the grid seq_len=10 hidden_size=4 scale=<S values> seed=range(N/S) (S = 100, or N
below 100), measured stage by stage:
  compose     validation and composition of the whole grid in this process (harness.cli.main's
              check_command, whole_sweep=True: every override value, every job composed and checked)
  first run   the real command, from its start to its first run folder (Python and its imports,
              the checks, composition, the sweep folder and manifest)
  sweep       the real command to its end: its runs, then its table stage ("tables and figures", as
              the sweep prints it); the sweeping process's peak resident memory (VmHWM, read from
              /proc while it runs, so its forked run process is not counted) and, of it, the peak of
              what the process allocated itself (RssAnon, sampled every POLL_S; the rest of its
              resident memory is file-backed: the code of torch and the other libraries, shared with
              every process that loads them and given back under memory pressure without a write)
  collect     python -m harness.collect on the finished sweep folder (wall, peak RSS)
  plot        python -m harness.plot on it, into a folder of its own (wall, peak RSS)
Sizes above --full-up-to stop the sweep (SIGTERM, which removes the unfinished run) once its first run
folder is there: compose and first run only, and the sweeping process's peak RSS until then.
Per configuration: the stage's time / N. Fixed costs (Python start-up, ~3 s, in first run, collect and
plot) are in the totals, so their per-configuration cost falls with N; composition's is its own.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALES = 100  # scale values in a grid of N >= 100 configurations; seeds make up the rest
POLL_S = 0.05
STAGES = ("compose_s", "first_s", "sweep_s", "tables_s", "collect_s", "plot_s")


def grid(n: int) -> list[str]:
    scales, seeds = min(n, SCALES), max(1, n // SCALES)
    return [
        "seq_len=10",
        "hidden_size=4",
        f"scale=range(0.03,{0.03 * scales + 0.001:.3f},0.03)",
        f"seed=range(0,{seeds})",
    ]


def compose_s(n: int) -> float:
    """Validation and composition of the grid, in this process (imports done before the clock starts)."""
    code = (
        "import sys, time; from harness.cli.main import check_command\n"
        "start = time.perf_counter(); check_command(sys.argv[1:], whole_sweep=True)\n"
        "print(time.perf_counter() - start)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-c", code, "-m", *grid(n), f"hydra.sweep.dir={tmp}/s"]
        return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])


def resident_mb(pid: int) -> tuple[float, float] | None:
    """(peak resident memory, anonymous resident memory now) of a running process, in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = [re.search(rf"{key}:\s+(\d+)", status) for key in ("VmHWM", "RssAnon")]
    if not all(found):  # none once the process has exited (a zombie)
        return None
    return int(found[0].group(1)) / 1024, int(found[1].group(1)) / 1024


def timed(command: list[str], log: Path, first: Path | None = None, stop: bool = False) -> dict[str, float]:
    """Run command to its end (or, with stop, until `first` exists): wall seconds, the process's peak
    RSS and peak anonymous RSS (MB), and the seconds to `first` existing, if given."""
    start, found, peak, anon = time.perf_counter(), None, 0.0, 0.0
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)
        while process.poll() is None:
            peak, anon = (max(old, new) for old, new in zip((peak, anon), resident_mb(process.pid) or (0.0, 0.0)))
            if first is not None and found is None and first.exists():
                found = time.perf_counter() - start
                if stop:
                    process.send_signal(signal.SIGTERM)
                    process.wait()
                    return {"wall_s": found, "rss_mb": peak, "anon_mb": anon, "first_s": found}
            time.sleep(POLL_S)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    return {"wall_s": time.perf_counter() - start, "rss_mb": peak, "anon_mb": anon, "first_s": found or float("nan")}


def measure(n: int, tmp: Path, full: bool) -> dict[str, float]:
    folder = tmp / f"sweep{n}"
    row: dict[str, float] = {"n": n, "compose_s": compose_s(n)}
    harness = [sys.executable, "-m", "harness", "-m", *grid(n), f"hydra.sweep.dir={folder}"]
    log = tmp / f"sweep{n}.log"
    sweep = timed(harness, log, first=folder / "0" / ".hydra" / "config.yaml", stop=not full)
    row.update(first_s=sweep["first_s"], sweep_rss_mb=sweep["rss_mb"], sweep_anon_mb=sweep["anon_mb"])
    if not full:
        return row
    stages = re.search(r"sweep ([0-9.]+) s, tables and figures ([0-9.]+) s", log.read_text())
    row.update(sweep_s=sweep["wall_s"], tables_s=float(stages.group(2)))
    collect = timed([sys.executable, "-m", "harness.collect", str(folder)], tmp / f"collect{n}.log")
    plot = [sys.executable, "-m", "harness.plot", str(folder), "--out", str(tmp / f"plot{n}")]
    drawn = timed(plot, tmp / f"plot{n}.log")
    row.update(
        collect_s=collect["wall_s"],
        collect_rss_mb=collect["rss_mb"],
        plot_s=drawn["wall_s"],
        plot_rss_mb=drawn["rss_mb"],
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--full-up-to", type=int, default=10_000, help="larger sizes: composition and first run only")
    parser.add_argument(
        "--keep", type=Path, help="write the sweeps here (to look at their figures) instead of a temporary folder"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            rows.append(measure(n, where, n <= args.full_up_to))
            print(f"  {n}: {rows[-1]}", file=sys.stderr)
    print(f"cores: {os.cpu_count()}; ms per configuration (total s); RSS: peak resident MB (anonymous)\n")
    print(
        "| N | compose | first run | sweep | table stage | sweep RSS (anon) | collect | collect RSS | plot | plot RSS |"
        "\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        cells = [f"{1000 * r[k] / r['n']:.2f} ({r[k]:.1f})" if k in r else "" for k in STAGES]
        rss = [f"{r[k]:.0f}" if k in r else "" for k in ("sweep_rss_mb", "collect_rss_mb", "plot_rss_mb")]
        print(
            f"| {r['n']} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {rss[0]} ({r['sweep_anon_mb']:.0f}) "
            f"| {cells[4]} | {rss[1]} | {cells[5]} | {rss[2]} |"
        )


if __name__ == "__main__":
    main()
