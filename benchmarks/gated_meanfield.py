"""The gated cells' mean field (harness.core.meanfield) against wide-width measurement: a table of the
measured rate and the theory per cell x gate-bias setting x scale, and a plot of them over scale.

    python benchmarks/gated_meanfield.py                          # hidden 1024, seq_len 300, float64 (~6 min, 2 cores)
    python benchmarks/gated_meanfield.py --hidden 256 --batch 4   # a quick look
    python benchmarks/gated_meanfield.py --plot gated_phase.png   # and the phase plot

Each case is built as a run builds it (harness.core.networks.build, harness.core.init.initialise with
init=gaussian, the probe's batch, input_size = hidden: every unit sees the same drive variance) and
recorded by the exact recorder; `measured` is the rate fitted to the batch median of ln||dL/dh_t|| as a
run fits it (harness.core.analysis.fit_profile). `mean field` is what the run's theory_mean_field holds
(model.mean_field: the gain with the fields' correlation across steps), `factorised` the per-step chi that
misses it (meanfield.factorised_gain); `critical` the run's theory_critical_scale (and the factorised
chi's). `persist` is how long the state's own recurrent drive of the gates persists, in units of a gate
pre-activation's variance: (scale^2 Q / q) E[F_y] / (1 - E[F_y]) (Q the state's mean square, q the gate
pre-activation's variance, F_y the gate that keeps the state): the mean field takes every step's gates as
fresh draws, which holds where persist is small (docs/theory.md, "Gated cells").
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from harness.core import meanfield
from harness.core.analysis import fit_profile
from harness.core.init import initialise
from harness.core.networks import build
from harness.core.recorders import flush_denormals_everywhere, record_log_norms
from harness.core.tasks import probe

SETTINGS = {  # cell -> [(label, forget_bias, chrono_tmax)]
    "minimal": [("b=0", 0.0, None)],
    "gru": [("b=0", 0.0, None), ("chrono 300", 0.0, 300)],
    "lstm": [("b_f=0", 0.0, None), ("b_f=1", 1.0, None), ("b_f=3", 3.0, None), ("chrono 300", 0.0, 300)],
}


def drive_variance(model, inputs: torch.Tensor) -> float:
    """The run's input_drive_var: the mean over W_ih's rows of E[(x W_ih^T + b)^2], b the rows' total bias
    (the minimal's b_z: its bias_hh is the gate's)."""
    bias = model.bias_ih_l0 if model.cell_name == "minimal" else model.bias_ih_l0 + model.bias_hh_l0
    with torch.no_grad():
        drive = torch.nn.functional.linear(inputs, model.weight_ih_l0, bias)
    return float(drive.double().pow(2).mean())


def persistence(units, activation: str, scale: float, input_var: float, biases) -> float:
    """(scale^2 Q / q) E[F_y] / (1 - E[F_y]), E[F_y] over the classes: see the module docstring."""
    total, classes = units(activation, scale, input_var, biases)
    other = input_var  # the gate pre-activation's other part: the input's drive (the minimal's: V z, E[z^2])
    if units is meanfield.minimal_units:
        other = meanfield.activation_mean_and_square(activation, input_var)[1]
    share = scale**2 * total / (scale**2 * total + other)
    return share * sum(c.weight * c.Fy / (1 - c.Fy) for c in classes)


def case(cell: str, scale: float, forget_bias: float, chrono: int | None, args) -> dict:
    generator = torch.Generator().manual_seed(args.seed)
    model = build(cell, "tanh", args.hidden, args.hidden, 1, {}).double()
    initialise(model, "gaussian", scale, generator, forget_bias, chrono)
    batch = probe(args.seq_len, args.batch, generator, input_size=args.hidden, hidden_size=args.hidden)
    drive_var = drive_variance(model, batch.inputs)
    start = time.perf_counter()
    states = model(batch.inputs, model.initial_state(args.batch))
    loss = batch.loss(model.top_hidden(states[-1]).unsqueeze(0))
    log_norms = record_log_norms(loss, states, model.block_sizes, "exact")[:, :, 0]  # the h block
    median = (log_norms / math.log(10)).median(dim=1).values.numpy()
    measured = fit_profile(np.arange(args.seq_len, -1, -1), median)["rate"]
    recorded = time.perf_counter() - start
    start = time.perf_counter()
    rate, critical = model.mean_field("gaussian", scale, drive_var)
    theory_s = time.perf_counter() - start
    units, input_var, biases = model.gated_field(drive_var)
    factorised = meanfield.gated_factorised_rate(units, "tanh", scale, input_var, biases)
    return {
        "cell": cell,
        "scale": scale,
        "measured": measured,
        "mean_field": rate,
        "factorised": factorised,
        "persist": persistence(units, "tanh", scale, input_var, biases),
        "critical": critical,
        "factorised_critical": meanfield.gated_factorised_critical_scale(units, "tanh", input_var, biases),
        "drive_var": drive_var,
        "record_s": recorded,
        "theory_s": theory_s,
    }


def plot(rows: list[dict], path: str, args) -> None:
    """Measured (points) and mean field (lines, dense in scale; dotted: the critical scales), per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(SETTINGS)
    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 4.2), layout="constrained", sharey=True)
    dense = np.linspace(min(args.scales), max(args.scales), 40)
    for ax, cell in zip(axes, cells):
        model = build(cell, "tanh", 8, 8, 1, {})
        for (label, forget_bias, chrono), colour in zip(SETTINGS[cell], ("C0", "C1", "C2", "C3")):
            points = [r for r in rows if r["cell"] == cell and r["setting"] == label]
            drive = float(np.median([r["drive_var"] for r in points]))
            curve = model.mean_field_curve("gaussian", dense, drive, forget_bias, chrono)
            ax.plot(dense, curve, color=colour, lw=1.2, label=f"{label}: mean field")
            ax.plot([r["scale"] for r in points], [r["measured"] for r in points], "o", color=colour, ms=5)
            critical = float(np.median([r["critical"] for r in points]))
            if dense[0] <= critical <= dense[-1]:
                ax.axvline(critical, ls=":", color=colour, lw=1.2)
        ax.axhline(0, color="0.2", lw=0.8)
        ax.set_title(f"{cell} (hidden {args.hidden}, T = {args.seq_len})")
        ax.set_xlabel("scale")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("rate (nats per step back)")
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--seq-len", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scales", type=lambda text: [float(v) for v in text.split(",")], default=[0.5, 1, 2, 3, 4])
    parser.add_argument("--cells", type=lambda text: text.split(","), default=list(SETTINGS))
    parser.add_argument("--plot", help="write the phase plot here (png)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    flush_denormals_everywhere()
    rows = []
    print(
        "| cell | bias | scale | measured | mean field | gap | factorised χ | gap | persist | critical "
        "| factorised critical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in args.cells:
        for label, forget_bias, chrono in SETTINGS[cell]:
            for scale in args.scales:
                row = {"setting": label, **case(cell, scale, forget_bias, chrono, args)}
                rows.append(row)
                print(
                    f"| {cell} | {label} | {scale:g} | {row['measured']:+.4f} | {row['mean_field']:+.4f} "
                    f"| {row['measured'] - row['mean_field']:+.4f} | {row['factorised']:+.4f} "
                    f"| {row['measured'] - row['factorised']:+.4f} | {row['persist']:.2f} "
                    f"| {row['critical']:.3f} | {row['factorised_critical']:.3f} |",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    if args.plot:
        plot(rows, args.plot, args)


if __name__ == "__main__":
    main()
