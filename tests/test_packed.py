"""A batch of sequences of their own lengths, packed (torch.nn.utils.rnn.pack_padded_sequence) for an
nn.GRU or nn.LSTM: each sequence's lags count from its own end, found from the packing, and each row of the
recording is that sequence recorded alone (its cell unrolled on the module's weights over its own steps,
every h retained), whatever the loss reads: h_n, the outputs unpacked, or the packed outputs' .data.

    pytest tests/test_packed.py
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence, pad_packed_sequence

import harness
from harness.core.errors import HarnessError

EMBED, HIDDEN, VOCAB, T = 5, 7, 11, 12
LENGTHS = torch.tensor([9, T, 3, 9, 6])  # two of one length: the packing's order among them must be kept
CELLS = {nn.GRU: nn.GRUCell, nn.LSTM: nn.LSTMCell}


class PackedClassifier(nn.Module):
    """Embedded sequences zero-padded to T, packed for the recurrent module; the loss reads what `reads`
    names: the top layer's h_n, the outputs unpacked (every step of each sequence), or the packed
    outputs' .data directly (a head over the packed steps, as a language model scores them)."""

    def __init__(self, kind: type[nn.RNNBase], reads: str, batch_first: bool, enforce_sorted: bool):
        super().__init__()
        self.rnn, self.head = kind(EMBED, HIDDEN, batch_first=batch_first), nn.Linear(HIDDEN, VOCAB)
        self.reads, self.enforce_sorted = reads, enforce_sorted

    def forward(self, x, lengths):  # x (B, T, EMBED) batch first, lengths (B,)
        order = torch.arange(len(lengths))
        if self.enforce_sorted:  # the caller sorts the batch itself (and unsorts what comes out)
            order = torch.sort(lengths, descending=True, stable=True).indices
        padded = x[order] if self.rnn.batch_first else x[order].transpose(0, 1)
        packed = pack_padded_sequence(padded, lengths[order], self.rnn.batch_first, self.enforce_sorted)
        out, final = self.rnn(packed)
        h_n = final[0] if isinstance(final, tuple) else final
        unsorted = torch.argsort(order)
        if self.reads == "h_n":
            return self.head(h_n[-1][unsorted])
        if self.reads == "outputs":
            return self.head(pad_packed_sequence(out, batch_first=True)[0][unsorted])
        return self.head(out.data)  # rows in the packing's order


def alone(model: PackedClassifier, x_row: torch.Tensor, target_row: torch.Tensor, length: int, every_step: bool):
    """ln ||dL/dh_t||, t = 0..length, of one sequence alone: the module's cell with its weights unrolled over
    the sequence's own steps, every h retained; L its cross-entropy at every step, or at its last."""
    cell = CELLS[type(model.rnn)](EMBED, HIDDEN).double()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        setattr(cell, name, getattr(model.rnn, f"{name}_l0"))
    zeros = torch.zeros(1, HIDDEN, dtype=torch.float64, requires_grad=True)
    state, hs = (zeros, zeros.detach().clone()) if isinstance(model.rnn, nn.LSTM) else zeros, [zeros]
    for t in range(length):
        state = cell(x_row[t : t + 1], state)
        hs.append(state[0] if isinstance(state, tuple) else state)
        hs[-1].retain_grad()
    read = range(1, length + 1) if every_step else [length]
    sum(F.cross_entropy(model.head(hs[t]), target_row[t - 1 : t], reduction="sum") for t in read).backward()
    return torch.stack([h.grad.norm() for h in hs]).log()


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LENGTHS), T, EMBED, generator=generator, dtype=torch.float64)
    targets = torch.randint(VOCAB, (len(LENGTHS), T), generator=generator)
    return x * (torch.arange(T) < LENGTHS[:, None])[..., None], targets


def own_steps_loss(reads: str, targets: torch.Tensor, model: PackedClassifier):
    """The cross-entropy of each sequence at its last step (h_n) or at each of its steps, read from what
    the model returns: batch-first logits, or the packed steps' logits matched to targets packed alike."""
    rows = torch.arange(len(LENGTHS))
    if reads == "h_n":
        return lambda logits: F.cross_entropy(logits, targets[rows, LENGTHS - 1], reduction="sum")
    if reads == "outputs":
        own = torch.arange(T) < LENGTHS[:, None]
        return lambda logits: F.cross_entropy(logits[own], targets[own], reduction="sum")
    order = torch.sort(LENGTHS, descending=True, stable=True).indices if model.enforce_sorted else rows
    packed = pack_padded_sequence(targets[order], LENGTHS[order], True, model.enforce_sorted).data
    return lambda logits: F.cross_entropy(logits, packed, reduction="sum")


