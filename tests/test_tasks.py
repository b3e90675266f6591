"""Task generators: their baselines measured on generated data against the documented constants."""

import math

import pytest
import torch

from harness.core.tasks import COPY_LENGTH, COPY_SYMBOLS, TASKS, WALK_NOISE


def make(task, seq_len=40, batch=200_000, seed=0):
    return TASKS[task].make(seq_len, batch, torch.Generator().manual_seed(seed), input_size=3, hidden_size=4)


def test_adding_predicting_one_scores_a_sixth():
    batch = make("adding")
    assert batch.inputs.shape == (40, 200_000, 2)
    mask = batch.inputs[..., 1]
    assert torch.equal(mask[:20].sum(0), torch.ones(200_000)) and torch.equal(mask[20:].sum(0), torch.ones(200_000))
    assert torch.allclose(batch.targets, (batch.inputs[..., 0] * mask).sum(0))
    ones = torch.ones(1, 200_000, 1, dtype=torch.float64)
    assert batch.loss(ones).item() == pytest.approx(1 / 6, rel=0.01)
    assert TASKS["adding"].baseline(40) == pytest.approx(0.1667, abs=1e-4)


def test_copy_memoryless_baseline():
    seq_len = 30
    batch = make("copy", seq_len=seq_len, batch=2000)
    steps = seq_len + 2 * COPY_LENGTH
    assert batch.inputs.shape == (steps, 2000, COPY_SYMBOLS + 2) and not batch.final_state_only
    tokens = batch.inputs.argmax(-1)
    assert torch.equal(batch.targets[-COPY_LENGTH:], tokens[:COPY_LENGTH])  # recall what was shown
    assert (tokens[seq_len + COPY_LENGTH - 1] == COPY_SYMBOLS + 1).all()  # the delimiter
    # The best memoryless guess: blank until the recall, then uniform over the 8 symbols.
    logits = torch.full((steps, 2000, COPY_SYMBOLS + 2), -1e9, dtype=torch.float64)
    logits[:-COPY_LENGTH, :, 0] = 0
    logits[-COPY_LENGTH:, :, 1 : COPY_SYMBOLS + 1] = 0
    expected = COPY_LENGTH * math.log(COPY_SYMBOLS) / (seq_len + 2 * COPY_LENGTH)
    assert batch.loss(logits).item() == pytest.approx(expected, rel=1e-9)
    assert TASKS["copy"].baseline(seq_len) == pytest.approx(expected)


def test_temporal_order_labels_and_chance():
    seq_len = 50
    batch = make("temporal_order", seq_len=seq_len, batch=100_000)
    tokens = batch.inputs.argmax(-1)
    relevant = tokens >= 4
    assert (relevant.sum(0) == 2).all()
    first = relevant[5:10].any(0)  # [0.1 T, 0.2 T)
    second = relevant[25:30].any(0)  # [0.5 T, 0.6 T)
    assert first.all() and second.all()
    order = torch.stack([tokens[5:10].max(0).values, tokens[25:30].max(0).values]) - 4
    assert torch.equal(batch.targets, 2 * order[0] + order[1])
    frequencies = torch.bincount(batch.targets, minlength=4).double() / 100_000
    entropy = -(frequencies * frequencies.log()).sum().item()
    assert entropy == pytest.approx(math.log(4), abs=1e-3) and TASKS["temporal_order"].baseline(50) == math.log(4)
    uniform = torch.zeros(1, 100_000, 4, dtype=torch.float64)
    assert batch.loss(uniform).item() == pytest.approx(math.log(4))


def test_random_walk_repeating_the_last_value():
    batch = make("random_walk", seq_len=100, batch=20_000)
    assert batch.loss(batch.inputs).item() == pytest.approx(1 + 2 * WALK_NOISE**2, rel=0.02)
    assert TASKS["random_walk"].baseline(100) == 1.5
