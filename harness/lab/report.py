"""One self-contained HTML report per sweep folder: the question, the command, the settings held fixed
(those that apply to the cells run) and the axes swept, a summary table (by configuration, seeds
pooled, where a configuration ran with several seeds; then a row per run), every figure (embedded,
with the caption its plotting code wrote from what it drew), the runs that failed or diverged, and the
harness version and commit. Nothing outside the file is needed to read it, so it can be mailed as it is.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.analysis import EDGE_FRACTION, STABLE_TOLERANCE
from harness.core.networks import cell_only_keys
from harness.core.runfolder import META, write_text
from harness.core.spec import RECORDING
from harness.lab.figures import Drawn
from harness.lab.figures.layout import value_count, varied
from harness.lab.results import summary_config
from harness.lab.summary import METRICS, recordings_apart, summary_by_config, told_apart
from harness.lab.theory_table import THEORY

SHOWN = [
    "status",
    "rate",
    "gain_per_step",
    "half_life",
    "regime",
    "decay_law",
    "power_exponent",
    "log10_gain",
    "truncated",
    *(prediction.column for prediction in THEORY),
    "rate_init",
    "final_loss",
    "baseline",
    "solved",
    "wall_time_s",
]
STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}
figcaption{color:#444;font-size:14px}code,pre{background:#f6f6f6;padding:2px 4px}.filtered{color:#a00}
.wide{overflow-x:auto;max-width:100%}"""


def run_commits(source: Path | None, summary: pd.DataFrame) -> list[str]:
    """The git commits the runs' meta.json files record (one, unless the sweep was resumed across commits)."""
    commits = set()
    for run_dir in summary.run_dir.dropna() if source else ():
        try:
            meta = json.loads((source / run_dir / META).read_text())
        except (OSError, ValueError):
            continue
        commit = meta.get("git_commit") if isinstance(meta, dict) else None
        if isinstance(commit, str) and commit:  # a damaged meta.json's is no commit (its row says so)
            commits.add(commit)
    return sorted(commits)


def table_html(frame: pd.DataFrame) -> str:
    """A table that scrolls sideways inside the page when it is wider than the page; gaps blank."""
    # na_rep reaches NaN but not pd.NA (a damaged run's gap in an integer column prints <NA>)
    shown = frame.copy()
    for name in [name for name, dtype in frame.dtypes.items() if not pd.api.types.is_float_dtype(dtype)]:
        shown[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
    return (
        "<div class='wide'>"
        + shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0)
        + "</div>"
    )


def embedded(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def write_report(
    root: Path,
    summary: pd.DataFrame,
    figures: list[Drawn],
    source: Path | None = None,
    where: list[str] = (),
    command: str | None = None,
    question: str | None = None,
) -> Path:
    """root/report.html. source: the sweep folder the runs are in (root itself unless rebuilt
    elsewhere); where: the --where filters that chose these runs from it; command and question: the
    command that made the sweep and its experiment file's comment (harness.cli.paths.sweep_origin)."""
    root = Path(root)
    # recording is no setting: swept where it alone tells runs apart (recordings_apart), never held fixed
    config = [c for c in summary_config(summary) if c != RECORDING]
    known = summary.dropna(subset=config, how="all")  # a damaged run whose settings are lost sweeps nothing
    # A run that never ran has the settings its overrides name alone (harness.lab.results.not_run): its gaps
    # are no values, and a key it names is swept where it takes another value than the runs that ran.
    unrun = known.status.eq("not_run") if "status" in known else pd.Series(False, index=known.index)
    # A key only some cells take (empty for the others) is swept if it varies in one.
    swept = varied(known[~unrun], config)
    swept += [c for c in config if c not in swept and known[c][unrun].notna().any() and known[c].nunique() > 1]
    told = told_apart(known[~unrun])  # the recordings that tell runs apart (the figures' and by_config's)
    swept += [RECORDING] if recordings_apart(known[~unrun], swept) else []
    fixed = held_fixed(known[~unrun], [c for c in config if c not in swept])
    columns = [c for c in ["run_dir", *swept, *SHOWN] if c in summary and summary[c].notna().any()]
    by_config = by_config_html(summary, swept)
    parts = [
        *heading(root, summary, str(fixed.get("name", root.name)), source, where, command, question),
        *settings(
            root,
            summary,
            {c: value_count(told if c == RECORDING else known, c) for c in swept},
            fixed,
            run_commits(source, summary),
        ),
        *attention(summary, swept),
        "<h2>Summary</h2>",
        *by_config,
        *(["<h3>Runs</h3>"] if by_config else []),
        table_html(summary[columns]),
        "<h2>Figures</h2>",
        *(figure_html(root, drawn) for drawn in figures),
        "</body></html>",
    ]
    path = root / "report.html"
    write_text("\n".join(parts) + "\n", path)
    return path


def held_fixed(summary: pd.DataFrame, config: list[str]) -> dict[str, str]:
    """The settings of config that no run varied, each as it reads: only those that apply to the runs,
    a key only some built-in cells take (harness.core.networks.cell_only_keys: cell.r_min for the lru)
    where some run's cell takes it, named with those cells where others do not; train.* other than
    train.steps where some run trained."""
    cells = set(summary.cell.dropna()) if "cell" in summary else set()
    only = cell_only_keys()
    trained = "train.steps" in summary and bool((summary["train.steps"].fillna(0) > 0).any())
    fixed = {}
    for key in config:
        if not summary[key].notna().any():
            continue
        if key.startswith("train.") and key != "train.steps" and not trained:
            continue
        first = summary[key].dropna().iloc[0]
        value = str(first).lower() if isinstance(first, (bool, np.bool_)) else str(first)  # as typed: true
        if key in only or key.startswith("cell.kwargs."):  # a user cell's argument: the cells that have it
            takers = (
                [cell for cell in only[key] if cell in cells]
                if key in only
                else sorted(set(summary.cell[summary[key].notna()]))
            )
            if not takers:
                continue
            value += f" ({', '.join(takers)})" if cells - set(takers) else ""
        fixed[key] = value
    return fixed


def by_config_html(summary: pd.DataFrame, swept: list[str]) -> list[str]:
    """The summary by configuration (harness.lab.summary, summary_by_config.parquet), as a paragraph
    and a table, where some configuration pooled two or more seeds; else nothing."""
    table = summary_by_config(summary)
    if table.empty or table.n_seeds.max() < 2:
        return []
    keys = [c for c in swept if c in table and c != "seed"]
    shown = table[keys].copy()
    shown["n seeds"] = table.n_seeds
    for metric in METRICS:
        if f"{metric}_mean" not in table or not table[f"{metric}_mean"].notna().any():
            continue
        shown[f"{metric} mean [95% interval]"] = [
            "" if pd.isna(mean) else f"{mean:.4g}" + (f" [{low:.4g}, {high:.4g}]" if pd.notna(low) else "")
            for mean, low, high in zip(table[f"{metric}_mean"], table[f"{metric}_ci_low"], table[f"{metric}_ci_high"])
        ]  # blank where no seed gave a finite value, as the median's cell is
        shown[f"{metric} median"] = table[f"{metric}_median"]
    return [
        "<p>By configuration, seeds pooled (summary_by_config.parquet): each row pools the runs that differ "
        "only in their seed; the mean of their finite values with its 95% Student t interval (mean ± "
        "t<sub>0.975, n−1</sub>·s/√n; none for one seed), and their median.</p>",
        table_html(shown),
    ]


def heading(
    root: Path,
    summary: pd.DataFrame,
    name: str,
    source: Path | None,
    where: list[str],
    command: str | None,
    question: str | None,
) -> list[str]:
    """The page's head and title, the question, the command (and the harness.plot that filtered it)."""
    filtered = " where " + " and ".join(where) if where else ""
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(name + filtered)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(name)}"
        + (f" <span class='filtered'>({html.escape(filtered.strip())})</span>" if where else "")
        + "</h1>",
    ]
    if question:
        parts.append(f"<p><b>Question.</b> {html.escape(question)}</p>")
    if command:
        parts.append(
            f"<p><b>Command.</b> <code>{html.escape(command)}</code>"
            + (
                f", then <code>python -m harness.plot {html.escape(str(source))} "
                f"{' '.join('--where ' + html.escape(w) for w in where)} --out {html.escape(str(root))}</code>"
                if where
                else ""
            )
            + "</p>"
        )
    if where:
        parts.append(
            f"<p class='filtered'><b>Filtered:</b> only the runs{html.escape(filtered)} "
            f"({len(summary)} of the sweep's runs) are in the tables and figures below.</p>"
        )
    return parts


