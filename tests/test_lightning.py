"""The monitor as a Lightning callback (harness.lab.lightning.MonitorCallback): a tiny language model
trained by a real Trainer on the CPU, the monitor's TensorBoard log read back."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing import event_accumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import harness
from harness.core.errors import ConfigError
from harness.lab.lightning import MonitorCallback
from harness.lab.loggers import SCALARS, TensorBoard

VOCAB, T, B = 11, 12, 4


class TinyLM(pl.LightningModule):
    """Embedding -> LSTM (batch first) -> Linear, trained on next-token cross-entropy."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 6)
        self.lstm = nn.LSTM(6, 10, batch_first=True)
        self.head = nn.Linear(10, VOCAB)

    def forward(self, tokens):
        return self.head(self.lstm(self.embed(tokens))[0])

    def training_step(self, batch, batch_idx):
        tokens, targets = batch
        return cross_entropy(self(tokens), targets)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def cross_entropy(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def loader(batches: int) -> DataLoader:
    data = torch.randint(VOCAB, (batches * B, T + 1), generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(data[:, :-1], data[:, 1:]), batch_size=B)


def fit(callback: MonitorCallback | None, max_steps: int, model: TinyLM | None = None, **trainer_kwargs) -> TinyLM:
    """Train model (default: a TinyLM seeded 0) for max_steps optimiser steps with the callback."""
    if model is None:
        torch.manual_seed(0)
        model = TinyLM()
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[] if callback is None else [callback],
        **trainer_kwargs,
    )
    trainer.fit(model, loader(max_steps * trainer_kwargs.get("accumulate_grad_batches", 1)))
    return model


def test_callback_records_every_other_step_into_tensorboard(tmp_path):
    tensorboard = TensorBoard(tmp_path / "tb")
    callback = MonitorCallback(module="lstm", loss=cross_entropy, every=2, sequences=3, loggers=[tensorboard])
    model = fit(callback, max_steps=6)
    monitor = callback.monitor
    assert monitor.model is model and monitor.module is model.lstm
    snapshots = monitor.snapshots
    assert [s.step for s in snapshots] == [0, 2, 4, 6]  # step 0: before the first optimiser step
    assert snapshots[0].profile.columns["batch_size"] == 3 and snapshots[0].profile.columns["loss"] == "custom"
    assert tensorboard.writer.all_writers is None, "closed when training ended"

    events = event_accumulator.EventAccumulator(
        str(tmp_path / "tb"), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    )
    events.Reload()
    for name in SCALARS:
        key = f"gradient/{name}/layer0_h"
        expected = {s.step: s.fits[0][name] for s in snapshots if math.isfinite(s.fits[0][name])}
        assert {e.step: e.value for e in events.Scalars(key)} == pytest.approx(expected, rel=1e-6)
    for tag in ("gradient/profile", "gradient/profiles_over_training"):
        assert [image.step for image in events.Images(tag)] == [0, 2, 4, 6]
    # the profiles changed as the model trained
    assert snapshots[0].fits[0]["rate"] != snapshots[-1].fits[0]["rate"]


def test_callback_records_once_per_optimiser_step_and_changes_no_weight():
    without = fit(None, max_steps=4, accumulate_grad_batches=2)
    torch.manual_seed(0)
    model = TinyLM()
    monitor = harness.Monitor(model, module=model.lstm, loss=cross_entropy, every=2, sequences=2)
    fit(MonitorCallback(monitor), max_steps=4, model=model, accumulate_grad_batches=2)
    assert [s.step for s in monitor.snapshots] == [0, 2, 4]  # 8 batches, 4 optimiser steps
    for key, value in without.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), f"{key} differs with the callback on"


def test_callback_refuses_a_monitor_with_arguments_and_names_a_missing_attribute():
    monitor = harness.Monitor(TinyLM(), every=2)
    with pytest.raises(ConfigError, match=r"MonitorCallback\(monitor, every=...\): expected a Monitor or its"):
        MonitorCallback(monitor, every=3)
    callback = MonitorCallback(module="rnn", every=2)
    with pytest.raises(ConfigError, match="module='rnn': TinyLM has no submodule rnn"):
        callback.setup(None, TinyLM(), "fit")
