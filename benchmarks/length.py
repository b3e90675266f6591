"""Recording long sequences: time, peak memory and ratios against fused torch and the in-memory recorder.

    python benchmarks/length.py                         # rnn, lstm, gru at T = 1e3, 1e4, 1e5 (~10 min)
    python benchmarks/length.py --lengths 1000000 --cells lstm --modes segmented   # the 10^6 row (~8 min)
    make bench-length

hidden 64, batch 32, float32, the probe's final-step loss, the exact recorder. Each measurement runs
in a process of its own, so that its peak RSS (ru_maxrss) is its own:
  segmented  harness.core.segments.record_profile with the segment length a run picks (memory.fraction
             0.25: the whole sequence where its steps' coefficients fit, else segments of 8192
             steps), inputs generated as the probe does (streamed beyond 1 GiB)
  in-memory  the same with one segment, where it fits (T <= 1e4)
  fused      torch.nn.RNN/LSTM/GRU forward + backward of the same loss to the inputs, where it fits
             (T <= 1e5): what a plain torch user would run, with no per-step gradient
  run        the segmented recording carrying the largest Lyapunov exponent's tangent, as a run's
             recording at initialisation does (theory.CarriedTangent): the recording and its theory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

HIDDEN, BATCH = 64, 32
MODES = ("segmented", "fused", "in-memory", "run")


def measure(cell: str, seq_len: int, mode: str) -> dict:
    """One measurement in this process: seconds and peak RSS in MB."""
    import torch

    from harness.core.init import initialise
    from harness.core.memory import segment_length
    from harness.core.networks import build
    from harness.core.recorders import flush_denormals_everywhere
    from harness.core.segments import record_profile
    from harness.core.sequences import to_torch
    from harness.core.tasks import probe
    from harness.core.theory import CarriedTangent

    flush_denormals_everywhere()
    generator = torch.Generator().manual_seed(0)
    net = build(cell, "tanh", HIDDEN, HIDDEN, 1, {}).double()
    initialise(net, "default", 1.0, generator)
    net = net.float()
    batch = probe(seq_len, BATCH, generator, input_size=HIDDEN, hidden_size=HIDDEN).to("cpu", torch.float32)
    readout = batch.readout.float()
    start = time.perf_counter()
    if mode == "fused":
        module = to_torch(net)
        x = batch.inputs if isinstance(batch.inputs, torch.Tensor) else batch.inputs[0:seq_len]
        x = x.clone().requires_grad_()
        start = time.perf_counter()
        out, _ = module(x)
        (out[-1] @ readout).sum().backward()
    else:
        segment = seq_len if mode == "in-memory" else segment_length(net, seq_len, BATCH, 4, "exact", 0.25)
        tangent = CarriedTangent(net, seq_len, BATCH, generator, readout) if mode == "run" else None
        record_profile(
            net, batch.inputs, lambda out: (out[-1] @ readout).sum(), True, "exact", segment, tangent=tangent
        )
        if tangent is not None:
            tangent.exponent()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_one(cell: str, seq_len: int, mode: str) -> dict | None:
    out = subprocess.run([sys.executable, __file__, "--one", cell, str(seq_len), mode], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[1000, 10_000, 100_000])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=list(MODES),
        choices=MODES,
        help="which measurements to make (each where it fits; default all)",
    )
    parser.add_argument("--one", nargs=3, metavar=("CELL", "T", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        cell, seq_len, mode = args.one
        print(json.dumps(measure(cell, int(seq_len), mode)))
        return
    print(f"hidden {HIDDEN}, batch {BATCH}, float32, exact recorder, probe loss; one process per measurement")
    print(
        f"{'cell':5} {'T':>8} {'seconds':>8} {'peak MB':>8} {'us/step':>8} {'fused s':>8} {'x fused':>8} "
        f"{'in-mem s':>9} {'in-mem MB':>10} {'x in-mem':>9} {'run s':>7} {'run x fused':>12}"
    )
    for cell in args.cells:
        for seq_len in args.lengths:

            def measured(mode: str, longest: float = float("inf")) -> dict | None:
                return run_one(cell, seq_len, mode) if mode in args.modes and seq_len <= longest else None

            ours, fused = measured("segmented"), measured("fused", 100_000)
            memory, run = measured("in-memory", 10_000), measured("run")

            def cell_text(result, key, fmt):
                return format(result[key], fmt) if result else format("-", f">{fmt.split('.')[0]}")

            print(
                f"{cell:5} {seq_len:8d} {cell_text(ours, 'seconds', '8.2f')} {cell_text(ours, 'peak_mb', '8.0f')} "
                f"{1e6 * ours['seconds'] / seq_len if ours else float('nan'):8.1f} "
                f"{cell_text(fused, 'seconds', '8.2f')} "
                f"{ours['seconds'] / fused['seconds'] if ours and fused else float('nan'):8.2f} "
                f"{cell_text(memory, 'seconds', '9.2f')} {cell_text(memory, 'peak_mb', '10.0f')} "
                f"{ours['seconds'] / memory['seconds'] if ours and memory else float('nan'):9.2f} "
                f"{cell_text(run, 'seconds', '7.2f')} "
                f"{run['seconds'] / fused['seconds'] if run and fused else float('nan'):12.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
