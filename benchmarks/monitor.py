"""What the training monitor adds to training time, on examples/char_lm.py's language model.

    python benchmarks/monitor.py                  # 300 steps, 3 pairs per configuration (~6 min on 2 cores)
    python benchmarks/monitor.py --steps 100 --pairs 1

Trains the example's model (Embedding -> 2-layer LSTM(128) -> Linear, batch 32, seq_len 64, Adam)
for --steps steps with the monitor off and on, alternately (off, on, off, on, ...: pairs, so drifts
in the machine's speed fall on both), and reports the median wall time of each and the overhead
(on / off - 1). Monitor configurations:
  default    harness.Monitor(model, module=model.lstm, loss=cross_entropy): every 100 steps, 8 sequences,
             the adjoint view of the training loss
  sources    the same with sources=16 and the per-step loss (the example's dependency view)
The target (issue 25): the default monitor adds at most 10%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import char_lm  # noqa: E402

CONFIGURATIONS = {
    "default": {"loss": char_lm.cross_entropy},
    "sources": {"loss": char_lm.cross_entropy_at, "sources": 16},
}


def timed(steps: int, monitor_kwargs: dict | None) -> float:
    start = time.perf_counter()
    char_lm.train(steps, monitor_kwargs=monitor_kwargs)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    timed(5, None)  # warm-up: the corpus read, torch's first calls
    print(f"{'monitor':<10} {'records':>7} {'off (s)':>9} {'on (s)':>9} {'overhead':>9}")
    for name, kwargs in CONFIGURATIONS.items():
        off, on = [], []
        for _ in range(args.pairs):
            off.append(timed(args.steps, None))
            on.append(timed(args.steps, kwargs))
        records = args.steps // 100 + 1
        off_s, on_s = statistics.median(off), statistics.median(on)
        print(f"{name:<10} {records:>7} {off_s:>9.2f} {on_s:>9.2f} {on_s / off_s - 1:>+9.1%}")


if __name__ == "__main__":
    main()
