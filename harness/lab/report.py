"""A one-page HTML report per sweep folder: the summary table and every figure, so that sending the
folder shares the results. Images are linked relatively (figures/*.png)."""
from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import pandas as pd

from harness.core.analysis import EDGE_FRACTION, STABLE_TOLERANCE
from harness.core.runfolder import write_text
from harness.lab.plots import FACETS, varied

SHOWN = ["status", "rate", "gain_per_step", "half_life", "regime", "decay_law", "power_exponent", "log10_gain", "truncated", "theory_mean_field",
         "theory_lyapunov", "rate_init", "final_loss", "baseline", "solved", "wall_time_s"]
CAPTIONS = {
    "profiles": "Gradient norm against steps back from the loss: batch median, 25–75% band.",
    "profiles_loglog": "The same profiles on log-log axes, coloured by the decay law each run's fit names "
                       "(a power law is a straight line); black: closed-form theory where it exists.",
    "heatmap": "log10 gradient norm over scale and lag; white is gain 1, red growth, blue decay.",
    "phase": "Fitted rate per step against scale; the grey band is the stable tolerance.",
    "seq_len": "End-to-end log10 gain against sequence length.",
    "layers": "log10 gradient norm of each layer's h over lag.",
    "training_profiles": "The gradient profile at initialisation and at each recorded training step.",
    "losses": "Eval loss against training step; dashed: the task's baseline.",
    "learnability": "Final eval loss relative to the baseline against the rate at initialisation.",
}
STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}
figcaption{color:#555;font-size:14px}"""


def write_report(root: Path, summary: pd.DataFrame, figures: list[Path]) -> Path:
    root = Path(root)
    axes = varied(summary, ["cell", *FACETS, "scale", "seq_len", "seed"])
    columns = [c for c in ["run_dir", *axes, *SHOWN] if c in summary and summary[c].notna().any()]
    counts = ", ".join(f"{n} {s}" for s, n in summary.status.value_counts().items())
    table = summary[columns].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
    name = summary.name.dropna().iloc[0] if "name" in summary and summary.name.notna().any() else root.name
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(str(name))}</title><style>{STYLE}</style>",
        f"<h1>{html.escape(str(name))}</h1>",
        f"<p>{html.escape(str(root))} · {len(summary)} runs ({html.escape(counts)}) · "
        f"report written {datetime.now():%Y-%m-%d %H:%M}</p>",
        f"<p>rate: Theil–Sen slope of ln‖∂L/∂h<sub>T−k</sub>‖ in the lag k over the middle "
        f"{100 - 200 * EDGE_FRACTION:.0f}% of lags (nats per step; &lt; 0 vanishing); stable within "
        f"±{STABLE_TOLERANCE} per step. Tables: profile.parquet, fits.parquet, summary.csv.</p>",
        "<h2>Summary</h2>", table, "<h2>Figures</h2>",
    ]
    for png in figures:
        caption = CAPTIONS.get(png.stem.rsplit("_", 1)[0] if png.stem[-1].isdigit() else png.stem, "")
        rel = png.relative_to(root).as_posix()
        parts.append(f"<figure><img src='{rel}' alt='{png.stem}'><figcaption>{png.stem}: {caption} "
                     f"(<a href='{Path(rel).with_suffix('.svg').as_posix()}'>svg</a>)</figcaption></figure>")
    path = root / "report.html"
    write_text("\n".join(parts) + "\n", path)
    return path
