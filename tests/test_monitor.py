"""The training monitor (harness.Monitor): what it records, and that it changes nothing training uses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness.core.errors import HarnessError

VOCAB, HIDDEN, B, T = 13, 16, 6, 20


class DropoutLM(nn.Module):
    """Embedding -> 2-layer LSTM with dropout between layers -> dropout -> Linear: training draws from
    torch's RNG at every step, so a monitor that used it would change the weights."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.lstm = nn.LSTM(8, HIDDEN, num_layers=2, dropout=0.3, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens):
        return self.head(self.drop(self.lstm(self.embed(tokens))[0]))


def cross_entropy(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def train(monitor_kwargs: dict | None, steps: int = 7) -> tuple[dict, harness.Monitor | None]:
    torch.manual_seed(0)
    model = DropoutLM()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.randint(VOCAB, (steps, B, T + 1), generator=torch.Generator().manual_seed(1))
    monitor = None
    if monitor_kwargs is not None:
        monitor = harness.Monitor(model, module=model.lstm, **{"loss": cross_entropy, **monitor_kwargs})
    for step in range(steps):
        tokens, targets = data[step, :, :-1], data[step, :, 1:]
        optimiser.zero_grad()
        cross_entropy(model(tokens), targets).backward()
        optimiser.step()
        if monitor is not None:
            monitor.step(step, (tokens, targets))
    return {k: v.clone() for k, v in model.state_dict().items()}, monitor


def test_training_with_the_monitor_gives_bit_identical_weights():
    without, _ = train(None)
    with_monitor, monitor = train({"every": 2, "sequences": 3})
    assert without.keys() == with_monitor.keys()
    for key in without:
        assert torch.equal(without[key], with_monitor[key]), f"{key} differs with the monitor on"
    assert [s.step for s in monitor.snapshots] == [0, 2, 4, 6]
    assert monitor.model.training and monitor.model.lstm.training, "the model's train mode is restored"


def test_the_monitor_records_the_first_batch_cut_to_sequences():
    at_step = lambda logits, targets, s: F.cross_entropy(logits[:, s], targets[:, s])
    _, monitor = train({"every": 3, "sequences": 4, "sources": 5, "loss": at_step})
    first = monitor.snapshots[0]
    assert first.profile.columns["batch_size"] == 4 and first.profile.view == "dependency"
    assert {f["layer"] for f in first.fits} == {0, 1} and {f["state"] for f in first.fits} == {"h", "c"}
    assert all("horizon" in f for f in first.fits)
    frame = monitor.frame()
    assert sorted(frame.step.unique()) == [0, 3, 6]
    # the fixed batch is a copy: changing the training tensors in place cannot move it
    tokens = monitor.batch[0]
    assert tokens.shape == (4, T)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"every": 0}, "every=0: expected an integer >= 1"),
        ({"sequences": 1.5}, "sequences=1.5: expected an integer"),
        # refused when the monitor is made, not at its first recording mid-training
        ({"seed": "a"}, "seed=a: expected an integer >= 0"),
        ({"recorder": "fast"}, "recorder='fast': expected one of exact, autograd, auto"),
        ({"horizon_decades": 0}, "horizon_decades=0: expected a positive number"),
        ({"loggers": "Logger"}, r"loggers=Logger: expected a list of loggers, e.g. loggers=\[logger\]"),
        ({"loggers": ["Logger", object()]}, "loggers: object has no log"),
    ],
)
def test_bad_monitor_settings_are_one_line(kwargs, expected):
    kwargs = {k: Logger() if v == "Logger" else [Logger(), v[1]] if k == "loggers" else v for k, v in kwargs.items()}
    with pytest.raises(HarnessError, match=expected) as error:
        harness.Monitor(nn.LSTM(3, 4), **kwargs)
    assert "\n" not in str(error.value)


class Logger:
    """A logger that keeps what it is given."""

    def __init__(self):
        self.logged = []

    def log(self, snapshot):
        self.logged.append(snapshot)

    def close(self):
        pass


