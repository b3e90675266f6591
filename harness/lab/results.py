"""Result tables: the per-run profile, atomic writes, and collecting run folders into sweep tables.

A run folder holds `profile.parquet`, `meta.json` and, written last, the completion marker `DONE`;
a folder with Hydra's `.hydra/` but no `DONE` is an incomplete run (killed or still running).
A sweep folder gains `profile.parquet` (all runs' profiles), `units.parquet` and `gates.parquet`
(record.units=true), `fits.parquet` (a fit per run, layer,
state and training step; harness.core.analysis), `losses.parquet` (training runs' loss tables), and
`summary.parquet` / `summary.csv` (one row per run, failed and incomplete runs included, with the
run's headline fit, the theory's predictions and their gaps).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from harness.core.analysis import FIT_COLUMNS
from harness.lab.fits import fit_runs, headline
from harness.core.errors import ConfigError
from harness.core.spec import VALIDATORS, config_columns, flat_config, run_id
from harness.core.theory import SPECTRUM_COLUMNS, THEORY_COLUMNS

from harness.core.runfolder import DONE, GATES, LOSSES, META, PROFILE, UNITS, write_csv, write_parquet


def find_runs(root: Path) -> list[Path]:
    """Run folders under root (root itself included): where Hydra left a `.hydra/`, or a finished run
    saved from Python (GradientProfile.save: a DONE marker beside meta.json)."""
    def order(path: Path) -> tuple:
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.relative_to(root).parts)
    hydra = {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    saved = {p.parent for p in root.rglob(DONE) if (p.parent / META).is_file()}
    return sorted(hydra | saved, key=order)


def _run_row(run_dir: Path, root: Path) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """One summary row (without the fit) for a run folder, and its profile if it has one. A folder
    that cannot be read is a row of its own, status "damaged", with what is wrong: named, not fatal."""
    where = {"run_dir": str(run_dir.relative_to(root))}
    try:
        return _read_run(run_dir, where)
    except Exception as error:  # noqa: BLE001  any unreadable file: a truncated parquet, bad JSON, ...
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return {**where, "status": "damaged", "error": reason}, None


def _read_run(run_dir: Path, where: dict[str, str]) -> tuple[dict[str, Any], pd.DataFrame | None]:
    if not (run_dir / DONE).exists():
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        try:
            columns = config_columns(OmegaConf.to_container(cfg, resolve=True))
            where["run_id"] = run_id(columns)
        except ConfigError:
            columns = flat_config(OmegaConf.to_container(cfg))
        return {**where, **columns, "status": "incomplete"}, None
    meta = json.loads((run_dir / META).read_text())
    row = {"run_id": meta["run_id"], **where, **meta["columns"]}
    row.update({k: meta.get(k) for k in ("status", "error", "wall_time_s", "input_drive_var", "input_drive_var_cv",
                                         *THEORY_COLUMNS, "final_loss", "baseline", "solved")})
    if meta.get("spectrum") is not None:  # theory.spectrum_k > 0
        row.update({"spectrum": meta["spectrum"], **{k: meta.get(k) for k in SPECTRUM_COLUMNS}})
    profile = pd.read_parquet(run_dir / PROFILE) if (run_dir / PROFILE).exists() else None
    return row, profile


def _read_table(path: Path) -> pd.DataFrame | None:
    """A run's optional table, or None if it has none or it cannot be read (said on stderr)."""
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as error:  # noqa: BLE001  a damaged file: named, left out, not fatal
        print(f"{path}: cannot be read ({type(error).__name__}); left out of the sweep's table", file=sys.stderr)
        return None


def find_links(root: Path) -> list[Path]:
    """Symbolic links to folders inside root: never read (nor written) as runs, but named."""
    return sorted(p for p in root.rglob("*") if p.is_symlink() and p.is_dir())


