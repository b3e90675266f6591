"""The least a figure page can cost here: what bounds `python -m harness.plot` from below.

    python benchmarks/plot_floor.py

Prints, best of 3 on this machine: the start-up of `harness.plot` (a fresh process importing the
command, so Python, pandas, matplotlib, Hydra's config classes and torch) and of any plotting command
(Python, pandas and pyplot alone), and the time matplotlib takes to lay out and save one page shaped
like the sweep figures' pages (6 x 3 panels, 4.2 x 3.3 inches each, a title and axis labels per
panel, 130 dpi as harness.lab.figures saves) holding a single 80-point line per panel, that is with
almost nothing drawn, with constrained layout (as drawn) and with none. A sweep's figures cannot be
drawn faster than start-up + pages x that page time / cores.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def empty_page(path: Path, layout: str | None) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(6, 3, figsize=(4.2 * 3 + 1.2, 3.3 * 6), layout=layout, sharey=True)
    for ax in axes.flat:
        ax.plot(np.arange(80), np.linspace(0, -5, 80))
        ax.set_title("cell=rnn, activation=tanh, seq_len=80", fontsize=9)
        ax.set_xlabel("lag k = T - t (steps back from the loss)")
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")

    def start_up(code: str) -> float:
        return best(lambda: subprocess.run([sys.executable, "-c", code], check=True))

    print(
        f"start-up, fresh process: harness.plot {start_up('import harness.cli.plot'):.2f} s, "
        f"pandas + pyplot alone {start_up('import pandas, matplotlib.pyplot'):.2f} s"
    )
    with tempfile.TemporaryDirectory() as folder:
        for layout in ("constrained", None):
            page = best(lambda: empty_page(Path(folder) / "page.png", layout))
            print(f"one 18-panel page, one line per panel, layout={layout}: {page:.2f} s")


if __name__ == "__main__":
    main()
