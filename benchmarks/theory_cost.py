"""What the theory columns cost beside the recording they sit next to, in one run of this script.

    python benchmarks/theory_cost.py            # T=1000, hidden 128, batch 32, float32

For rnn, lstm and gru: the exact recorder (harness.core.segments.record_profile, in memory), the
largest Lyapunov exponent with the cells' own JVP (RecurrentNet.step_jvp, what runs use) and with the
generic double-backward JVP (theory.jvp, what user cells use); best of 3, seconds, and ratios.
"""
from __future__ import annotations

import argparse
import time

import torch

from harness.core import theory
from harness.core.init import initialise
from harness.core.networks import build
from harness.core.recorders import flush_denormals_everywhere
from harness.core.segments import record_profile


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def generic_lyapunov(model, inputs, generator) -> float:
    """theory.lyapunov_exponent as it was before the cells' JVP: the double-backward JVP every step."""
    batch = inputs.shape[1]
    state = torch.zeros(batch, sum(model.block_sizes), dtype=inputs.dtype)
    tangent = torch.randn(state.shape, generator=generator, dtype=torch.float64).to(state)
    tangent /= tangent.norm(dim=1, keepdim=True)
    for drive in model.input_drive(inputs):
        state, tangent = theory.jvp(lambda s: model.step(s, drive), state, tangent)
        tangent = tangent / tangent.norm(dim=1, keepdim=True)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    flush_denormals_everywhere()
    print(f"T={args.seq_len} hidden={args.hidden} batch={args.batch} float32, {torch.get_num_threads()} threads")
    print(f"{'cell':6} {'record s':>9} {'lyapunov s':>11} {'generic s':>10} {'theory/record':>14} {'generic/record':>15}")
    for cell in ("rnn", "lstm", "gru"):
        model = build(cell, "tanh", args.hidden, args.hidden, 1, {}).double()
        initialise(model, "default", 1.0, torch.Generator().manual_seed(0))
        model = model.float()
        x = torch.randn(args.seq_len, args.batch, args.hidden)
        readout = torch.randn(args.hidden)
        recording = best(lambda: record_profile(model, x, lambda out: (out[-1] @ readout).sum(), True, "exact",
                                                args.seq_len), args.repeats)
        ours = best(lambda: theory.lyapunov_exponent(model, x, torch.Generator().manual_seed(1)), args.repeats)
        generic = best(lambda: generic_lyapunov(model, x, torch.Generator().manual_seed(1)), args.repeats)
        print(f"{cell:6} {recording:9.3f} {ours:11.3f} {generic:10.3f} {ours / recording:14.2f} {generic / recording:15.2f}")


if __name__ == "__main__":
    main()
