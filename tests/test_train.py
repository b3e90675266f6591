"""Training: chrono init, clipping against its definition, and what a training run writes."""

import json
import math

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from harness.cli.paths import CONF_DIR
from harness.core.cells import RecurrentNet
from harness.core.init import NotApplicable, initialise
from harness.core.spec import RunSpec, TrainSpec
from harness.core.train import Evaluation, TrainingCallback, train
from harness.lab import run as run_module
from harness.lab import session


@pytest.mark.parametrize("cell,gates,keep", [("lstm", 4, 1), ("gru", 3, 1)])
def test_chrono_init(cell, gates, keep):
    model = RecurrentNet(cell, "tanh", 3, 50, 1).double()
    initialise(model, "orthogonal", 1.0, torch.Generator().manual_seed(0), chrono_tmax=100)
    total = (model.bias_ih_l0 + model.bias_hh_l0).detach().chunk(gates)
    assert (total[keep] >= 0).all() and (total[keep] <= math.log(99) + 1e-12).all()
    assert total[keep].std() > 0.5  # spread over the range, not one value
    if cell == "lstm":
        torch.testing.assert_close(total[0], -total[1])


def test_chrono_does_not_apply_to_the_rnn():
    with pytest.raises(NotApplicable):
        initialise(RecurrentNet("rnn", "tanh", 3, 5, 1), "default", 1.0, torch.Generator(), chrono_tmax=10)


def test_clip_norm_bounds_an_sgd_step():
    weight = torch.nn.Parameter(torch.ones(10, dtype=torch.float64))
    settings = TrainSpec(optimizer="sgd", lr=0.1, weight_decay=0.0, steps=1, record_every=1, clip_norm=0.5)
    before = weight.detach().clone()
    rows = []

    class Rows(TrainingCallback):
        def on_record(self, step, row, log_norms):
            rows.append(row)

    train(
        [weight],
        settings,
        lambda: None,
        lambda batch: (weight * 100).sum(),
        lambda step: Evaluation(0.0),
        1.0,
        callbacks=[Rows()],
    )
    assert rows[0]["grad_norm"] == pytest.approx(100 * math.sqrt(10))  # reported before clipping
    assert (weight.detach() - before).norm().item() == pytest.approx(0.1 * 0.5)


def test_a_training_run_writes_profiles_losses_and_its_result(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "task=adding",
                "cell=lstm",
                "seq_len=10",
                "hidden_size=16",
                "batch_size=32",
                "train.steps=60",
                "train.record_every=20",
                "train.lr=0.01",
            ],
        )
    assert run_module.run(cfg, tmp_path) == "ok"
    profile = pd.read_parquet(tmp_path / "profile.parquet")
    assert sorted(profile.step.unique()) == [0, 20, 40, 60] and (profile.input_size == 2).all()
    losses = pd.read_parquet(tmp_path / "losses.parquet")
    assert losses.step.tolist() == [0, 20, 40, 60] and losses.eval_loss.notna().all()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["baseline"] == pytest.approx(1 / 6) and meta["final_loss"] == losses.eval_loss.iloc[-1]
    assert meta["solved"] == (meta["final_loss"] <= 0.1 * meta["baseline"])
    assert losses.eval_loss.iloc[-1] < losses.eval_loss.iloc[0]  # it does learn something


def test_a_probe_run_writes_no_loss_table(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["seq_len=5", "hidden_size=4"])
    assert run_module.run(cfg, tmp_path) == "ok"
    assert (tmp_path / "profile.parquet").exists() and not (tmp_path / "losses.parquet").exists()


def test_plot_redraws_a_single_training_run_folder(tmp_path):
    """The losses figure needs the loss table beside the run's config columns, also for one run."""
    from harness.cli.plot import main as plot_main

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=["task=adding", "seq_len=6", "hidden_size=4", "train.steps=4", "train.record_every=2"]
        )
    run_module.run(cfg, tmp_path)
    (tmp_path / ".hydra").mkdir()  # as Hydra leaves it
    assert plot_main([str(tmp_path)]) == 0
    assert (tmp_path / "figures" / "losses.png").exists()


@pytest.mark.parametrize(
    "cell,task,recorder",
    [
        ("rnn", "adding", "exact"),
        ("lstm", "adding", "exact"),
        ("gru", "copy", "autograd"),
        ("lstm", "random_walk", "autograd"),
        ("gru", "adding", "exact"),
        ("rnn", "copy", "autograd"),
    ],
)
def test_fused_training_equals_the_explicit_cells(cell, task, recorder, monkeypatch):
    """Training through whole-sequence layers (harness.core.sequences.train_forward: the written-out
    BPTT of the rnn and gru, torch's fused module for the lstm; the same parameters) gives the explicit
    cells' losses and recorded profiles, to float64 rounding."""
    columns = dict(
        cell=cell,
        activation="tanh",
        init="default",
        scale=1.0,
        seq_len=12,
        hidden_size=6,
        input_size=3,
        num_layers=2,
        batch_size=4,
        seed=0,
        task=task,
        recorder=recorder,
        dtype="float64",
        device="cpu",
        **{
            "train.steps": 6,
            "train.lr": 0.01,
            "train.optimizer": "adam",
            "train.clip_norm": None,
            "train.clip_value": None,
            "train.weight_decay": 0.0,
            "train.record_every": 3,
        },
    )
    columns["input_size"] = {"adding": 2, "copy": 10, "random_walk": 1}[task]
    fused = run_module.record(RunSpec.from_columns(columns))
    monkeypatch.setattr(session, "train_forward", lambda net: None)  # the explicit cells only
    explicit = run_module.record(RunSpec.from_columns(columns))
    assert [row["step"] for row in fused.losses] == [0, 3, 6]
    for a, b in zip(fused.losses, explicit.losses):
        for key in ("eval_loss", "train_loss", "grad_norm"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key
    for (step_a, a), (step_b, b) in zip(fused.profiles, explicit.profiles):
        assert step_a == step_b
        finite = torch.isfinite(a)
        assert torch.equal(finite, torch.isfinite(b)) and (a[finite] - b[finite]).abs().max() < 1e-9