def summary_config(summary: pd.DataFrame) -> list[str]:
    """The summary's config columns (the run's settings), in their order."""
    return [c for c in summary.columns if c in VALIDATORS or c.startswith("cell.kwargs.")]


def spectrum_table(summary: pd.DataFrame) -> pd.DataFrame:
    """spectrum.parquet: a row per run and exponent (index 1..k, exponent in nats per step), beside the
    run's config columns; empty where no run computed a spectrum (theory.spectrum_k = 0)."""
    if "spectrum" not in summary:
        return pd.DataFrame()
    runs = summary[summary.spectrum.map(lambda s: s is not None and len(s) > 0 if not isinstance(s, float) else False)]
    config = ["run_id", *summary_config(summary)]
    table = runs[config + ["spectrum"]].explode("spectrum").rename(columns={"spectrum": "exponent"})
    table["exponent"] = table.exponent.astype(float)
    table.insert(len(config), "index", table.groupby("run_id").cumcount() + 1)
    return table.reset_index(drop=True)


def write_summary(summary: pd.DataFrame, root: Path) -> None:
    """summary.parquet (the spectra as a list column), summary.csv (without them) and spectrum.parquet."""
    write_parquet(summary, root / "summary.parquet")
    write_csv(summary.drop(columns="spectrum", errors="ignore"), root / "summary.csv")
    spectrum = spectrum_table(summary)
    if not spectrum.empty:
        write_parquet(spectrum, root / "spectrum.parquet")


def collect_losses(root: Path, summary: pd.DataFrame) -> pd.DataFrame:
    """Every run's loss table (harness.core.train), beside its config columns."""
    tables = [pd.read_parquet(root / d / LOSSES) for d in summary.run_dir if (root / d / LOSSES).exists()]
    if not tables:
        return pd.DataFrame()
    losses = pd.concat(tables, ignore_index=True)
    config = summary.drop(columns=[c for c in summary.columns if c in losses and c != "run_id"])
    return losses.merge(config, on="run_id", how="left")


def collect(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rebuild a sweep's tables from its run folders and write them into root; return (profile,
    summary, losses).

    Works on any folder of runs: a finished sweep, a failed or interrupted one, or one run.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; expected a sweep or run folder under results/")
    runs = find_runs(root)
    if not runs:
        raise ConfigError(f"{root}: no run folders in it (a run folder holds .hydra/, or DONE and meta.json); "
                          "expected a sweep or run folder")
    rows, profiles = zip(*(_run_row(run, root) for run in runs))
    links = [{"run_dir": str(p.relative_to(root)), "status": "skipped", "error": "a symbolic link: not read"}
             for p in find_links(root)]
    summary = pd.DataFrame(list(rows) + links)
    found = [p for p in profiles if p is not None]
    profile = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if found:
        fits = fit_runs(profile)
        summary = summary.join(headline(fits).set_index("run_id")[FIT_COLUMNS], on="run_id")
        at_init = headline(fits[fits.step == fits.groupby("run_id").step.transform("min")])
        summary["rate_init"] = summary.run_id.map(at_init.set_index("run_id").rate)
        for name in ("linear", "mean_field", "lyapunov"):  # measured minus predicted, nats per step
            summary[f"gap_{name}"] = summary.rate - summary.get(f"theory_{name}", float("nan"))
        write_parquet(fits, root / "fits.parquet")
    if runs != [root]:  # a single run folder already holds its own profile (and units, gates)
        write_parquet(profile, root / PROFILE)
        for name in (UNITS, GATES):  # record.units=true
            tables = [table for run, row in zip(runs, rows) if row.get("status") not in ("damaged", None)
                      for table in [_read_table(run / name)] if table is not None]
            if tables:
                write_parquet(pd.concat(tables, ignore_index=True), root / name)
    write_summary(summary, root)
    losses = collect_losses(root, summary)
    if not losses.empty and runs != [root]:
        write_parquet(losses, root / LOSSES)
    return profile, summary, losses
