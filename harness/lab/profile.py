"""GradientProfile: what harness.record returns -- per-sample log-norms of dL/dh_t for every t, with
ways to read them (a table, a fit, a figure, a run folder).

    profile = harness.record(lstm, x)            # x: (seq_len, batch, input_size)
    profile.to_frame()                           # the long table the command line writes
    profile.fit()                                # rate per step, half-life, regime
    profile.plot()                               # one matplotlib Axes (matplotlib imported here only)
    profile.save("results/mine/lstm")            # a run folder harness.plot / harness.collect read
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness.core.analysis import HORIZON_DECADES, fit_profile
from harness.core.errors import ConfigError
from harness.core.folders import check_target, claim
from harness.core.recorders import Overflow, status_flags
from harness.core.runfolder import META, PROFILE, write_done, write_json
from harness.core.spec import run_id

if TYPE_CHECKING:
    import matplotlib.axes
    import pandas as pd


@dataclass
class GradientProfile:
    """ln ||dL/d block_t|| per sample for t = 0..T (t = 0 the initial state), every state block.

    view "adjoint": dL/dS_t of one loss (columns["adjoint"]: "state" or "total", see harness.record);
    in a padded batch (`lengths`), row t holds each sample's lag T - t from its own end.
    view "dependency" (record(..., sources=N)): row i holds lag k = T - i, the mean over the sampled
    loss steps s >= k of ln ||dL_s/dh_{s-k}||;
    `sources` counts them per lag.
    """

    log_norms: torch.Tensor  # (T+1, batch, blocks), float64; -inf a zero gradient, +inf an overflow
    state_names: tuple[str, ...]  # one layer's blocks (h; h, c for an lstm)
    columns: dict[str, Any]  # what was recorded: cell, recorder, seq_len, ... (the table's config columns)
    recorder: str  # the recorder that ran: exact or autograd (also in columns, for the table)
    view: str = "adjoint"
    sources: torch.Tensor | None = None  # (T+1,) loss steps averaged per row (dependency view)
    states_finite: bool = True
    wall_time_s: float = field(default=math.nan)
    # where the forward pass overflowed (recorders.leave_out_overflow, whose nan rows log_norms then hold)
    overflow: Overflow | None = None
    # (batch,) each sample's own length in a padded batch, whose rows log_norms holds aligned to its own
    # end (recorders.aligned_to_ends: nan above its first state); None where every sample ran T steps
    lengths: torch.Tensor | None = None

    @property
    def seq_len(self) -> int:
        return self.log_norms.shape[0] - 1

    @property
    def run_id(self) -> str:
        return run_id(self.columns)

    @property
    def flags(self) -> list[str]:
        """Numerical trouble, as the command line's status records it (diverged, nan, overflow, ...)."""
        return status_flags(self.log_norms, self.states_finite, self.recorder, self.overflow, self.lengths)

    @property
    def diverged_at(self) -> int | None:
        """The first time step whose state is not finite in any sample; None where none is (or unknown)."""
        return None if self.overflow is None else self.overflow.at

    def to_frame(self) -> pd.DataFrame:
        """The long table: run_id, the columns, layer, state, t, lag, step, log10_norm (batch median of
        per-sample log10 norms) and its batch quantiles (q10, q25, q75, q90); `sources` in the
        dependency view."""
        from harness.lab.tables import profile_frame  # pandas on the first table: `import harness` stays light

        frame = profile_frame(self.log_norms, self.run_id, self.columns, self.state_names)
        if self.sources is not None:
            frame["sources"] = np.tile(self.sources.cpu().numpy(), self.log_norms.shape[2])
        return frame

    @property
    def num_layers(self) -> int:
        return self.log_norms.shape[2] // len(self.state_names)

    def block(self, layer: int = -1, state: str = "h") -> pd.DataFrame:
        """One block's rows of the table (default: the top layer's h), ordered by lag."""
        layer = self._block_index(layer, state) // len(self.state_names)
        frame = self.to_frame()
        return frame[(frame.layer == layer) & (frame.state == state)].sort_values("lag")

    def _block_index(self, layer: int, state: str) -> int:
        """The block's index in log_norms' last dimension; ConfigError naming a layer or state it has not."""
        layers = self.num_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not -layers <= layer < layers:
            raise ConfigError(f"layer={layer!r}: expected an integer from {-layers} to {layers - 1} ({layers} layers)")
        if state not in self.state_names:
            names = ", ".join(self.state_names)
            raise ConfigError(f"state={state!r}: expected one of {names} (the {self.columns['cell']}'s state blocks)")
        return (layer % layers) * len(self.state_names) + self.state_names.index(state)

    def fit(self, layer: int = -1, state: str = "h", horizon_decades: float = HORIZON_DECADES) -> dict[str, Any]:
        """Rate (nats per step back), gain_per_step, half_life, regime, the fit window and the gradient
        horizon (the first lag horizon_decades below lag 0; censored at seq_len) of one block's
        profile (harness.core.analysis.fit_profile), default the top layer's h."""
        check_horizon_decades(horizon_decades)
        # the table's log10_norm (a nearest-rank batch median) without building the table
        log10 = (self.log_norms[:, :, self._block_index(layer, state)] / math.log(10)).cpu().numpy()
        with warnings.catch_warnings():  # an all-nan step (a lag no source reaches) gives nan: right
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanquantile(log10, 0.5, axis=1, method="nearest")
        lag = np.arange(self.seq_len, -1, -1)
        return fit_profile(lag, median, horizon_decades=horizon_decades)

    def fits(self, horizon_decades: float = HORIZON_DECADES) -> list[dict[str, Any]]:
        """fit() of every block: a dict per (layer, state) with `layer` and `state` first."""
        return [
            {"layer": layer, "state": state, **self.fit(layer, state, horizon_decades)}
            for layer in range(self.num_layers)
            for state in self.state_names
        ]

    def plot(
        self, ax: matplotlib.axes.Axes | None = None, layer: int = -1, state: str = "h", label: str | None = None
    ) -> matplotlib.axes.Axes:
        """log10 ||dL/dh_{T-k}|| against the lag k: the batch median and its 25-75% band. Called again on
        the same Axes (one profile per call), it adds a line and its band; the legend names the band
        once, in grey, for all of them, and numbers a default label already there ("... (2)")."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
        rows = self.block(layer, state)
        median = rows.log10_norm.where(np.isfinite(rows.log10_norm))
        if label is None:  # a second profile of the same cell is numbered, never a second entry of one name
            default = label = f"{rows.cell.iloc[0]}, layer {rows.layer.iloc[0]} {state}: batch median"
            taken, number = set(ax.get_legend_handles_labels()[1]), 1
            while label in taken:
                number += 1
                label = f"{default} ({number})"
        (line,) = ax.plot(rows.lag, median, label=label)
        band = np.isfinite(rows.log10_norm_q25) & np.isfinite(rows.log10_norm_q75)
        ax.fill_between(
            rows.lag, rows.log10_norm_q25, rows.log10_norm_q75, where=band, color=line.get_color(), alpha=0.25, lw=0
        )
        # The band's key: one grey entry for every call's band, never one per call.
        import matplotlib.patches

        key, legend = "25-75% of the batch", ax.get_legend()
        banded = bool(band.any()) or (legend is not None and key in [t.get_text() for t in legend.get_texts()])
        handles = ax.get_legend_handles_labels()[0]  # the lines (and any artist the caller labelled)
        if banded:
            handles.append(matplotlib.patches.Patch(color="0.5", alpha=0.35, lw=0, label=key))
        ax.set_xlabel(
            "lag k = T - t (steps back from the loss)"
            if self.view == "adjoint"
            else "dependency length k (steps between h and the loss step)"
        )
        ax.set_ylabel(
            r"$\log_{10}\,\|\partial L/\partial h_{T-k}\|$"
            if self.view == "adjoint"
            else r"mean over loss steps s of $\log_{10}\,\|\partial L_s/\partial h_{s-k}\|$"
        )
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, fontsize=8)
        return ax

    def save(self, folder: str | Path) -> Path:
        """Write a run folder (profile.parquet, meta.json, DONE) that `python -m harness.plot` and
        `python -m harness.collect` read like any command-line run; return its path. Refused into a
        folder holding another run: the run id covers the numbers recorded (harness.lab.api.recording_digest)."""
        folder = Path(folder)
        check_target("folder", folder, kind="run", run_id=self.run_id)  # never over the user's own files
        claim(folder)
        from harness.lab.tables import write_parquet

        write_parquet(self.to_frame(), folder / PROFILE)
        status = ",".join(self.flags) or "ok"
        write_json(
            {
                "run_id": self.run_id,
                "columns": self.columns,
                "status": status,
                "diverged_at": self.diverged_at,
                "error": None,
                "view": self.view,
                "source": "harness.record",
                "wall_time_s": self.wall_time_s,
                "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            folder / META,
        )
        write_done(folder)
        return folder


def check_horizon_decades(horizon_decades: Any) -> None:
    """ConfigError unless horizon_decades is a positive number (of decades below lag 0)."""
    number = isinstance(horizon_decades, (int, float)) and not isinstance(horizon_decades, bool)
    if not (number and horizon_decades > 0):  # nan fails too
        raise ConfigError(f"horizon_decades={horizon_decades!r}: expected a positive number of decades")
