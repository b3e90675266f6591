"""Where the training monitor's snapshots go (harness.Monitor(..., loggers=[...])): TensorBoard,
Weights & Biases, and a parquet log that `python -m harness.plot` draws like a command-line training run.

    TensorBoard("runs/lm")            pip install 'harness[tensorboard]'
    WandB(project="lm")               pip install 'harness[wandb]'   (or WandB(run=an_existing_run))
    Parquet("results/lm/monitor")     nothing extra: the harness's own run folder

Each is a harness.lab.monitor.Logger (log(snapshot), close()) and imports its library when it is
constructed, never before: importing harness imports neither tensorboard nor wandb.

What TensorBoard and W&B receive at each snapshot (its training step is theirs):
- scalars `gradient/rate/layer{l}_{state}` (nats per step back), `gradient/half_life/...` (steps) and
  `gradient/horizon/...` (steps), for every layer and state block (harness.GradientProfile.fits);
  a value that is not finite is skipped, never written: nan (too few finite points to fit a rate, a
  profile with no finite value for a horizon) or inf (the half-life of a rate of exactly 0). The chart
  has a gap at that step; the snapshot's fits and the parquet log hold the value.
- `gradient/profile`: the profile at this step, log10 norm against the lag, a line per layer (a panel
  per state block in TensorBoard, an image; the batch median of every layer's blocks as a W&B line plot).
- `gradient/profiles_over_training`: an image redrawn at each snapshot with every profile so far of the
  top layer's h, a line per training step coloured by step (a colour bar), as the training_profiles
  figure of a command-line training run draws it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.core.errors import ConfigError
from harness.core.folders import check_target, claim, finished_run
from harness.core.runfolder import DONE, META, PROFILE, write_done, write_json
from harness.core.spec import RECORDING

if TYPE_CHECKING:
    import matplotlib.figure
    import pandas as pd

    from harness.lab.monitor import Snapshot
    from harness.lab.profile import GradientProfile

SCALARS = ("rate", "half_life", "horizon")  # per (layer, state): gradient/<name>/layer<l>_<state>
PROFILE_TAG, TRAINING_TAG = "gradient/profile", "gradient/profiles_over_training"
DPI = 100


def scalar_key(name: str, layer: int, state: str) -> str:
    return f"gradient/{name}/layer{layer}_{state}"


def scalars(snapshot: Snapshot) -> dict[str, float]:
    """The snapshot's finite rate, half-life and horizon per block, by key (non-finite ones left out)."""
    values = {}
    for fit in snapshot.fits:
        for name in SCALARS:
            value = fit.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values[scalar_key(name, fit["layer"], fit["state"])] = float(value)
    return values


def top_h(profile: GradientProfile) -> tuple[np.ndarray, np.ndarray]:
    """(lag, batch-median log10 norm) of the top layer's h (the first state block where there is no h),
    ordered by lag; non-finite norms as nan."""
    state = "h" if "h" in profile.state_names else profile.state_names[0]
    rows = profile.block(-1, state)
    values = rows.log10_norm.to_numpy(dtype=float)
    return rows.lag.to_numpy(), np.where(np.isfinite(values), values, np.nan)


def norm_label(profile: GradientProfile, state: str) -> str:
    """The y axis: the state block's log10 norm in the profile's view."""
    if profile.view == "adjoint":
        return rf"$\log_{{10}}\,\|\partial L/\partial {state}_{{T-k}}\|$"
    return rf"mean over s of $\log_{{10}}\,\|\partial L_s/\partial {state}_{{s-k}}\|$"


def profile_figure(snapshot: Snapshot) -> matplotlib.figure.Figure:
    """The profile at this step: a panel per state block, a line per layer (batch median and its 25-75%
    band, GradientProfile.plot)."""
    from matplotlib.figure import Figure  # no pyplot: no backend, no global figure list

    profile = snapshot.profile
    states = profile.state_names
    fig = Figure(figsize=(4.2 * len(states), 3.4), dpi=DPI, layout="constrained")
    for ax, state in zip(fig.subplots(1, len(states), squeeze=False)[0], states):
        for layer in range(profile.num_layers):
            profile.plot(ax, layer=layer, state=state, label=f"layer {layer}")
        ax.set_ylabel(norm_label(profile, state))
        ax.set_title(f"state {state}", fontsize=9)
        ax.legend(handles=ax.get_lines(), fontsize=8)  # a line per layer (the bands need no entry each)
    fig.suptitle(
        f"{profile.columns.get('cell', '')} gradient profile at training step {snapshot.step} "
        f"(batch median, 25-75% band)",
        fontsize=9,
    )
    return fig


