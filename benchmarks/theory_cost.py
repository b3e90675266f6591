"""What the theory columns cost beside the recording they sit next to, in one run of this script.

    python benchmarks/theory_cost.py                       # T=1000, hidden 128, batch 32, float32
    python benchmarks/theory_cost.py --hidden 64           # the spectrum's target: k = hidden at hidden 64

For rnn, lstm and gru: the exact recorder (harness.core.segments.record_profile, in memory), the
largest Lyapunov exponent with the cells' own JVP (RecurrentNet.step_jvp, what runs use) and with the
generic double-backward JVP (theory.jvp, what user cells use), and the top-k Lyapunov spectrum
(theory.spectrum_k = k, default k = the state size: every exponent); best of 3, seconds, and ratios.
Last, for the rnn, the floor: the fewest torch ops any tangent step needs (the forward addmm and
tanh, the tangent's matmul and product with tanh', its norm and division), in a bare loop, against
the recording. No implementation of the largest exponent can cost less than this on this machine.
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


def bare_rnn_tangent(model, x: torch.Tensor) -> None:
    """The largest exponent's least work per step for a tanh rnn, nothing else: no chunks, no logs kept."""
    w, b = model.weight_hh_l0.detach(), model.bias_hh_l0.detach()
    drives = torch.nn.functional.linear(x, model.weight_ih_l0.detach(), model.bias_ih_l0.detach())
    h = torch.zeros(x.shape[1], w.shape[0])
    v = torch.ones_like(h)
    with torch.no_grad():
        for drive in drives:
            h = torch.tanh(torch.addmm(drive + b, h, w.t()))
            v = (1 - h * h) * (v @ w.t())
            v = v / v.norm(dim=-1, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spectrum-k", type=int, help="exponents of the spectrum (default: the state size)")
    args = parser.parse_args()
    flush_denormals_everywhere()
    print(f"T={args.seq_len} hidden={args.hidden} batch={args.batch} float32, {torch.get_num_threads()} threads")
    print(f"{'cell':6} {'record s':>9} {'lyapunov s':>11} {'generic s':>10} {'theory/record':>14} "
          f"{'generic/record':>15} {'k':>4} {'spectrum s':>11} {'spectrum/record':>16}")
    for cell in ("rnn", "lstm", "gru"):
        model = build(cell, "tanh", args.hidden, args.hidden, 1, {}).double()
        initialise(model, "default", 1.0, torch.Generator().manual_seed(0))
        model = model.float()
        x = torch.randn(args.seq_len, args.batch, args.hidden)
        readout = torch.randn(args.hidden)
        recording = best(lambda: record_profile(model, x, lambda out: (out[-1] @ readout).sum(), True, "exact",
                                                args.seq_len), args.repeats)
        ours = best(lambda: theory.lyapunov_exponent(model, x, torch.Generator().manual_seed(1)), args.repeats)
        generic = best(lambda: theory.lyapunov_spectrum(model, x, torch.Generator().manual_seed(1), analytic=False),
                       args.repeats)
        k = args.spectrum_k or sum(model.block_sizes)
        spectrum = best(lambda: theory.lyapunov_spectrum(model, x, torch.Generator().manual_seed(1), k), args.repeats)
        print(f"{cell:6} {recording:9.3f} {ours:11.3f} {generic:10.3f} {ours / recording:14.2f} {generic / recording:15.2f} "
              f"{k:4d} {spectrum:11.3f} {spectrum / recording:16.2f}")
        if cell == "rnn":
            floor = best(lambda: bare_rnn_tangent(model, x), args.repeats)
            floor_line = (f"floor (rnn): a bare tangent loop {floor:.3f} s = {floor / recording:.2f} of the recording, "
                          f"{1e6 * floor / args.seq_len:.0f} us per step")
    print(floor_line)


if __name__ == "__main__":
    main()
