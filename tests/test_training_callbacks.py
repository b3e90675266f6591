"""The training loop's callback seam (harness.core.train.TrainingCallback): a callback sees every
step and every record, in order, and watching changes nothing: a run with a no-op callback gives the
same losses and weights, bit for bit, as one without."""

import math

import torch

from harness.core.spec import RunSpec, TrainSpec
from harness.core.train import Evaluation, TrainingCallback, train
from harness.lab import run as run_module

COLUMNS = dict(
    cell="gru",
    activation="tanh",
    init="orthogonal",
    scale=1.0,
    seq_len=10,
    hidden_size=5,
    input_size=2,
    num_layers=1,
    batch_size=4,
    seed=3,
    task="adding",
    dtype="float64",
    device="cpu",
    recorder="exact",
    **{
        "train.steps": 7,
        "train.lr": 0.01,
        "train.optimizer": "adam",
        "train.clip_norm": 0.5,
        "train.clip_value": 0.1,
        "train.weight_decay": 1e-3,
        "train.record_every": 3,
        "train.flossing_k": 2,
        "train.flossing_every": 4,
    },
)


class Log(TrainingCallback):
    """Every call, in order."""

    def __init__(self):
        self.calls = []

    def on_step(self, step, loss, grad_norm):
        assert math.isfinite(loss) and grad_norm >= 0
        self.calls.append(("step", step))

    def on_record(self, step, row, log_norms):
        assert row["step"] == step and math.isfinite(row["eval_loss"])
        self.calls.append(("record", step, None if log_norms is None else tuple(log_norms.shape)))


def test_train_tells_a_callback_every_step_and_every_record_in_order():
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    settings = TrainSpec(optimizer="sgd", lr=0.01, steps=5, record_every=2)
    log = Log()
    diverged = train(
        [weight],
        settings,
        lambda: None,
        lambda batch: weight.pow(2).sum(),
        lambda step: Evaluation(float(step)),
        1.0,
        callbacks=[log],
    )
    assert not diverged
    assert log.calls == [
        ("step", 1),
        ("step", 2),
        ("record", 2, None),
        ("step", 3),
        ("step", 4),
        ("record", 4, None),
        ("step", 5),
        ("record", 5, None),
    ]


def test_a_diverged_training_stops_and_says_so():
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    settings = TrainSpec(optimizer="sgd", lr=0.01, steps=5, record_every=2)
    log = Log()
    losses = iter([1.0, float("nan")])
    diverged = train(
        [weight],
        settings,
        lambda: None,
        lambda batch: weight.sum() * next(losses),
        lambda step: Evaluation(0.0),
        1.0,
        callbacks=[log],
    )
    assert diverged and log.calls == [("step", 1)]


def test_a_run_tells_its_callbacks_the_record_at_init_every_step_and_every_record():
    log = Log()
    recording = run_module.record(RunSpec.from_columns(COLUMNS), callbacks=[log])
    profile_shape = tuple(recording.profiles[0][1].shape)
    steps = [("step", step) for step in range(1, 8)]
    assert log.calls == [
        ("record", 0, profile_shape),
        *steps[:3],
        ("record", 3, profile_shape),
        *steps[3:6],
        ("record", 6, profile_shape),
        steps[6],
        ("record", 7, profile_shape),
    ]
    assert [step for step, _ in recording.profiles] == [0, 3, 6, 7]
    assert [row["step"] for row in recording.losses] == [0, 3, 6, 7]
    assert "flossing_loss" in recording.losses[1]


def test_a_no_op_callback_changes_nothing():
    spec = RunSpec.from_columns(COLUMNS)
    alone = run_module.record(spec)
    watched = run_module.record(spec, callbacks=[TrainingCallback(), Log()])

    def timeless(rows):
        return [{key: value for key, value in row.items() if key != "elapsed_s"} for row in rows]

    assert timeless(alone.losses) == timeless(watched.losses)
    for (step_a, a), (step_b, b) in zip(alone.profiles, watched.profiles, strict=True):
        assert step_a == step_b
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    for (name, a), (_, b) in zip(alone.model.state_dict().items(), watched.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