class Classifier(nn.Module):
    """A sequence classifier in torch's (seq_len, batch, features) layout: class logits from the last step."""

    def __init__(self):
        super().__init__()
        self.rnn, self.out = nn.GRU(3, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.out(self.rnn(x)[0][-1])


def test_a_classifiers_targets_are_cut_along_their_own_batch_dimension():
    """(seq_len, batch, features) inputs and (batch,) targets: the inputs are cut along dimension 1, the
    targets along 0, and the recording is harness.record's on that cut batch (it raised IndexError)."""
    torch.manual_seed(0)
    model, x, y = Classifier(), torch.randn(20, 16, 3), torch.randint(4, (16,))
    monitor = harness.Monitor(model, every=1, sequences=5, loss=F.cross_entropy)
    assert monitor.frame().empty  # nothing recorded yet: an empty table
    snapshot = monitor.step(0, (x, y))
    assert torch.equal(monitor.batch[0], x[:, :5]) and torch.equal(monitor.batch[1], y[:5])
    alone = harness.record(model, x[:, :5], loss=F.cross_entropy, targets=y[:5])
    assert torch.equal(snapshot.profile.log_norms, alone.log_norms)
    with pytest.raises(HarnessError, match=r"batch_dim=1: the targets' shape \(7,\) has no dimension"):
        harness.Monitor(model, (x, torch.randint(4, (7,))), loss=F.cross_entropy)


def padded_cross_entropy(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def test_a_padded_batch_s_lengths_are_cut_with_it_and_recorded_as_harness_record_s():
    """A language model on sequences of their own lengths, padding left out of the loss (ignore_index): the
    monitor cuts the lengths with the batch (given to Monitor, or with the batch step first keeps), and
    records what harness.record records of that cut batch with those lengths (each sequence's lags from its
    own end); lengths for another batch size, given twice, or with sources, are refused in one line, the
    last when the monitor is made."""
    torch.manual_seed(0)
    model = DropoutLM()
    lengths = torch.tensor([T, 15, 9, 4, T, 2])
    tokens = torch.randint(VOCAB, (B, T))
    targets = torch.where(torch.arange(T) < lengths[:, None], torch.randint(VOCAB, (B, T)), -100)
    given = lengths.clone()
    monitor = harness.Monitor(model, module=model.lstm, loss=padded_cross_entropy, sequences=4, lengths=given)
    snapshot = monitor.step(0, (tokens, targets))
    given.fill_(T)  # the caller's tensor, reused: the monitor keeps its own copy
    assert torch.equal(monitor.record(1).profile.log_norms.isnan(), snapshot.profile.log_norms.isnan())
    model.eval()
    alone = harness.record(
        model, tokens[:4], module=model.lstm, loss=padded_cross_entropy, targets=targets[:4], lengths=lengths[:4]
    )
    assert snapshot.profile.lengths.tolist() == [T, 15, 9, 4]
    torch.testing.assert_close(snapshot.profile.log_norms, alone.log_norms, rtol=0, atol=0, equal_nan=True)
    # a batch first given to step (a loader's), with its lengths
    later = harness.Monitor(model, module=model.lstm, loss=padded_cross_entropy, sequences=4)
    torch.testing.assert_close(
        later.step(0, (tokens, targets), lengths=lengths.tolist()).profile.log_norms,
        alone.log_norms,
        rtol=0,
        atol=0,
        equal_nan=True,
    )
    with pytest.raises(HarnessError, match="Monitor.step: lengths given to Monitor and to step; expected them once"):
        harness.Monitor(model, module=model.lstm, loss=padded_cross_entropy, lengths=lengths).step(
            0, (tokens, targets), lengths=lengths
        )
    with pytest.raises(HarnessError, match="lengths: 5 of them for a batch of 6") as error:
        harness.Monitor(model, (tokens, targets), module=model.lstm, loss=padded_cross_entropy, lengths=lengths[:5])
    assert "\n" not in str(error.value)
    with pytest.raises(HarnessError, match="lengths with sources=4"):
        harness.Monitor(model, module=model.lstm, loss=padded_cross_entropy, sources=4, lengths=lengths)


def test_step_without_any_batch_is_one_line():
    with pytest.raises(HarnessError, match="no batch yet"):
        harness.Monitor(nn.LSTM(3, 4)).step(0)


def test_char_lm_example_runs_smoke_sized(tmp_path):
    """examples/char_lm.py --smoke: trains, logs to TensorBoard and the parquet log, draws its figure."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import char_lm

    char_lm.main(["--smoke", "--out", str(tmp_path)])
    assert (tmp_path / "char_lm.png").exists() and (tmp_path / "monitor" / "DONE").exists()
    assert any((tmp_path / "tensorboard").iterdir())


def test_targets_whose_batch_dimension_cannot_be_told_are_refused_unless_named():
    """(batch, seq_len) targets beside (seq_len, batch) inputs with seq_len == batch: they were cut along
    time, silently pairing each sample with the wrong targets."""
    torch.manual_seed(0)
    model, x, y = nn.GRU(3, 4), torch.randn(4, 4, 3), torch.randn(4, 4)  # T == batch == 4; y is (batch, T)

    def loss(out, targets):  # out (T, batch, 4): the last unit against each sample's targets over time
        return ((out[..., -1] - targets.T) ** 2).mean()

    with pytest.raises(HarnessError, match=r"has the inputs' batch size 4 in dimensions 1 and 0; expected targets"):
        harness.Monitor(model, (x, y), sequences=2, loss=loss)
    monitor = harness.Monitor(model, (x, y), sequences=2, loss=loss, targets_batch_dim=0)
    assert torch.equal(monitor.batch[1], y[:2]) and torch.equal(monitor.batch[0], x[:, :2])
    assert torch.equal(harness.Monitor(model, (x, y), sequences=4, loss=loss).batch[1], y)  # nothing cut


def test_one_monitors_snapshots_are_one_run_and_two_trainings_are_two():
    """A run id names a monitor's training by its first snapshot (the columns name neither weights nor
    batch): every snapshot of one monitor shares it, whatever training changed; a second model of the
    same shape, initialised otherwise, is another run (before, both were one run_id, and collect read
    the second folder as a duplicate of the first). Each snapshot's profile keeps its own."""
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        rnn, inputs = nn.RNN(3, 5), torch.randn(15, 4, 3)
        monitor = harness.Monitor(rnn, inputs)
        monitor.record(0)
        with torch.no_grad():
            rnn.weight_hh_l0.mul_(2.0)  # a training step that changes the profile
        monitor.record(1)
        first, second = monitor.snapshots
        assert not torch.equal(first.profile.log_norms, second.profile.log_norms)
        assert first.run_id == second.run_id and set(monitor.frame().run_id) == {first.run_id}
        # each profile alone is a recording of its own (saved apart: two runs, neither over the other),
        # the first one too: saved beside the training's log, it is not read as the log's duplicate
        assert len({first.profile.run_id, second.profile.run_id, first.run_id}) == 3
        runs.append(first.run_id)
    assert runs[0] != runs[1]