def training_figure(history: list[tuple[int, np.ndarray, np.ndarray]], view: str) -> matplotlib.figure.Figure:
    """Every profile so far of the top layer's h (history: (step, lag, log10 norm)), coloured by step."""
    import matplotlib
    from matplotlib.figure import Figure

    steps = [step for step, _, _ in history]
    norm = matplotlib.colors.Normalize(min(steps), max(max(steps), min(steps) + 1))
    cmap = matplotlib.colormaps["viridis"]  # harness.lab.figures.style.SEQUENTIAL, as training_profiles
    fig = Figure(figsize=(5.6, 3.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for step, lag, values in history:
        ax.plot(lag, values, color=cmap(norm(step)), lw=1.2)
    ax.set_xlabel("lag k = T - t (steps back from the loss)" if view == "adjoint" else "dependency length k (steps)")
    ax.set_ylabel(
        r"$\log_{10}\,\|\partial L/\partial h_{T-k}\|$"
        if view == "adjoint"
        else r"mean over s of $\log_{10}\,\|\partial L_s/\partial h_{s-k}\|$"
    )
    ax.grid(alpha=0.3)
    ax.set_title(f"top layer's h, batch median: {len(steps)} recordings, steps {min(steps)}-{max(steps)}", fontsize=9)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, label="training step")
    bar.locator = matplotlib.ticker.MaxNLocator(integer=True)  # a step is a whole number
    bar.update_ticks()
    return fig


def render(fig: matplotlib.figure.Figure) -> np.ndarray:
    """The figure as an (height, width, 3) uint8 RGB image (matplotlib's Agg canvas; no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class _History:
    """The top layer's h of every snapshot so far, for the profiles-over-training image."""

    def __init__(self) -> None:
        self.profiles: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.view = "adjoint"

    def add(self, snapshot: Snapshot) -> np.ndarray:
        """Add the snapshot; the image of every profile so far."""
        self.profiles.append((snapshot.step, *top_h(snapshot.profile)))
        self.view = snapshot.profile.view
        return render(training_figure(self.profiles, self.view))


class TensorBoard:
    """TensorBoard event files in log_dir (torch.utils.tensorboard.SummaryWriter; the [tensorboard]
    extra): per snapshot the scalars, `gradient/profile` and `gradient/profiles_over_training` as
    images (see the module docstring), at global_step = the snapshot's training step; flushed at each
    snapshot, so TensorBoard shows a run while it trains. writer: an open SummaryWriter to write to
    instead (closed by close() only if this logger opened it). images=False: the scalars alone (the
    two images take a few tenths of a second a snapshot to draw)."""

    def __init__(
        self, log_dir: str | os.PathLike | None = None, writer: Any = None, images: bool = True, **writer_kwargs: Any
    ):
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            writer = SummaryWriter(log_dir=None if log_dir is None else str(log_dir), **writer_kwargs)
            self._owns = True
        else:
            self._owns = False
        self.writer, self.images = writer, images
        self._history = _History()

    @property
    def log_dir(self) -> str:
        return self.writer.log_dir

    def log(self, snapshot: Snapshot) -> None:
        step = snapshot.step
        for key, value in scalars(snapshot).items():
            self.writer.add_scalar(key, value, global_step=step)
        if self.images:
            self.writer.add_image(PROFILE_TAG, render(profile_figure(snapshot)), global_step=step, dataformats="HWC")
            self.writer.add_image(TRAINING_TAG, self._history.add(snapshot), global_step=step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self._owns:
            self.writer.close()
        else:
            self.writer.flush()


class WandB:
    """A Weights & Biases run (the [wandb] extra): wandb.init(**init_kwargs) when no run is given, else
    that run (Lightning's WandbLogger(...).experiment, say). Per snapshot one run.log of the scalars, the
    training step as `gradient/step` (every gradient/* chart's x axis, by run.define_metric), the profile
    as a line plot (`gradient/profile`: wandb.plot.line_series, a line per layer and state block, log10
    norm against the lag) and `gradient/profiles_over_training` as an image. A run this logger started
    is logged at step= the training step and finished by close(); a run given is logged at its own
    step (its other logging keeps its counter), and left open. images=False: no
    profiles-over-training image (a few tenths of a second a snapshot to draw)."""

    def __init__(self, run: Any = None, images: bool = True, **init_kwargs: Any):
        import wandb

        self._wandb = wandb
        self._owns, self.images = run is None, images
        self.run = wandb.init(**init_kwargs) if run is None else run
        self.run.define_metric("gradient/step")
        self.run.define_metric("gradient/*", step_metric="gradient/step")
        self._history = _History()

    def log(self, snapshot: Snapshot) -> None:
        wandb, profile = self._wandb, snapshot.profile
        frame = profile.to_frame()
        xs, ys, keys = [], [], []
        for (layer, state), rows in frame.groupby(["layer", "state"], sort=True):
            rows = rows.sort_values("lag")
            finite = np.isfinite(rows.log10_norm.to_numpy(dtype=float))  # -inf (a zero gradient), nan: no point
            xs.append(rows.lag[finite].astype(int).tolist())
            ys.append(rows.log10_norm[finite].astype(float).tolist())
            keys.append(f"layer{layer}_{state}")
        chart = wandb.plot.line_series(
            xs=xs,
            ys=ys,
            keys=keys,
            title=f"gradient profile (batch median log10 norm), step {snapshot.step}",
            xname="lag",
        )
        data = {"gradient/step": snapshot.step, **scalars(snapshot), PROFILE_TAG: chart}
        if self.images:
            caption = "top layer's h, coloured by training step"
            data[TRAINING_TAG] = wandb.Image(self._history.add(snapshot), caption=caption)
        if self._owns:
            self.run.log(data, step=snapshot.step)
        else:
            self.run.log(data)

    def close(self) -> None:
        if self._owns:
            self.run.finish()


class Parquet:
    """A run folder the harness reads like a command-line training run's (harness.lab.results):
    profile.parquet (every snapshot so far, `step` the training step), meta.json and DONE, rewritten at
    each snapshot: `python -m harness.plot <folder>` (or its parent) draws `training_profiles`, the
    profile at each recorded step. No loss table: the monitor sees none, so no `losses` figure.

    The folder is checked as GradientProfile.save checks it: new, empty, or one the harness wrote,
    never through a link; one holding a finished run is refused unless it is this run's, or another
    monitor log of the same model shape, module, loss and monitor settings (a rerun of the training:
    rerun_of), whose log is then replaced."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        # Before any training: everything but whose run it holds (known at the first snapshot).
        check_target("folder", self.folder, kind="run", run_id=finished_run(self.folder))
        self.run_id: str | None = None
        self.frames: list[pd.DataFrame] = []
        self.steps: list[int] = []
        self.flags: list[str] = []
        self.wall_time_s = 0.0
        self.columns: dict[str, Any] = {}
        self.view = "adjoint"

    def log(self, snapshot: Snapshot) -> None:
        import pandas as pd

        from harness.lab.tables import write_parquet

        profile = snapshot.profile
        if self.run_id is None:
            self.run_id = snapshot.run_id
        elif snapshot.run_id != self.run_id:
            raise ConfigError(
                f"Parquet({self.folder}): snapshot at step {snapshot.step} is of run {snapshot.run_id}, this log "
                f"holds {self.run_id}; expected one monitor's snapshots per folder"
            )
        rerun = rerun_of(self.folder, snapshot.columns)
        check_target("folder", self.folder, kind="run", run_id=rerun or self.run_id)
        claim(self.folder)
        self.frames.append(snapshot.frame())
        self.steps.append(snapshot.step)
        self.flags += [flag for flag in profile.flags if flag not in self.flags]
        self.wall_time_s += profile.wall_time_s if math.isfinite(profile.wall_time_s) else 0.0
        self.columns, self.view = snapshot.columns, profile.view
        # DONE goes first and comes back last: a reader never sees it vouch for files half rewritten.
        with contextlib.suppress(FileNotFoundError):
            (self.folder / DONE).unlink()
        write_parquet(pd.concat(self.frames, ignore_index=True), self.folder / PROFILE)
        write_json(self.meta(), self.folder / META)
        write_done(self.folder)

    def meta(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "columns": self.columns,
            "status": ",".join(self.flags) or "ok",
            "error": None,
            "view": self.view,
            "source": "harness.Monitor",
            "steps": self.steps,
            "wall_time_s": self.wall_time_s,
            "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def close(self) -> None:
        """Nothing to flush: every snapshot is on disk when log returns."""


def rerun_of(folder: Path, columns: dict[str, Any]) -> str | None:
    """The run id of the monitor log in folder if it is one of these columns but its recording (the
    same model shape, module, loss and settings: a rerun of the training, whose first snapshot may
    differ in the last digits, or not be seeded), whose log is replaced; else None."""
    try:
        meta = json.loads((folder / META).read_text())
        logged = meta["columns"]
        if meta.get("source") != "harness.Monitor" or finished_run(folder) != meta["run_id"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None

    def configuration(named: dict[str, Any]) -> dict[str, Any]:  # the columns but the recording
        return {k: v for k, v in named.items() if k != RECORDING}

    return meta["run_id"] if isinstance(logged, dict) and configuration(logged) == configuration(columns) else None
