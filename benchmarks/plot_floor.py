"""`python -m harness.plot` on the 288-run grid against the least its pages can cost, in one go.

    python benchmarks/plot_floor.py               # sweeps the grid first (1-3 min), then measures
    python benchmarks/plot_floor.py --dir DIR     # a finished sweep of that grid (or any sweep)

Prints, best of --repeats on this machine:
  harness.plot   `python -m harness.plot DIR` end to end, in a fresh process (start-up, tables,
                 every figure page, the report);
  floor          what any matplotlib command drawing the same pages pays: the start-up of Python,
                 pandas and pyplot alone, plus the pages harness.plot drew (the same number, each of
                 the same size with its axes where harness.plot put them, a title, an axis label and
                 one 80-point line per panel, saved as PNG at the same dpi) with nothing else drawn and
                 no layout engine, divided among the cores as harness.plot divides its figures;
  ratio          harness.plot / floor;
and, to see where the rest goes: harness.plot's start-up alone (a fresh process importing its command,
and whether that loads torch) and one such page with constrained layout, as the figures are drawn.

The grid is benchmarks/sweep.py's: 3 cells x 2 activations x 12 scales x 4 seq_lens of small probe runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/sweep.py's grid
from sweep import SWEEPS  # noqa: E402

DPI = 130  # harness.lab.figures.output.DPI


def timed(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def grid(out: Path) -> Path:
    """The 288-run grid swept into out (the fast path)."""
    command = [sys.executable, "-m", "harness", "-m", *SWEEPS["grid"], f"hydra.sweep.dir={out}"]
    subprocess.run(command, check=True, capture_output=True)
    return out


PAGES = """
import json, sys
import matplotlib
matplotlib.use("Agg")
from harness.lab import figures
from harness.lab.rebuild import load

shapes = []
def record(fig, path, caption):
    spec = next((ax.get_subplotspec() for ax in fig.axes if ax.get_subplotspec() is not None), None)
    shapes.append({
        "size": list(fig.get_size_inches()),
        "axes": [list(ax.get_position().bounds) for ax in fig.axes],
        "grid": list(spec.get_gridspec().get_geometry()) if spec is not None else [1, len(fig.axes)],
    })
    matplotlib.pyplot.close(fig)
    return figures.Drawn(path.with_suffix(".png"), caption)

figures.save = record  # every page passes here (harness.lab.figures.Figure.__call__); nothing is written
profile, summary, losses = load(__import__("pathlib").Path(sys.argv[1]))
figures.make_figures(sys.argv[2], profile, summary, losses, workers=1)
print(json.dumps(shapes))
"""


def page_shapes(folder: Path) -> list[dict]:
    """The size and axes positions of every page harness.plot draws for folder (drawn, not written)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run(
            [sys.executable, "-c", PAGES, str(folder), scratch], check=True, capture_output=True, text=True
        )
    return __import__("json").loads(out.stdout.splitlines()[-1])


def empty_page(shape: dict, path: Path, layout: str | None) -> None:
    """One page of that shape with nothing drawn: per panel a title, an axis label and one 80-point line."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=shape["size"], layout=layout)
    if layout is None:  # each panel where harness.plot put it
        panels = [fig.add_axes(bounds) for bounds in shape["axes"]]
    else:  # the layout engine places them: the page's grid
        panels = fig.subplots(*shape["grid"], squeeze=False).flat
    for ax in panels:
        ax.plot(np.arange(80), np.linspace(0, -5, 80))
        ax.set_title("cell=rnn, activation=tanh, seq_len=80", fontsize=9)
        ax.set_xlabel("lag k = T - t (steps back from the loss)")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def page_time(shape: dict, layout: str | None, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            empty_page(shape, Path(scratch) / "page.png", layout)
            times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="a finished sweep (default: sweep the 288-run grid first)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.dir or grid(Path(scratch) / "grid")
        shapes = page_shapes(folder)
        cores = min(len(os.sched_getaffinity(0)), max(len(shapes), 1))
        plot = timed([sys.executable, "-m", "harness.plot", str(folder)], args.repeats)
        start_up = timed([sys.executable, "-c", "import pandas, matplotlib.pyplot"], args.repeats)
        command = "import sys, harness.cli.plot; print('torch' in sys.modules)"
        own_start = timed([sys.executable, "-c", command], args.repeats)
        torch = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True).stdout.strip()
        pages = [page_time(shape, None, args.repeats) for shape in shapes]
        largest = max(range(len(shapes)), key=lambda i: len(shapes[i]["axes"]))
        laid_out = page_time(shapes[largest], "constrained", args.repeats)
    floor = min(start_up) + sum(pages) / cores
    print(f"sweep: {folder if args.dir else 'the 288-run grid'}; {len(shapes)} pages; {cores} cores")
    print(
        f"harness.plot {min(plot):.2f} s (median {statistics.median(plot):.2f}); floor {floor:.2f} s = "
        f"start-up {min(start_up):.2f} + pages {sum(pages):.2f} / {cores} cores; ratio {min(plot) / floor:.2f}x"
    )
    print(
        f"start-up of harness.plot's command alone {min(own_start):.2f} s (torch loaded: {torch}); "
        f"the largest page ({len(shapes[largest]['axes'])} panels) with constrained layout {laid_out:.2f} s, "
        f"without {pages[largest]:.2f} s"
    )


if __name__ == "__main__":
    main()