@pytest.mark.parametrize("kind", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("reads", ["h_n", "outputs", "data"])
@pytest.mark.parametrize("batch_first, enforce_sorted", [(True, False), (False, True)])
def test_a_packed_batch_is_recorded_as_each_sequence_alone(kind, reads, batch_first, enforce_sorted):
    torch.manual_seed(0)
    model = PackedClassifier(kind, reads, batch_first, enforce_sorted).double()
    x, targets = padded_batch()
    profile = harness.record(model, (x, LENGTHS), module=model.rnn, loss=own_steps_loss(reads, targets, model))
    # the rows are the module's batch: the caller's, sorted by length where the caller sorts it
    order = torch.sort(LENGTHS, descending=True, stable=True).indices if enforce_sorted else torch.arange(len(LENGTHS))
    assert profile.lengths.tolist() == LENGTHS[order].tolist() and profile.flags == []
    assert profile.seq_len == profile.columns["seq_len"] == T
    expected = torch.full((T + 1, len(LENGTHS)), math.nan, dtype=torch.float64)
    for row, sequence in enumerate(order.tolist()):
        length = int(LENGTHS[sequence])
        expected[T - length :, row] = alone(model, x[sequence], targets[sequence], length, reads != "h_n")
    h = profile.state_names.index("h")
    torch.testing.assert_close(profile.log_norms[..., h], expected, rtol=0, atol=1e-9, equal_nan=True)


def test_a_recurrent_model_given_a_packed_batch_is_recorded_as_a_module_inside_one():
    """nn.GRU itself called on a PackedSequence (packed from the padded batch, or from the list of
    sequences): the same recording as inside a model that packs the batch; the probe (no loss) reads each
    sequence at its own last step, where its gradient is the probe's unit readout (ln 1 = 0 at lag 0 in
    every row), as a loss reading h_n through that readout gives."""
    torch.manual_seed(0)
    model = PackedClassifier(nn.GRU, "h_n", batch_first=True, enforce_sorted=False).double()
    x, targets = padded_batch()
    inside = harness.record(model, (x, LENGTHS), module=model.rnn, loss=own_steps_loss("h_n", targets, model))
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    at_ends = lambda out: F.cross_entropy(
        model.head(out[1][-1]), targets[torch.arange(len(LENGTHS)), LENGTHS - 1], reduction="sum"
    )
    alone_ = harness.record(model.rnn, packed, loss=at_ends)
    torch.testing.assert_close(alone_.log_norms, inside.log_norms, rtol=0, atol=1e-12, equal_nan=True)
    listed = pack_sequence([x[row, :length] for row, length in enumerate(LENGTHS.tolist())], enforce_sorted=False)
    from_list = harness.record(model.rnn, listed, loss=at_ends)  # packed from the sequences, never padded
    torch.testing.assert_close(from_list.log_norms, inside.log_norms, rtol=0, atol=1e-12, equal_nan=True)
    probe = harness.record(model.rnn, packed, seed=3)
    assert probe.lengths.tolist() == LENGTHS.tolist()
    torch.testing.assert_close(probe.log_norms[-1, :, 0], torch.zeros(len(LENGTHS), dtype=torch.float64))
    readout = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    through = harness.record(model.rnn, packed, loss=lambda out: (out[1][-1] @ (readout / readout.norm())).sum())
    torch.testing.assert_close(probe.log_norms, through.log_norms, rtol=0, atol=1e-12, equal_nan=True)


def test_the_probe_reads_each_padded_sequence_at_its_own_end():
    """A model that holds an ended sequence's state (torch.where) recorded without a loss, and a module
    over the padding with lengths= and no loss: the probe reads each sequence at its own last step
    (gradient: the unit readout, ln 1 = 0), not the batch's, where an ended sequence is padding."""
    torch.manual_seed(0)
    model = PackedClassifier(nn.GRU, "outputs", batch_first=True, enforce_sorted=False).double()
    x, _ = padded_batch()
    over_the_padding = harness.record(model.rnn, x, lengths=LENGTHS)
    packed = harness.record(model.rnn, pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False))
    assert over_the_padding.lengths.tolist() == LENGTHS.tolist()
    torch.testing.assert_close(over_the_padding.log_norms, packed.log_norms, rtol=0, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(packed.log_norms[-1, :, 0], torch.zeros(len(LENGTHS), dtype=torch.float64))
    holding = HeldLoop(model.rnn).double()
    held = harness.record(holding, (x, LENGTHS), module=holding.cell)
    assert held.lengths.tolist() == LENGTHS.tolist()
    torch.testing.assert_close(held.log_norms, packed.log_norms, rtol=0, atol=1e-12, equal_nan=True)
    # a sequence of length 0 is read nowhere: its one lag (its initial state) has gradient 0
    lengths = torch.tensor([9, 0, 3, 9, 6])
    for profile in (
        harness.record(model.rnn, x, lengths=lengths),
        harness.record(holding, (x, lengths), module=holding.cell),
    ):
        assert profile.log_norms[-1, 1, 0] == -math.inf and profile.log_norms[:-1, 1].isnan().all()
        torch.testing.assert_close(profile.log_norms[-1, [0, 2, 3, 4], 0], torch.zeros(4, dtype=torch.float64))


class HeldLoop(nn.Module):
    """nn.GRUCell on `gru`'s weights in the model's own loop, an ended sequence's state held (torch.where)."""

    def __init__(self, gru: nn.GRU):
        super().__init__()
        self.cell = nn.GRUCell(EMBED, HIDDEN)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(self.cell, name, getattr(gru, f"{name}_l0"))

    def forward(self, x, lengths):  # x (B, T, EMBED)
        h, outputs = torch.zeros(x.shape[0], HIDDEN, dtype=x.dtype), []
        for t in range(x.shape[1]):
            h = torch.where((t < lengths)[:, None], self.cell(x[:, t], h), h)
            outputs.append(h)
        return torch.stack(outputs, 1)


@pytest.mark.parametrize(
    "attempt, expected",
    [  # attempt(the GRU, the batch packed from x, x (B, T, EMBED)): one recording of it
        pytest.param(
            lambda rnn, packed, x: harness.record(rnn, packed, loss=lambda out, s: out[1].sum(), sources=4),
            "module=GRU: called with a PackedSequence, whose sequences end at their own lengths, with sources=4",
            id="with sources",
        ),
        pytest.param(
            lambda rnn, packed, x: harness.record(rnn, packed, loss=lambda out: out[1].sum(), lengths=[9, T, 4, 9, 6]),
            "lengths[2]=4: the model holds that sequence's state from step 4 on (its length is 3)",
            id="lengths past the packing",
        ),
        pytest.param(
            lambda rnn, packed, x: harness.record(rnn, pack_padded_sequence(x.float(), LENGTHS, True, False)),
            "inputs: torch.float32 on cpu; the model's parameters are torch.float64",
            id="float32 for a float64 module",
        ),
        pytest.param(  # the module named as itself, called as module(packed, hx)
            lambda rnn, packed, x: harness.record(
                rnn, (pack_padded_sequence(x.float(), LENGTHS, True, False), None), module=rnn
            ),
            "inputs: torch.float32 on cpu; the model's parameters are torch.float64",
            id="float32 for a float64 module named as its own",
        ),
        pytest.param(
            lambda rnn, packed, x: harness.record(nn.GRUCell(EMBED, HIDDEN).double(), packed),
            "inputs: a PackedSequence, which GRUCell does not take; expected a 3-d tensor",
            id="a cell given it",
        ),
        pytest.param(
            lambda rnn, packed, x: harness.Monitor(rnn, (packed,)),
            "batch: a PackedSequence, which the monitor cannot cut to `sequences`",
            id="the monitor given it",
        ),
    ],
)
def test_what_a_packed_batch_cannot_be_recorded_with_is_refused_in_one_line(attempt, expected):
    model = PackedClassifier(nn.GRU, "outputs", batch_first=True, enforce_sorted=False).double()
    x, _ = padded_batch()
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    with pytest.raises(HarnessError) as error:
        attempt(model.rnn, packed, x)
    message = str(error.value)
    assert message.startswith(expected) and "\n" not in message, message
    assert isinstance(packed, PackedSequence)


class PackingLM(nn.Module):
    """Token ids padded with PAD, each sequence's length read from them and its embeddings packed for the
    LSTM; logits per step, batch first, zero past a sequence's end (pad_packed_sequence)."""

    PAD = 0

    def __init__(self):
        super().__init__()
        self.embed, self.lstm = nn.Embedding(VOCAB, EMBED), nn.LSTM(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens):  # (B, T)
        lengths = (tokens != self.PAD).sum(1)
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        return self.head(pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=tokens.shape[1])[0])