def settings(root: Path, summary: pd.DataFrame, swept: dict[str, int], fixed: dict, commits: list[str]) -> list[str]:
    """Where, how many runs and by which harness; what was swept (each key's number of values) and held
    fixed; what rate means."""
    counts = ", ".join(f"{n} {s}" for s, n in summary.status.value_counts().items())
    return [
        f"<p>{html.escape(str(root))} · {len(summary)} runs ({html.escape(counts)}) · harness "
        f"{html.escape(importlib.metadata.version('harness'))}"
        + (f" · commit {html.escape(', '.join(commits))}" if commits else "")
        + f" · report written {datetime.now():%Y-%m-%d %H:%M}</p>",
        "<h2>Settings</h2>",
        "<p><b>Swept:</b> "
        + (html.escape(", ".join(f"{c} ({n} values)" for c, n in swept.items())) or "nothing (one configuration)")
        + "</p>",
        "<p><b>Held fixed:</b> "
        + (" · ".join(f"<code>{html.escape(f'{k}={v}')}</code>" for k, v in fixed.items()) or "nothing")
        + "</p>",
        f"<p>rate: Theil–Sen slope of ln‖∂L/∂h<sub>T−k</sub>‖ in the lag k over the middle "
        f"{100 - 200 * EDGE_FRACTION:.0f}% of lags (nats per step; &lt; 0 vanishing); stable within "
        f"±{STABLE_TOLERANCE} per step. Tables beside this file: profile.parquet, fits.parquet, summary.csv, "
        "summary_by_config.csv.</p>",
    ]


def attention(summary: pd.DataFrame, swept: list[str]) -> list[str]:
    """The runs that failed, diverged or carry numerical flags, or a line saying there are none."""
    runs = summary[~summary.status.isin(["ok", "not_applicable"])]
    if runs.empty:
        return [
            "<h2>Runs that failed, diverged or carry numerical flags</h2>",
            "<p>None: every run finished with finite numbers.</p>",
        ]
    keep = [c for c in ["run_dir", *swept, "status", "diverged_at", "error"] if c in runs and runs[c].notna().any()]
    return ["<h2>Runs that failed, diverged or carry numerical flags</h2>", table_html(runs[keep])]


def figure_html(root: Path, drawn: Drawn) -> str:
    """A figure embedded, with its caption (and where its SVG copy is, if it has one)."""
    svg = drawn.path.with_suffix(".svg")
    vector = f" (vector copy: {svg.relative_to(root).as_posix()})" if svg.exists() else ""
    return (
        f"<figure><img src='{embedded(drawn.path)}' alt='{html.escape(drawn.path.stem)}'>"
        f"<figcaption><b>{html.escape(drawn.path.stem)}.</b> {html.escape(drawn.caption)}"
        f"{html.escape(vector)}</figcaption></figure>"
    )
