"""Recorder speed against a plain torch loop on the same model and work.

    python benchmarks/recorders.py              # the full table (about 2 minutes on 2 cores)
    python benchmarks/recorders.py --quick      # seq_len 100 only

For each cell, seq_len in {100, 1000} and scale in {0.5, 1, 2} (gaussian init: vanishing, near
critical, exploding), hidden 128, batch 32, float32 on the CPU, it times (best of --repeats):
  plain     forward + loss.backward() with no recording
  autograd  forward + the autograd recorder (hooks that read norms)
  exact     forward + the exact recorder (hooks that read norms and renormalise)
  written   the exact recorder as runs record the built-in cells: written out, no graph
            (harness.core.segments.record_profile, one segment)
  torch.nn  torch.nn.RNN/LSTM/GRU (fused op) forward + backward, for context
and reports each recorder as a ratio to plain, and to its own time at scale 1. Like the command
line, it flushes denormals in every thread first (plain included, so the ratios are the recorders'
own cost); --stock leaves torch's default, to see the denormal penalty of the plain loop.
Targets (issue 2): exact <= 1.3x plain at scale 1; no regime above 1.2x the scale-1 time.
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.core.cells import RecurrentNet
from harness.core.init import initialise
from harness.core.recorders import flush_denormals, flush_denormals_everywhere, record_log_norms
from harness.core.segments import record_profile
from harness.core.tasks import probe

HIDDEN, BATCH, INPUT = 128, 32, 32
TORCH_MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def setup(cell: str, seq_len: int, scale: float):
    generator = torch.Generator().manual_seed(0)
    model = RecurrentNet(cell, "tanh", INPUT, HIDDEN, 1).double()
    initialise(model, "gaussian", scale, generator)
    batch = probe(seq_len, BATCH, generator, input_size=INPUT, hidden_size=HIDDEN)
    return model.float(), batch.to("cpu", torch.float32)


def plain(model, batch) -> None:
    states = model(batch.inputs, model.initial_state(BATCH))
    batch.loss(model.top_hidden(states[-1]).unsqueeze(0)).backward()


def recorder(name: str):
    def work(model, batch) -> None:
        with flush_denormals():
            states = model(batch.inputs, model.initial_state(BATCH))
            record_log_norms(batch.loss(model.top_hidden(states[-1]).unsqueeze(0)), states, model.block_sizes, name)

    return work


def written_out(model, batch) -> None:
    with flush_denormals():
        record_profile(model, batch.inputs, batch.loss, True, "exact", batch.inputs.shape[0])


def fused(module, batch) -> None:
    output, _ = module(batch.inputs)
    output[-1].sum().backward()


def timed(work, *args, repeats: int) -> float:
    work(*args)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work(*args)
        times.append(time.perf_counter() - start)
    return min(times)  # the least-disturbed repeat: noise on a shared machine only adds time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seq_len 100 only")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stock", action="store_true", help="leave denormals as torch does by default")
    args = parser.parse_args()
    if not args.stock:
        flush_denormals_everywhere()
    seq_lens = [100] if args.quick else [100, 1000]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, hidden {HIDDEN}, batch {BATCH}, float32, "
        f"denormals {'as torch leaves them' if args.stock else 'flushed in every thread'}\n"
    )
    print(
        "| cell | seq_len | scale | plain s | autograd / plain | exact / plain | written out / plain "
        "| autograd / own scale 1 | exact / own scale 1 | written out / own scale 1 | torch.nn s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    worst_exact, worst_regime = 0.0, 0.0
    for cell in ("rnn", "lstm", "gru"):
        for seq_len in seq_lens:
            rows = {}
            for scale in (0.5, 1.0, 2.0):
                model, batch = setup(cell, seq_len, scale)
                module = TORCH_MODULES[cell](INPUT, HIDDEN)
                module.load_state_dict(model.state_dict())
                rows[scale] = {
                    "plain": timed(plain, model, batch, repeats=args.repeats),
                    "autograd": timed(recorder("autograd"), model, batch, repeats=args.repeats),
                    "exact": timed(recorder("exact"), model, batch, repeats=args.repeats),
                    "written": timed(written_out, model, batch, repeats=args.repeats),
                    "torch.nn": timed(fused, module, batch, repeats=args.repeats),
                }
            base = rows[1.0]
            worst_exact = max(worst_exact, base["exact"] / base["plain"])
            for scale, t in rows.items():
                regime = {k: t[k] / base[k] for k in ("autograd", "exact", "written")}
                worst_regime = max(worst_regime, *regime.values())
                print(
                    f"| {cell} | {seq_len} | {scale} | {t['plain']:.3f} | {t['autograd'] / t['plain']:.2f} "
                    f"| {t['exact'] / t['plain']:.2f} | {t['written'] / t['plain']:.2f} | {regime['autograd']:.2f} "
                    f"| {regime['exact']:.2f} | {regime['written']:.2f} | {t['torch.nn']:.3f} |"
                )
    print(f"\nexact / plain at scale 1, worst case: {worst_exact:.2f} (target <= 1.3)")
    print(f"recorder time / its scale-1 time, worst regime: {worst_regime:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