def test_the_monitor_records_a_model_that_packs_its_batch_as_harness_record_does():
    """The monitor's cut batch, recorded with the lengths its packing gives: what harness.record gives of
    that cut batch, each sequence's lags from its own end."""
    torch.manual_seed(0)
    model = PackingLM()
    tokens = torch.randint(1, VOCAB, (len(LENGTHS), T)) * (torch.arange(T) < LENGTHS[:, None])
    targets = torch.where(tokens != PackingLM.PAD, torch.randint(VOCAB, tokens.shape), -100)
    loss = lambda logits, y: F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
    snapshot = harness.Monitor(model, module=model.lstm, loss=loss, sequences=4).step(0, (tokens, targets))
    model.eval()
    alone = harness.record(model, tokens[:4], module=model.lstm, loss=loss, targets=targets[:4])
    assert snapshot.profile.lengths.tolist() == LENGTHS[:4].tolist()
    torch.testing.assert_close(snapshot.profile.log_norms, alone.log_norms, rtol=0, atol=0, equal_nan=True)
    h = alone.state_names.index("h")  # (c at the last step is read by nothing: -inf there)
    assert torch.isnan(alone.log_norms[: T - 3, 2]).all() and torch.isfinite(alone.log_norms[T - 3 :, 2, h]).all()
