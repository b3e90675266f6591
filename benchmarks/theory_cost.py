"""What the theory columns cost beside the recording they sit next to, in one run of this script.

    python benchmarks/theory_cost.py                       # T=1000, hidden 128, batch 32, float32
    python benchmarks/theory_cost.py --hidden 64           # the spectrum's target: k = hidden at hidden 64

For rnn, lstm and gru: the exact recorder (harness.core.segments.record_profile, in memory unless
--segment), the same recording carrying the largest Lyapunov exponent's tangent (theory.CarriedTangent,
what runs of built-in cells use) and what carrying it adds, the exponent in a pass of its own with the
cells' own JVP (RecurrentNet.step_jvp) and with the generic double-backward JVP (theory.jvp, what user
cells use), and the top-k Lyapunov spectrum (theory.spectrum_k = k, default k = the state size: every
exponent); the median of 5 rounds (each round runs every variant once, in turn), seconds, and ratios
to the recording. Last, for the rnn, the floor: a bare loop of
the forward's addmm and tanh, and the same loop with the fewest torch ops a tangent step adds (its
matmul, the product with tanh', its norm and division): what a tangent must add to a forward pass
it shares, and what a pass of its own must cost, against the recording.
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


def medians(functions: dict, repeats: int) -> dict[str, float]:
    """Each function's median time in seconds, run in turn, round after round (A B C A B C ...), so
    that a machine whose speed drifts slows them all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def bare_rnn_loop(model, x: torch.Tensor, tangent: bool) -> None:
    """A tanh rnn's forward, with the largest exponent's least work per step if asked, nothing else."""
    w, b = model.weight_hh_l0.detach(), model.bias_hh_l0.detach()
    drives = torch.nn.functional.linear(x, model.weight_ih_l0.detach(), model.bias_ih_l0.detach()) + b
    h = torch.zeros(x.shape[1], w.shape[0])
    v = torch.ones_like(h)
    with torch.no_grad():
        for drive in drives:
            h = torch.tanh(torch.addmm(drive, h, w.t()))
            if tangent:
                v = (1 - h * h) * (v @ w.t())
                v = v / v.norm(dim=-1, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spectrum-k", type=int, help="exponents of the spectrum (default: the state size)")
    parser.add_argument("--segment", type=int, help="record in segments of this many steps (default: in memory)")
    args = parser.parse_args()
    flush_denormals_everywhere()
    segment = args.segment or args.seq_len
    print(
        f"T={args.seq_len} hidden={args.hidden} batch={args.batch} segment={segment} float32, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"{'cell':6} {'record s':>9} {'+carried s':>10} {'carried adds':>12} {'own pass s':>11} {'own/record':>11} "
        f"{'generic s':>10} {'generic/record':>15} {'k':>4} {'spectrum s':>11} {'spectrum/record':>16}"
    )
    for cell in ("rnn", "lstm", "gru"):
        model = build(cell, "tanh", args.hidden, args.hidden, 1, {}).double()
        initialise(model, "default", 1.0, torch.Generator().manual_seed(0))
        model = model.float()
        x = torch.randn(args.seq_len, args.batch, args.hidden)
        readout = torch.randn(args.hidden)

        def recording(tangent: bool = False) -> None:
            carried = (
                theory.CarriedTangent(model, args.seq_len, args.batch, torch.Generator().manual_seed(1), x)
                if tangent
                else None
            )
            record_profile(model, x, lambda out: (out[-1] @ readout).sum(), True, "exact", segment, tangent=carried)

        k = args.spectrum_k or sum(model.block_sizes)
        t = medians(
            {
                "record": recording,
                "carried": lambda: recording(tangent=True),
                "own": lambda: theory.lyapunov_exponent(model, x, torch.Generator().manual_seed(1)),
                "generic": lambda: theory.lyapunov_spectrum(model, x, torch.Generator().manual_seed(1), analytic=False),
                "spectrum": lambda: theory.lyapunov_spectrum(model, x, torch.Generator().manual_seed(1), k),
            },
            args.repeats,
        )
        record = t["record"]
        print(
            f"{cell:6} {record:9.3f} {t['carried']:10.3f} {t['carried'] / record - 1:12.2f} {t['own']:11.3f} "
            f"{t['own'] / record:11.2f} {t['generic']:10.3f} {t['generic'] / record:15.2f} {k:4d} "
            f"{t['spectrum']:11.3f} {t['spectrum'] / record:16.2f}"
        )
        if cell == "rnn":
            bare = medians(
                {
                    "forward": lambda: bare_rnn_loop(model, x, tangent=False),
                    "both": lambda: bare_rnn_loop(model, x, tangent=True),
                },
                args.repeats,
            )
            floor_line = (
                f"floor (rnn, bare loops): the tangent adds {(bare['both'] - bare['forward']) / record:.2f} of "
                f"the recording to a forward it shares, a pass of its own costs {bare['both'] / record:.2f} "
                f"({1e6 * bare['forward'] / args.seq_len:.0f} and {1e6 * bare['both'] / args.seq_len:.0f} us "
                "per step)"
            )
    print(floor_line)


if __name__ == "__main__":
    main()
