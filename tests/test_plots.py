"""Figures follow what a sweep varied: which are drawn, with no empty panel, at 1 run and at 500."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from harness.lab import figures as plots
from harness.lab.tables import profile_frame

BASE = {
    "name": "t",
    "cell": "rnn",
    "activation": "tanh",
    "init": "gaussian",
    "task": "probe",
    "scale": 1.0,
    "seq_len": 20,
    "hidden_size": 8,
    "input_size": 8,
    "num_layers": 1,
    "batch_size": 4,
    "seed": 0,
    "recorder": "exact",
    "dtype": "float32",
    "device": "cpu",
}


def sweep(**axes) -> pd.DataFrame:
    """Profiles for every combination of the given axes, each decaying at a rate set by its scale."""
    keys = list(axes)
    frames = []
    for i, values in enumerate(
        np.array(np.meshgrid(*axes.values(), indexing="ij"), dtype=object).reshape(len(keys), -1).T
    ):
        columns = {**BASE, **dict(zip(keys, values))}
        T, layers = int(columns["seq_len"]), int(columns["num_layers"])
        states = ("h", "c") if columns["cell"] == "lstm" else ("h",)
        lag = torch.arange(T, -1, -1, dtype=torch.float64)
        rate = math.log(float(columns["scale"])) - 0.1
        log_norms = (rate * lag)[:, None, None].expand(T + 1, 4, layers * len(states)).clone()
        # Noise of its own per run, not the global generator's: the numbers must not depend on which
        # tests ran before in the same process (near rate 0, noise decides a profile's decay law).
        log_norms += 0.01 * torch.randn(
            log_norms.shape, dtype=log_norms.dtype, generator=torch.Generator().manual_seed(i)
        )
        frames.append(profile_frame(log_norms, f"run{i}", columns, states))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def drawn(monkeypatch):
    """Records, for every figure saved, its name and the number of artists in each panel."""
    figures = {}
    save = plots.save

    def spy(fig, path, caption):
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        figures[path.name] = [len(ax.lines) + len(ax.collections) for ax in panels]
        return save(fig, path, caption)

    monkeypatch.setattr(plots, "save", spy)
    return figures


def test_one_run_draws_only_the_profile(tmp_path, drawn):
    written = plots.make_figures(tmp_path, sweep(scale=[1.0]))
    assert [d.path.name for d in written] == ["profiles.png"] and drawn == {"profiles": [3]}  # line, band, zero line
    assert not (tmp_path / "figures" / "profiles.svg").exists()
    plots.make_figures(tmp_path, sweep(scale=[1.0]), vector=True)
    assert (tmp_path / "figures" / "profiles.svg").read_text().startswith("<?xml")


def test_scale_sweep_adds_heatmap_and_phase(tmp_path, drawn):
    plots.make_figures(tmp_path, sweep(cell=["rnn", "gru"], scale=[0.5, 1.0, 2.0]))
    assert set(drawn) == {"profiles", "heatmap", "phase"}
    assert drawn["profiles"] == [5, 5]  # a panel per cell: 3 lines, their bands (one collection), the zero line
    assert drawn["heatmap"] == [1, 1]


def test_seq_len_and_layers_figures(tmp_path, drawn):
    plots.make_figures(tmp_path, sweep(seq_len=[10, 20, 40], num_layers=[2]))
    assert set(drawn) == {"profiles", "seq_len", "layers"}
    assert drawn["layers"] == [1, 1, 1]


def test_no_empty_panels_when_the_grid_is_ragged(tmp_path, drawn):
    frame = pd.concat(
        [
            sweep(cell=["rnn"], activation=["tanh", "relu"]),
            sweep(cell=["gru"], activation=["tanh"]).assign(run_id=lambda f: f.run_id + "g"),
        ]
    )
    plots.make_figures(tmp_path, frame)
    assert len(drawn["profiles"]) == 3 and all(n > 0 for n in drawn["profiles"])


@pytest.mark.slow
def test_five_hundred_runs_page_and_stay_readable(tmp_path, drawn):
    frame = sweep(
        cell=["rnn", "lstm", "gru"],
        activation=["tanh", "relu", "gelu", "softsign", "sigmoid", "identity", "leaky_relu"],
        scale=list(np.linspace(0.3, 3, 24)),
    )
    assert frame.run_id.nunique() == 504
    written = plots.make_figures(tmp_path, frame)
    names = sorted(d.path.stem for d in written)
    assert names == ["heatmap_1", "heatmap_2", "phase", "profiles_1", "profiles_2"]
    assert sum(len(v) for k, v in drawn.items() if k.startswith("profiles")) == 21
    assert all(n > 0 for v in drawn.values() for n in v)
    plt.close("all")


def test_flagged_runs_are_dashed(tmp_path, monkeypatch):
    frame = sweep(scale=[0.5, 2.0])
    styles = []
    plot = plots.plt.Axes.plot

    def spy(ax, *args, **kw):
        styles.append(kw.get("ls"))
        return plot(ax, *args, **kw)

    monkeypatch.setattr(plots.plt.Axes, "plot", spy)
    summary = pd.DataFrame({"run_id": ["run0", "run1"], "status": ["ok", "diverged"]})
    plots.make_figures(tmp_path, frame, summary)
    assert styles[:2] == ["--", "-"]  # drawn largest scale first: run1 (flagged), then run0


def test_training_figures(tmp_path, drawn):
    """Profiles at several steps, a loss table and a summary: losses, training_profiles, learnability."""
    frames = [sweep(cell=["rnn", "lstm"]).assign(step=step) for step in (0, 50, 100)]
    profile = pd.concat(frames, ignore_index=True)
    losses = pd.DataFrame(
        [
            {"run_id": f"run{i}", "cell": cell, "step": step, "eval_loss": 0.2 / (1 + step * i), "baseline": 1 / 6}
            for i, cell in enumerate(["rnn", "lstm"])
            for step in (0, 50, 100)
        ]
    )
    summary = pd.DataFrame(
        {
            "run_id": ["run0", "run1"],
            "cell": ["rnn", "lstm"],
            "status": ["ok", "ok"],
            "rate_init": [-0.5, -0.1],
            "final_loss": [0.2, 0.002],
            "baseline": [1 / 6, 1 / 6],
        }
    )
    plots.make_figures(tmp_path, profile, summary, losses)
    assert {"training_profiles", "losses", "learnability"} <= set(drawn)
    assert drawn["training_profiles"] == [3, 3]  # a line per recorded step, a panel per run
    assert drawn["losses"] == [2, 2]  # the run's curve and the baseline, a panel per cell
    assert drawn["learnability"] == [4]  # two cells' points, the baseline and the zero line
