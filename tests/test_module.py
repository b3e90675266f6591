"""The recurrent part of a whole model (harness.record(model, inputs, module=..., loss=...)), checked
against brute force: the same model unrolled by hand with torch.nn.LSTMCell / GRUCell on the module's
own weights, every state retained (retain_grad), in float64."""

from __future__ import annotations

import collections
import functools
import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness.core.errors import HarnessError

VOCAB, EMBED, HIDDEN, LAYERS, B, T = 11, 5, 7, 2, 3, 12
LOG10 = math.log(10)


class CharLM(nn.Module):
    """nn.Embedding -> nn.LSTM / nn.GRU (batch first) -> nn.Linear: logits (B, T, VOCAB)."""

    def __init__(self, kind: type[nn.RNNBase] = nn.LSTM):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.rnn = kind(EMBED, HIDDEN, num_layers=LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens):
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out)


def language_model(kind=nn.LSTM, seed=0):
    torch.manual_seed(seed)
    return CharLM(kind).double()


def tokens_and_targets(seed=1):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(VOCAB, (B, T + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def last_step(logits, y):
    return F.cross_entropy(logits[:, -1], y[:, -1], reduction="sum")


def every_step(logits, y):
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")


def at_step(logits, y, s):
    return F.cross_entropy(logits[:, s], y[:, s], reduction="sum")


def brute_force(model: CharLM, tokens, loss_of_logits):
    """ln ||dL/d block_t|| (T+1, B, blocks) of every layer's h (and c), by hand-unrolled torch cells with
    retain_grad: each layer's h_t is a node of the graph (the total adjoint)."""
    rnn, lstm = model.rnn, isinstance(model.rnn, nn.LSTM)
    cells = []
    for layer in range(LAYERS):
        cell = (nn.LSTMCell if lstm else nn.GRUCell)(EMBED if layer == 0 else HIDDEN, HIDDEN).double()
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(rnn, f"{name}_l{layer}"))
        cells.append(cell)
    zero = lambda: torch.zeros(B, HIDDEN, dtype=torch.float64, requires_grad=True)
    states = [[(zero(), zero()) if lstm else (zero(),) for _ in range(LAYERS)]]
    x = model.embed(tokens)
    tops = []
    for t in range(T):
        inp, row = x[:, t], []
        for layer, cell in enumerate(cells):
            previous = states[-1][layer]
            new = cell(inp, previous) if lstm else (cell(inp, previous[0]),)
            for tensor in new:
                tensor.retain_grad()
            row.append(tuple(new))
            inp = new[0]
        states.append(row)
        tops.append(inp)
    loss_of_logits(model.head(torch.stack(tops, 1))).backward()
    grads = [[g for layer in row for g in layer] for row in states]
    return torch.stack(
        [
            torch.stack(
                [(tensor.grad if tensor.grad is not None else torch.zeros(B)).norm(dim=-1) for tensor in row], 1
            )
            for row in grads
        ]
    ).log()


def assert_close_log10(actual, expected, tolerance=1e-6, what=""):
    difference = ((actual - expected) / LOG10).abs()
    both_inf = torch.isinf(actual) & torch.isinf(expected) & (actual.sign() == expected.sign())
    difference[both_inf | (torch.isnan(actual) & torch.isnan(expected))] = 0  # nan: a lag no source reaches
    assert difference.max() < tolerance, f"{what}: max |log10 difference| {difference.max():.2e}"


def top_h(log_norms, blocks):
    """The top layer's h: where the state adjoint dL/dS_t is the total one (nothing reads it at the same
    step). Below it, and for every c (c_t feeds h_t within the step), the state adjoint leaves out a
    same-step path that retain_grad includes."""
    return log_norms[..., -blocks]


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("loss", [last_step, every_step])
def test_language_model_adjoint_equals_brute_force(kind, loss):
    model = language_model(kind)
    tokens, targets = tokens_and_targets()
    profile = harness.record(model, tokens, module=model.rnn, loss=loss, targets=targets)
    assert profile.columns["recorder"] == ("exact" if loss is last_step else "autograd")
    assert profile.columns["module"] == kind.__name__ and profile.columns["model"] == "CharLM"
    expected = brute_force(model, tokens, lambda logits: loss(logits, targets))
    blocks = 2 if kind is nn.LSTM else 1
    assert_close_log10(top_h(profile.log_norms, blocks), top_h(expected, blocks), what=f"{kind.__name__} top h")
    # and it differs below: the same-step path from layer 0's h into layer 1's is not in dL/dS_t
    assert not torch.allclose(profile.log_norms[1:, :, 0], expected[1:, :, 0], rtol=1e-3)


def test_module_is_found_when_the_model_holds_one():
    model = language_model()
    tokens, targets = tokens_and_targets()
    found = harness.record(model, tokens, loss=every_step, targets=targets)
    named = harness.record(model, tokens, module=model.rnn, loss=every_step, targets=targets)
    assert torch.equal(found.log_norms, named.log_norms)


def test_dependency_view_with_per_step_targets_equals_brute_force():
    model = language_model()
    tokens, targets = tokens_and_targets()
    sources, seed = 5, 2
    profile = harness.record(model, tokens, module=model.rnn, loss=at_step, targets=targets, sources=sources, seed=seed)
    steps = (torch.randperm(T, generator=torch.Generator().manual_seed(seed))[:sources] + 1).sort().values.tolist()
    total = torch.zeros(T + 1, B, 2 * LAYERS, dtype=torch.float64)
    counts = torch.zeros(T + 1, dtype=torch.float64)
    for s in steps:  # L_s: cross-entropy of the prediction at output s - 1 against its own target
        per_t = brute_force(model, tokens, lambda logits: at_step(logits, targets, s - 1))
        for t in range(s + 1):
            total[T - (s - t)] += per_t[t]
            counts[T - (s - t)] += 1
    expected = total / counts.view(-1, 1, 1)
    assert torch.equal(profile.sources.double(), counts)
    assert_close_log10(top_h(profile.log_norms, 2), top_h(expected, 2), what="dependency view")
    fit = profile.fit()
    assert fit["horizon"] == T or fit["horizon"] < T, "the horizon is a lag or censored at seq_len"


class ElmanCell(nn.Module):
    """A user cell: h_t = tanh(W x_t + U h_{t-1})."""

    hidden_size = HIDDEN

    def __init__(self):
        super().__init__()
        self.input, self.recurrent = nn.Linear(EMBED, HIDDEN), nn.Linear(HIDDEN, HIDDEN, bias=False)

    def forward(self, x_t, h):
        return torch.tanh(self.input(x_t) + self.recurrent(h))


class LoopModel(nn.Module):
    """A model that calls a cell in its own loop over time, then a head on every step; `between(t, h)`,
    if given, is what the model does to the state before step t's call."""

    def __init__(self, cell: type[nn.Module], between=None):
        super().__init__()
        self.cell = cell(EMBED, HIDDEN) if cell is nn.GRUCell else cell()
        self.head = nn.Linear(HIDDEN, VOCAB)
        self.between = between

    def forward(self, x):  # (B, T, EMBED)
        h = torch.zeros(x.shape[0], HIDDEN, dtype=x.dtype)
        outputs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h) if self.between is None or t == 0 else self.step(x[:, t], self.between(t, h))
            outputs.append(self.head(h))
        return torch.stack([o[: len(outputs[-1])] for o in outputs], 1)

    def step(self, x_t, h):
        return self.cell(x_t[: len(h)], h)  # a state that lost rows (an ended sequence) takes the rows it has


class Decoder(nn.Module):
    """Feeds its own prediction back as its next input: the embedding of the argmax (greedy decoding,
    no gradient on that path) or, soft, the softmax-weighted embedding (a differentiable path)."""

    def __init__(self, soft: bool):
        super().__init__()
        self.cell, self.head, self.embed = (
            nn.GRUCell(EMBED, HIDDEN),
            nn.Linear(HIDDEN, VOCAB),
            nn.Embedding(VOCAB, EMBED),
        )
        self.soft = soft

    def forward(self, x):  # (B, EMBED): the first input
        h, x_t, outputs = torch.zeros(x.shape[0], HIDDEN, dtype=x.dtype), x, []
        for _ in range(T):
            h = self.cell(x_t, h)
            logits = self.head(h)  # (B, VOCAB)
            outputs.append(logits)
            if self.soft == "centred":  # the centred logits sum to 0: a projection on ones cancels it
                x_t = logits[:, :EMBED] - logits[:, :EMBED].mean(-1, keepdim=True)
            elif self.soft:
                x_t = logits.softmax(-1) @ self.embed.weight
            else:
                x_t = self.embed(logits.argmax(-1))
        return torch.stack(outputs, 1)


class Padded(nn.Module):
    """Sequences of their own lengths in one batch: an ended sequence's state is held by torch.where, and
    its head reads the held state (or, `reads_discarded`, the cell's output, which the state drops)."""

    def __init__(self, cell: nn.Module, reads_discarded: bool = False):
        super().__init__()
        self.cell, self.head = cell, nn.Linear(HIDDEN, VOCAB)
        self.reads_discarded = reads_discarded

    def forward(self, x, lengths):  # x (B, T, EMBED), lengths (B,)
        h, outputs = torch.zeros(x.shape[0], HIDDEN, dtype=x.dtype), []
        for t in range(x.shape[1]):
            new = self.cell(x[:, t], h)
            h = torch.where((t < lengths)[:, None], new, h)
            outputs.append(self.head(new if self.reads_discarded else h))
        return torch.stack(outputs, 1)


class LSTMLoop(nn.Module):
    """nn.LSTMCell in the model's loop; `between(t, (h, c))` is what the model does to the state before step t."""

    def __init__(self, between):
        super().__init__()
        self.cell, self.head, self.between = nn.LSTMCell(EMBED, HIDDEN), nn.Linear(HIDDEN, VOCAB), between

    def forward(self, x):
        state, outputs = None, []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state if state is None else self.between(t, state))
            outputs.append(self.head(state[0]))
        return torch.stack(outputs, 1)


class NoContextLoop(LoopModel):
    def step(self, x_t, h):
        return self.cell(x_t, h, context=None)


class ContextLoop(LoopModel):
    def step(self, x_t, h):
        return self.cell(x_t, h, context=torch.ones_like(h))


class Empty(ElmanCell):
    def forward(self, x_t, h):
        return ()


class Flagged(nn.Module):
    """A user cell whose state keeps, beside h, a bool flag: has the sequence seen a positive input yet."""

    hidden_size = HIDDEN

    def __init__(self):
        super().__init__()
        self.cell, self.head = ElmanCell(), nn.Linear(HIDDEN, VOCAB)

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, HIDDEN, dtype=self.head.weight.dtype), torch.zeros(batch_size, 1, dtype=bool)

    def forward(self, x_t, state):
        h, seen = state
        return self.cell(x_t, h), self.flag(seen, x_t)

    def flag(self, seen, x_t):  # seen or x_t[:, 0] > 0, in the flag's own dtype
        return seen + (x_t[:, :1] > 0).to(seen.dtype)


class FlagLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = Flagged()
        self.start = lambda x_t: self.cell.initial_state(len(x_t))

    def forward(self, x):
        state, outputs = self.start(x[:, 0]), []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outputs.append(self.cell.head(state[0]))
        return torch.stack(outputs, 1)


class Checkpointed(nn.Module):
    """nn.GRUCell in the model's loop, four steps to a torch.utils.checkpoint chunk, which the backward pass
    recomputes (how a long sequence is trained when its activations do not fit): the head inside the chunk,
    or (`padded`) an ended sequence's state held inside it, where torch.where keeps what it needs."""

    def __init__(self, padded: bool = False):
        super().__init__()
        self.cell, self.head = nn.GRUCell(EMBED, HIDDEN), nn.Linear(HIDDEN, VOCAB)
        self.padded = padded

    def chunk(self, x, h, start, lengths):
        outputs = []
        for t in range(x.shape[1]):
            new = self.cell(x[:, t], h)
            h = torch.where((start + t < lengths)[:, None], new, h) if self.padded else new
            outputs.append(h if self.padded else self.head(h))
        return torch.stack(outputs, 1), h

    def forward(self, x):
        h, outputs, lengths = x.new_zeros(x.shape[0], HIDDEN), [], torch.tensor([T, 7, 4])
        for start in range(0, x.shape[1], 4):
            chunk = torch.utils.checkpoint.checkpoint
            out, h = chunk(self.chunk, x[:, start : start + 4], h, start, lengths, use_reentrant=False)
            outputs.append(out)
        out = torch.cat(outputs, 1)
        return self.head(out) if self.padded else out


class ReentrantHead(LoopModel):
    """A GRUCell loop whose head runs in torch.utils.checkpoint(use_reentrant=True), which autograd.grad
    cannot go through (the cell is not recomputed)."""

    def __init__(self):
        super().__init__(nn.GRUCell)

    def forward(self, x):
        h, outputs = x.new_zeros(x.shape[0], HIDDEN), []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            outputs.append(torch.utils.checkpoint.checkpoint(self.head, h, use_reentrant=True))
        return torch.stack(outputs, 1)


class Scripted(LoopModel):
    """A GRUCell loop whose cell was compiled with torch.jit.script (a ScriptModule takes no hooks)."""

    def __init__(self):
        super().__init__(nn.GRUCell)
        self.cell = torch.jit.script(self.cell)


class ReluBetween(nn.Module):
    """A relu RNN cell with no biases, a relu around its state between steps (zero gradient at 0)."""

    def __init__(self):
        super().__init__()
        self.cell, self.head = nn.RNNCell(EMBED, HIDDEN, nonlinearity="relu", bias=False), nn.Linear(HIDDEN, VOCAB)

    def forward(self, x):
        h, outputs = x.new_zeros(x.shape[0], HIDDEN), []
        for t in range(x.shape[1]):
            h = F.relu(self.cell(x[:, t], h))
            outputs.append(self.head(h))
        return torch.stack(outputs, 1)


class NoneBeside(ElmanCell):
    def forward(self, x_t, h):
        return super().forward(x_t, h), None


class KeywordLoop(nn.Module):
    """A user cell called as cell(x_t, h=h), and an LSTM-like user cell whose state is a list [h, c]."""

    def __init__(self, listed: bool):
        super().__init__()
        self.cell = ListCell() if listed else ElmanCell()
        self.head = nn.Linear(HIDDEN, VOCAB)
        self.listed = listed

    def forward(self, x):
        zeros = x.new_zeros(x.shape[0], HIDDEN)
        state, outputs = [zeros, zeros] if self.listed else zeros, []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state) if self.listed else self.cell(x[:, t], h=state)
            outputs.append(self.head(state[0] if self.listed else state))
        return torch.stack(outputs, 1)


class ListCell(nn.Module):
    hidden_size = HIDDEN

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(EMBED + HIDDEN, 2 * HIDDEN)

    def initial_state(self, batch_size):
        return [torch.zeros(batch_size, HIDDEN, dtype=self.linear.weight.dtype)] * 2

    def forward(self, x_t, state):
        h, c = state
        forget, candidate = self.linear(torch.cat([x_t, h], -1)).chunk(2, -1)
        c = torch.sigmoid(forget) * c + torch.tanh(candidate)
        return [torch.tanh(c), c]


def reference_by_hooks(model: nn.Module, x, loss):
    """log ||dL/dh_t||, t = 0..T, from the model's own graph: each h the cell is given first (h_0, as a
    leaf) and every h it returns retained (the first of a state of several tensors)."""
    states = []

    def first(_, args, kwargs):
        if states:
            return None
        given = args[1] if len(args) > 1 else kwargs["h"]
        states.append((given[0] if isinstance(given, (list, tuple)) else given).detach().clone().requires_grad_())
        if isinstance(given, (list, tuple)):
            return (args[0], type(given)([states[0], *given[1:]])), kwargs
        return ((args[0], states[0]), kwargs) if len(args) > 1 else (args, {**kwargs, "h": states[0]})

    def returned(_, args, out):
        h = out[0] if isinstance(out, (list, tuple)) else out
        h.retain_grad()
        states.append(h)

    handles = [
        model.cell.register_forward_pre_hook(first, with_kwargs=True),
        model.cell.register_forward_hook(returned),
    ]
    try:
        loss(model(*x) if isinstance(x, tuple) else model(x)).backward()
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([s.grad.norm(dim=-1) for s in states]).log().unsqueeze(-1)


def from_own_end(log_norms, lengths):
    """A padded batch's reference with each row's states S_0..S_length moved to the last rows, so that
    lag 0 is its own last state (the test's plain loop, beside the harness's gather); nan above them."""
    aligned, last = torch.full_like(log_norms, math.nan), len(log_norms) - 1
    for row, length in enumerate(lengths.tolist()):
        aligned[last - length :, row] = log_norms[: length + 1, row]
    return aligned


@pytest.mark.parametrize("cell", [nn.GRUCell, ElmanCell])
def test_cell_in_the_model_s_own_loop_equals_autograd(cell):
    torch.manual_seed(0)
    model = LoopModel(cell).double()
    x = torch.randn(B, T, EMBED, dtype=torch.float64)
    loss = lambda logits: logits.square().sum()
    profile = harness.record(model, x, module=model.cell, loss=loss)
    # reference: the model's own graph, every h retained
    states = []
    h = torch.zeros(B, HIDDEN, dtype=torch.float64, requires_grad=True)
    states.append(h)
    outputs = []
    for t in range(T):
        h = model.cell(x[:, t], h)
        h.retain_grad()
        states.append(h)
        outputs.append(model.head(h))
    loss(torch.stack(outputs, 1)).backward()
    expected = torch.stack([s.grad.norm(dim=-1) for s in states]).log().unsqueeze(-1)
    assert_close_log10(profile.log_norms, expected, what="cell in a loop")


def irnn() -> nn.RNNCell:
    """Le et al.'s IRNN: relu, W_hh = I, no biases. On a padded step (x = 0) its output is its state."""
    cell = nn.RNNCell(EMBED, HIDDEN, nonlinearity="relu")
    with torch.no_grad():
        cell.weight_hh.copy_(torch.eye(HIDDEN))
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    return cell


class ExtraArgument(nn.Module):
    """A cell called with a context beside its input and state, which the harness would not replay."""

    hidden_size = HIDDEN

    def __init__(self):
        super().__init__()
        self.cell = ElmanCell()

    def forward(self, x_t, h, context=None):
        return self.cell(x_t, h) + (0 if context is None else context)


@pytest.mark.parametrize(
    "case",
    [
        "greedy decoder",
        "padded batch",
        "padded, the loss masking",
        "padded IRNN",
        "state by keyword",
        "list state",
        "a third argument left None",
    ],
)
def test_a_loop_that_passes_the_state_on_is_recorded_as_autograd_sees_it(case):
    """Loops the step checks must let through: greedy decoding (the argmax's embedding as the next input:
    no gradient from h_t to it), a padded batch whose ended sequences hold their state (torch.where), a
    user cell called as cell(x_t, h=h), and one whose state is a list [h, c]."""
    torch.manual_seed(0)
    x = torch.randn(B, T, EMBED, dtype=torch.float64)
    model, inputs = {
        "greedy decoder": (Decoder(soft=False), x[:, 0]),
        "padded batch": (Padded(nn.GRUCell(EMBED, HIDDEN)), (x, torch.tensor([T, 7, 4]))),
        # the head reads the cell's raw outputs, the held rows' too, which the loss then masks out
        "padded, the loss masking": (
            Padded(nn.GRUCell(EMBED, HIDDEN), reads_discarded=True),
            (x, torch.tensor([T, 7, 4])),
        ),
        # the padded steps' zero inputs leave the IRNN's state as it was: a held row looks passed on by value
        "padded IRNN": (
            Padded(irnn()),
            (x * (torch.arange(T) < torch.tensor([T, 7, 4])[:, None])[..., None], torch.tensor([T, 7, 4])),
        ),
        "state by keyword": (KeywordLoop(listed=False), x),
        "a third argument left None": (NoContextLoop(ExtraArgument, lambda t, h: h), x),
        "list state": (KeywordLoop(listed=True), x),
    }[case]
    model = model.double()
    loss = lambda logits: logits.square().sum()
    if case == "padded, the loss masking":
        active = torch.arange(T) < inputs[1][:, None]  # (B, T)
        loss = lambda logits: (logits.square().sum(-1) * active).sum()
    torch.manual_seed(7)
    profile = harness.record(model, inputs, module=model.cell, loss=loss)
    drawn = torch.rand(())
    torch.manual_seed(7)
    assert drawn == torch.rand(()), "the recording drew from torch's generator"
    expected = reference_by_hooks(model, inputs, loss)
    if case.startswith("padded"):  # lag 0 is each row's own last state
        expected = from_own_end(expected, inputs[1])
        assert profile.lengths.tolist() == inputs[1].tolist()
    assert_close_log10(profile.log_norms[..., :1], expected, what=case)


def test_a_recording_inside_no_grad_is_the_recording_outside_and_inference_mode_is_one_line():
    """An evaluation loop's torch.no_grad() is lifted for the recording (it raised torch's 'cannot register a
    hook' from the recorder); under inference_mode, where no graph can be made, it is refused in one line."""
    torch.manual_seed(0)
    model = LoopModel(nn.GRUCell).double()
    x = torch.randn(B, T, EMBED, dtype=torch.float64)
    loss = lambda logits: logits.square().sum()
    outside = harness.record(model, x, module=model.cell, loss=loss)
    with torch.no_grad():
        inside = harness.record(model, x, module=model.cell, loss=loss)
        assert not torch.is_grad_enabled()
    assert torch.equal(inside.log_norms, outside.log_norms)
    with torch.inference_mode(), pytest.raises(HarnessError) as error:
        harness.record(model, x, module=model.cell, loss=loss)
    assert "called inside torch.inference_mode(), where no graph can be made" in str(error.value)


def test_inputs_made_under_inference_mode_are_recorded_and_inference_parameters_refused_in_one_line():
    """A data pipeline's tensors made under torch.inference_mode() raised torch's 'Inference tensors cannot
    be saved for backward' from the recorder: they are recorded as the model's autograd sees their ordinary
    copies, at any depth of the inputs and targets (a named tuple stays one). A recurrent module with a
    parameter made under it is refused in one line naming it; elsewhere in the model, one the backward pass
    saves is refused in one line (torch's error named), and one it never saves is recorded."""
    torch.manual_seed(0)
    model = Padded(nn.GRUCell(EMBED, HIDDEN)).double()
    ordinary = (torch.randn(B, T, EMBED, dtype=torch.float64), torch.tensor([T, 7, 4]))
    with torch.inference_mode():
        made = tuple(t.clone() for t in ordinary)
    loss = lambda logits: logits.square().sum()
    profile = harness.record(model, made, module=model.cell, loss=loss)
    expected = from_own_end(reference_by_hooks(model, ordinary, loss), ordinary[1])
    assert_close_log10(profile.log_norms, expected, what="inference-mode inputs")
    # nested inputs (x, (lengths,)) and targets in a dict
    targets = {"y": torch.randn(B, T, VOCAB, dtype=torch.float64)}
    with torch.inference_mode():
        made_targets = {"y": targets["y"].clone()}
    by_target = lambda logits, t: (logits - t["y"]).square().sum()
    wrapped = Nested(model)
    expected = harness.record(
        wrapped, (ordinary[0], (ordinary[1],)), module=model.cell, loss=by_target, targets=targets
    )
    got = harness.record(wrapped, (made[0], (made[1],)), module=model.cell, loss=by_target, targets=made_targets)
    torch.testing.assert_close(
        got.log_norms, expected.log_norms, rtol=0, atol=0, equal_nan=True
    )  # padded: nan above a row's start
    with torch.inference_mode():
        x = torch.randn(T, B, EMBED)
    lstm = nn.LSTM(EMBED, HIDDEN)
    assert torch.equal(harness.record(lstm, x).log_norms, harness.record(lstm, x.clone()).log_norms)
    Batch = collections.namedtuple("Batch", "x lengths")  # noqa: PYI024  a data loader's batch
    by_batch = Nested(model)
    by_batch.forward = lambda batch: model(batch.x, batch.lengths)
    got = harness.record(by_batch, (Batch(*made),), module=model.cell, loss=loss)
    torch.testing.assert_close(
        got.log_norms, profile.log_norms, rtol=0, atol=0, equal_nan=True
    )  # padded: nan above a row's start

    # a frozen embedding of pretrained vectors made under inference_mode: never saved, recorded
    with torch.inference_mode():
        vectors = torch.randn(VOCAB, EMBED)
    frozen = CharLM()
    frozen.embed = nn.Embedding.from_pretrained(vectors)
    tokens = torch.randint(VOCAB, (B, T))
    reference = CharLM()
    reference.load_state_dict(frozen.state_dict())
    reference.embed = nn.Embedding.from_pretrained(vectors.clone())
    assert torch.equal(
        harness.record(frozen, tokens, module=frozen.rnn, loss=loss).log_norms,
        harness.record(reference, tokens, module=reference.rnn, loss=loss).log_norms,
    )

    with torch.inference_mode():
        built = LoopModel(nn.GRUCell)
        head = nn.Linear(HIDDEN, VOCAB)
    with_head = LoopModel(nn.GRUCell)
    with_head.head = head
    refused = [
        (lambda: harness.record(built, x, module=built.cell, loss=loss), "module=GRUCell: its parameter weight_ih was"),
        (lambda: harness.record(built.cell, x), "model=GRUCell: its parameter weight_ih was"),
        (lambda: harness.record(with_head, x, module=with_head.cell, loss=loss), "model=LoopModel: a tensor made"),
    ]
    for recorded, start in refused:
        with pytest.raises(HarnessError) as error:
            recorded()
        message = str(error.value)
        assert message.startswith(start) and "torch.inference_mode()" in message, message
        assert "\n" not in message


class Nested(nn.Module):
    """A model called as model(x, (lengths,)), as a data loader may hand it its batch."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x, extra):
        return self.inner(x, extra[0])


@pytest.mark.parametrize("kind", [torch.bool, torch.int64, torch.complex64])
def test_a_state_that_is_not_real_floating_point_is_refused_in_one_line(kind):
    """The harness joins a cell's state into one floating-point tensor: a bool flag, an integer counter or a
    complex part was recorded as a state block of its own, in float (a flag's `seen | x` raised torch's
    NotImplementedError there), or raised torch's errors. Each is refused, in the model's loop and as the
    model itself, whether the initial state holds it or only what the cell returns."""
    torch.manual_seed(0)
    model = FlagLoop()
    model.cell.initial_state = lambda batch_size: (
        torch.zeros(batch_size, HIDDEN),
        torch.zeros(batch_size, 1, dtype=kind),
    )
    late = FlagLoop()  # a real initial state; forward returns the flag in its own dtype
    late.cell.initial_state = lambda batch_size: (torch.zeros(batch_size, HIDDEN), torch.zeros(batch_size, 1))
    late.cell.flag = lambda seen, x_t: (x_t[:, :1] > 0).to(kind)
    loss = lambda out: out.sum()
    for recorded, key in (
        (lambda: harness.record(model, torch.randn(B, T, EMBED), module=model.cell, loss=loss), "module=Flagged"),
        (lambda: harness.record(model.cell, torch.randn(T, B, EMBED)), "Flagged"),
        (lambda: harness.record(late, torch.randn(B, T, EMBED), module=late.cell, loss=loss), "module=Flagged"),
        (lambda: harness.record(late.cell, torch.randn(T, B, EMBED)), "Flagged"),
    ):
        with pytest.raises(HarnessError) as error:
            recorded()
        message = str(error.value)
        assert message.startswith(f"{key}: its state holds {kind} tensors; expected real floating-point"), message
        assert "\n" not in message


class TwoStates(ElmanCell):
    """An Elman cell with only hidden_size (its initial state: one tensor of zeros) that returns (h, h)."""

    def forward(self, x_t, state):
        h = super().forward(x_t, state[0])
        return h, h


def test_a_cell_returning_more_state_than_its_initial_state_is_refused_in_one_line():
    """Such a cell raised an IndexError from the step checks."""
    model = FlagLoop()
    model.cell = TwoStates()
    model.cell.head = nn.Linear(HIDDEN, VOCAB)
    model.start = lambda x_t: (torch.zeros(len(x_t), HIDDEN), torch.zeros(len(x_t), HIDDEN))
    with pytest.raises(HarnessError) as error:
        harness.record(model, torch.randn(B, T, EMBED), module=model.cell, loss=lambda out: out.sum())
    message = str(error.value)
    assert message.startswith("module=TwoStates: returns a state of 2 tensors, its initial state has 1"), message


class ReentrantContext(LoopModel):
    """A GRUCell loop whose head reads a context encoded in torch.utils.checkpoint(use_reentrant=True): off
    the path from the loss to the cell's outputs, so no gradient the recording takes passes through it."""

    def __init__(self):
        super().__init__(nn.GRUCell)
        self.embed, self.encode = nn.Linear(EMBED, EMBED), nn.Linear(EMBED, HIDDEN)

    def forward(self, x):  # the checkpoint's input needs a gradient, or use_reentrant=True makes no node
        context = torch.utils.checkpoint.checkpoint(self.encode, self.embed(x[:, 0]), use_reentrant=True)
        h, outputs = x.new_zeros(x.shape[0], HIDDEN), []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            outputs.append(self.head(h + context))
        return torch.stack(outputs, 1)


def test_another_thread_may_recompute_a_shared_cell_while_it_is_recorded():
    """The recomputation check refused calls of the cell on any thread: another thread training a model that
    shares the cell, with checkpointing, had its backward pass killed by the recording's error."""
    torch.manual_seed(0)
    model, trained = LoopModel(nn.GRUCell).double(), Checkpointed().double()
    trained.cell = model.cell
    failures = []

    def train():
        try:
            trained(torch.randn(B, T, EMBED, dtype=torch.float64)).square().sum().backward()
        except Exception as error:  # noqa: BLE001  what the other thread met, for the assertion
            failures.append(error)

    def loss(logits):  # the other thread trains while this one records
        other = threading.Thread(target=train)
        other.start()
        other.join()
        return logits.square().sum()

    harness.record(model, torch.randn(B, T, EMBED, dtype=torch.float64), module=model.cell, loss=loss)
    assert not failures, failures


def test_a_reentrant_checkpoint_off_the_recorded_path_is_recorded_as_autograd_sees_it():
    torch.manual_seed(0)
    model = ReentrantContext().double()
    x = torch.randn(B, T, EMBED, dtype=torch.float64)
    loss = lambda logits: logits.square().sum()
    profile = harness.record(model, x, module=model.cell, loss=loss)
    assert_close_log10(profile.log_norms, reference_by_hooks(model, x, loss), what="reentrant context")


def test_a_recording_made_from_a_backward_pass_is_the_recording_outside_it():
    """The recomputation check refused a recording made from inside a backward pass (a gradient hook of a
    training loop's), where the harness's own recurrence runs in that backward pass."""
    torch.manual_seed(0)
    model = LoopModel(nn.GRUCell).double()
    x = torch.randn(B, T, EMBED, dtype=torch.float64)
    loss = lambda logits: logits.square().sum()
    outside = harness.record(model, x, module=model.cell, loss=loss)
    inside = []
    w = torch.ones(1, requires_grad=True)
    y = (2 * w).sum()
    y.register_hook(lambda g: inside.append(harness.record(model, x, module=model.cell, loss=loss)))
    y.backward()
    assert torch.equal(inside[0].log_norms, outside.log_norms)


def test_the_dependency_view_of_a_padded_batch_refuses_a_loss_that_reads_a_held_state():
    """sources=N detaches every step but the loss's: an ended row whose loss at step s reads its held state
    (an earlier step's output) got -inf at every lag where the model's gradient is finite. A per-step loss
    that leaves the ended rows out is recorded."""
    torch.manual_seed(0)
    model = Padded(nn.GRUCell(EMBED, HIDDEN)).double()
    lengths = torch.tensor([T, 7, 4])
    inputs = (torch.randn(B, T, EMBED, dtype=torch.float64), lengths)
    every_row = lambda logits, s: logits[:, s].square().sum()
    with pytest.raises(HarnessError) as error:
        harness.record(model, inputs, module=model.cell, loss=every_row, sources=4)
    assert str(error.value).startswith(
        "sources=4: the loss at the last step reads, for batch row 2, a padded sequence held"
    )
    running = lambda logits, s: (logits[:, s].square().sum(-1) * (s < lengths)).sum()
    profile = harness.record(model, inputs, module=model.cell, loss=running, sources=4)
    assert torch.isfinite(profile.log_norms[-1, 0]).all()


def test_a_loop_whose_forward_pass_overflows_is_recorded_as_overflow():
    """nan is never equal to nan: the step checks compare a state with what was returned nan for nan."""
    torch.manual_seed(0)
    model = LoopModel(ElmanCell)
    with torch.no_grad():
        model.cell.recurrent.weight.mul_(200)
        model.cell.recurrent.bias = None
    model.cell.forward = lambda x_t, h: model.cell.input(x_t) + model.cell.recurrent(h)  # linear: it overflows
    profile = harness.record(model, torch.randn(B, 40, EMBED), module=model.cell, loss=lambda out: out.sum())
    assert profile.overflow is not None and (profile.overflow.first_steps < 40).all()


class SquareRelu(nn.Module):
    """h_t = relu(x_t[0] + a h_{t-1}^2): a padding input of -100 zeroes the replayed state (relu's zero
    derivative shields the row's own steps from what follows), then inputs of 10 drive it past float's range."""

    hidden_size = HIDDEN

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))

    def forward(self, x_t, h):
        return torch.relu(x_t[:, :1] + self.a * h * h)


def relu_driven_up():
    """A relu RNNCell whose unit 0 reads input feature 0 (-5 on a sequence's steps, 0 on its padding) and
    grows 30x a step on its own: past float64's range ~210 steps into the padding."""
    cell = nn.RNNCell(EMBED, HIDDEN, nonlinearity="relu").double()
    with torch.no_grad():
        cell.weight_hh.copy_(torch.diag(torch.tensor([30.0] + [0.5] * (HIDDEN - 1))))
        cell.weight_ih[0].zero_()
        cell.weight_ih[0, 0] = 1.0
        cell.bias_ih.zero_()
        cell.bias_ih[0] = 1.0
        cell.bias_hh.zero_()
    steps, lengths = 300, torch.tensor([300, 10, 40])
    x = torch.randn(B, steps, EMBED, dtype=torch.float64)
    x[..., 0] = -5.0
    x[torch.arange(steps)[None, :] >= lengths[:, None]] = 0.0
    return cell, x, lengths


def relu_shielding():
    steps, lengths = 30, torch.tensor([30, 5, 30])
    x = torch.full((B, steps, EMBED), 0.1, dtype=torch.float64) + 0.01 * torch.randn(
        B, steps, EMBED, dtype=torch.float64
    )
    x[1, 5], x[1, 6:] = -100.0, 10.0
    return SquareRelu().double(), x, lengths


@pytest.mark.parametrize("case", [relu_driven_up, relu_shielding])
def test_a_padded_row_whose_replay_overflows_after_its_end_is_recorded_as_the_model_computes_it(case):
    """The harness replays the cell on an ended row's padding, which the model drops: where that replay
    left float's range, the row was reported as overflowed, all nan (or, where a relu shields the row's own
    steps, recorded with nan at the replayed steps), while the model's numbers are finite. They are
    recorded as the model's own autograd gives them, its exact zeros after the row's end too."""
    torch.manual_seed(0)
    cell, x, lengths = case()
    model = Padded(cell).double()
    loss = lambda logits: logits.square().sum()
    profile = harness.record(model, (x, lengths), module=model.cell, loss=loss)
    assert profile.overflow is None and profile.states_finite and "nan" not in profile.flags
    expected = reference_by_hooks(model, (x, lengths), loss)
    assert torch.isfinite(expected[1 : lengths[1] + 1, 1]).all()
    expected = from_own_end(expected, lengths)
    assert_close_log10(profile.log_norms, expected, what="padded rows replayed past float's range")


class LinearRecurrence(ElmanCell):
    """h_t = W x_t + w h_{t-1}: the gradient k steps back from a loss on h_L is w^k times the loss's own."""

    def __init__(self, w: float):
        super().__init__()
        self.double()  # w as it is written, not rounded to float32
        with torch.no_grad():
            self.recurrent.weight.copy_(w * torch.eye(HIDDEN, dtype=torch.float64))

    def forward(self, x_t, h):
        return self.input(x_t) + self.recurrent(h)


# T - 2: the longest a sequence may be and have its end seen (a later call given its held state); a sequence
# one step short (T - 1) is seen where its length is given
@pytest.mark.parametrize(
    "lengths, given",
    [([T, 9, 6, 3], False), ([T - 2, 9, 6, 1], False), ([T, T - 1, 6, 3], True), ([T - 1, T - 1], True)],
    ids=["one full", "all ended early", "one a step short, given", "all a step short, given"],
)
def test_a_padded_batch_counts_each_row_s_lags_from_its_own_end(lengths, given):
    """Sequences of their own lengths, each classified at its own last step: the lags counted from the
    batch's last step, where an ended row's gradient is the model's exact 0, so the batch's median was -inf
    at the short lags, its status 'underflow' and a linear recurrence with w = 0.8 fitted as flat. Each
    row's lags count from its own end: the closed form w^k ||W_head^T 1|| at every lag k the row reaches,
    nan beyond it (no sample there), no flag, and the fitted rate ln w; the profile reaches as far back as
    the longest sequence (its seq_len)."""
    torch.manual_seed(0)
    w, lengths = 0.8, torch.tensor(lengths)
    model = Padded(LinearRecurrence(w)).double()
    x = torch.randn(len(lengths), T, EMBED, dtype=torch.float64)
    at_own_end = lambda logits: logits[torch.arange(len(lengths)), lengths - 1].sum()
    profile = harness.record(
        model, (x, lengths), module=model.cell, loss=at_own_end, lengths=lengths if given else None
    )
    longest = int(lengths.max())
    assert profile.seq_len == profile.columns["seq_len"] == longest
    lag = torch.arange(longest, -1, -1, dtype=torch.float64)[:, None]  # row t of log_norms is lag seq_len - t
    with torch.no_grad():  # dL/dh_L = W_head^T 1 for every row
        expected = lag * math.log(w) + model.head.weight.sum(0).norm().log()
    expected = torch.where(lag <= lengths, expected, math.nan)
    assert_close_log10(profile.log_norms[..., 0], expected, tolerance=1e-9, what="padded, each at its own end")
    assert profile.lengths.tolist() == lengths.tolist() and profile.flags == []
    assert profile.fit()["rate"] == pytest.approx(math.log(w), abs=1e-9)
    frame = profile.to_frame()
    assert np.isfinite(frame.log10_norm).all()  # every lag is some row's: none is empty


class GRUClassifier(nn.Module):
    """nn.GRU over a zero-padded batch, each sequence's output taken at its own length: the module runs
    over the padding (no state is held), so only the lengths given tell where each sequence ends."""

    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.GRU(EMBED, HIDDEN, batch_first=True), nn.Linear(HIDDEN, VOCAB)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def gru_alone(model: GRUClassifier, x_row, length: int):
    """ln ||dL/dh_t||, t = 0..length, of one sequence alone: nn.GRUCell with the GRU's weights unrolled
    over its own steps, every h retained, L = the head's outputs at its last step, summed."""
    cell = nn.GRUCell(EMBED, HIDDEN).double()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        setattr(cell, name, getattr(model.rnn, f"{name}_l0"))
    states = [torch.zeros(1, HIDDEN, dtype=torch.float64, requires_grad=True)]
    for t in range(length):
        states.append(cell(x_row[t : t + 1], states[-1]))
        states[-1].retain_grad()
    model.head(states[-1]).sum().backward()
    return torch.stack([h.grad.norm() for h in states]).log()


def test_a_module_run_over_the_padding_counts_each_sequence_s_lags_from_the_length_given():
    """nn.GRU over a zero-padded batch, each sequence classified at its own length: nothing the model does
    shows where a sequence ends, so its lags count from the batch's last step (the median -inf at the short
    lags, 'underflow'). With lengths=, each row is its sequence recorded alone (nn.GRUCell on the GRU's
    weights, retain_grad) at its own lags, nan beyond them."""
    torch.manual_seed(0)
    lengths = torch.tensor([T, 9, 6, 3])
    model = GRUClassifier().double()
    x = torch.randn(len(lengths), T, EMBED, dtype=torch.float64) * (torch.arange(T) < lengths[:, None])[..., None]
    at_own_end = lambda logits: logits[torch.arange(len(lengths)), lengths - 1].sum()
    counted_from_the_batch = harness.record(model, x, module=model.rnn, loss=at_own_end)
    assert counted_from_the_batch.lengths is None and "underflow" in counted_from_the_batch.flags
    profile = harness.record(model, x, module=model.rnn, loss=at_own_end, lengths=lengths)
    assert profile.lengths.tolist() == lengths.tolist() and profile.flags == []
    for given in (lengths.numpy(), [np.int64(n) for n in lengths.tolist()], lengths.int()):  # as a user may hold them
        again = harness.record(model, x, module=model.rnn, loss=at_own_end, lengths=given).log_norms
        torch.testing.assert_close(again, profile.log_norms, rtol=0, atol=0, equal_nan=True)
    expected = torch.full((T + 1, len(lengths)), math.nan, dtype=torch.float64)
    for row, length in enumerate(lengths.tolist()):
        expected[T - length :, row] = gru_alone(model, x[row], length)
    assert_close_log10(profile.log_norms[..., 0], expected, tolerance=1e-9, what="nn.GRU, lengths given")


@pytest.mark.parametrize(
    "case, expected",
    [
        ("floats", "lengths=Tensor of dtype float32 and shape (4,): expected each sequence's length, a 1-d integer"),
        ("meta", "lengths=Tensor of dtype int64 and shape (4,) on the meta device: expected each sequence's length"),
        ("past int64", "lengths=[9223372036854775808, 9, 6, 3]: expected integers from 0 to seq_len="),
        ("all zero", "lengths: every sequence of the batch has length 0"),
        ("sparse", "lengths=Tensor of dtype int64 and shape (4,): expected each sequence's length"),
        ("unsigned past int64", "lengths=ndarray of dtype uint64 and shape (4,): expected integers from 0 to"),
        ("a float among them", "lengths[2]=6.0: expected an integer (each sequence's length)"),
        ("a bool", "lengths=True: expected each sequence's length"),
        ("too few", "lengths: 3 of them for a batch of 4; expected one per sequence"),
        ("too long", f"lengths[0]={T + 1}: expected an integer from 0 to seq_len={T}"),
        ("negative", "lengths[3]=-1: expected an integer from 0 to seq_len="),
        ("with sources", "lengths with sources=4: the dependency view counts its lags from each loss step"),
        ("the loss reads the padding", f"lengths[1]=9: the loss reads that sequence up to step {T}, after its length"),
        (
            "past the model's hold",
            "lengths[3]=5: the model holds that sequence's state from step 4 on (its length is 3)",
        ),
    ],
)
def test_lengths_that_do_not_fit_are_refused_in_one_line(case, expected):
    torch.manual_seed(0)
    lengths = torch.tensor([T, 9, 6, 3])
    model = GRUClassifier().double()
    x = torch.randn(len(lengths), T, EMBED, dtype=torch.float64)
    at_own_end = lambda logits: logits[torch.arange(len(lengths)), lengths - 1].sum()
    given = {
        "floats": torch.ones(4),
        "meta": torch.ones(4, dtype=torch.long, device="meta"),
        "past int64": [2**63, 9, 6, 3],
        "all zero": [0, 0, 0, 0],
        "sparse": lengths.to_sparse(),
        "unsigned past int64": np.array([2**64 - 1, 9, 6, 3], dtype=np.uint64),
        "a float among them": [T, 9, 6.0, 3],
        "a bool": True,
        "too few": [T, 9, 6],
        "too long": [T + 1, 9, 6, 3],
        "negative": [T, 9, 6, -1],
    }.get(case, lengths)
    loss = lambda logits: logits.square().sum() if case == "the loss reads the padding" else at_own_end(logits)
    record = functools.partial(harness.record, model, x, module=model.rnn, loss=loss, lengths=given)
    if case == "with sources":
        record = functools.partial(record, loss=lambda logits, s: logits[:, s].sum(), sources=4)
    if case == "past the model's hold":
        padded = Padded(nn.GRUCell(EMBED, HIDDEN)).double()
        record = functools.partial(
            harness.record, padded, (x, lengths), module=padded.cell, loss=at_own_end, lengths=[T, 9, 6, 5]
        )
    with pytest.raises(HarnessError) as error:
        record()
    message = str(error.value)
    assert message.startswith(expected) and "\n" not in message, message


class ExpDrive(ElmanCell):
    """tanh(W x + U h) + exp(x_0): ~0 on a sequence's steps (x_0 = -50), inf on its padding (x_0 = 1000)."""

    def forward(self, x_t, h):
        return super().forward(x_t, h) + torch.exp(x_t[:, :1])


def test_a_padded_row_whose_replay_turns_its_own_gradient_nan_is_left_out_as_overflowed():
    """Where the replay's inf reaches the row's own steps through the backward pass (tanh's derivative at
    the nan that follows the inf: 0 times nan), the row cannot be measured: it is left out as overflowed,
    as any sample whose forward pass overflows, never recorded as the model's nan gradient."""
    torch.manual_seed(0)
    model = Padded(ExpDrive()).double()
    lengths = torch.tensor([T, T - 2, T])
    x = torch.randn(B, T, EMBED, dtype=torch.float64)
    x[..., 0] = -50.0
    x[torch.arange(T)[None, :] >= lengths[:, None]] = 0.0
    x[..., 0][torch.arange(T)[None, :] >= lengths[:, None]] = 1000.0
    profile = harness.record(model, (x, lengths), module=model.cell, loss=lambda logits: logits.square().sum())
    assert profile.overflow is not None and profile.overflow.samples.tolist() == [False, True, False]
    assert not profile.states_finite and "nan" not in profile.flags
    assert torch.isnan(profile.log_norms[:, 1]).all() and torch.isfinite(profile.log_norms[:-1, 0]).all()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("soft feedback", "the model computes its input at a step from what the module returned before"),
        ("centred feedback", "the model computes its input at a step from what the module returned before"),
        ("reset at step 5", "the state passed to step 5 is neither what step 4 returned nor"),
        ("state noise", "the state passed to step 1 is neither what step 0 returned nor"),
        ("held, then run again", "the state of batch row 0, held from step 5 (as a padded sequence that has ended"),
        ("truncated every 4", "the model detaches the state between steps 3 and 4 (truncated backpropagation"),
        ("c truncated", "the model detaches the state between steps 3 and 4"),
        ("reads what it drops", "the loss reads what the cell returned at step 5 for batch row 2, whose state"),
        ("truncated, kept a leaf", "the gradient of the state passed to step 4 does not come back unchanged"),
        ("gradient halved", "the gradient of the state passed to step 1 does not come back unchanged"),
        ("gradient clipped", "the gradient of the state passed to step 1 does not come back unchanged"),
        ("gradient scaled by 0.999", "the gradient of the state passed to step 1 does not come back unchanged"),
        ("a third argument", "module=ExtraArgument: called with context besides its input and state"),
        ("returns None beside h", "returns tuple of Tensor, NoneType; expected its state"),
        ("returns nothing", "module=Empty: returns tuple; expected its state"),
        ("state zero through a relu", "the gradient of the state passed to step 1 does not come back unchanged"),
        ("batch shrinks", "step 4's input is (2, 5), step 0's (3, 5) (a batch that sheds its ended sequences)"),
        ("checkpointed", "module=GRUCell: called again in the backward pass (activation checkpointing"),
        ("checkpointed, padded", "module=GRUCell: called again in the backward pass (activation checkpointing"),
        ("checkpointed head, reentrant", "model=ReentrantHead: the loss passes through torch.utils.checkpoint with"),
        ("scripted cell", "module=RecursiveScriptModule: a TorchScript module, which takes no hooks"),
    ],
)
def test_a_model_that_does_more_than_pass_the_state_on_is_refused(case, expected):
    """Each of these recorded, before this was checked, the plain recurrence of the captured inputs: numbers
    for a model other than the one given (the soft decoder's log-norms were off the autograd reference)."""
    torch.manual_seed(0)
    x = torch.randn(B, T, EMBED, dtype=torch.float64)
    held = {}  # "held, then run again": row 0's state held at step 5 only (skipping a step), as padding would
    model, inputs = {
        "soft feedback": (Decoder(soft=True), x[:, 0]),
        "centred feedback": (Decoder(soft="centred"), x[:, 0]),
        "reset at step 5": (LoopModel(nn.GRUCell, lambda t, h: h * 0 if t == 5 else h), x),
        "state noise": (LoopModel(nn.GRUCell, lambda t, h: h + 1e-3 * torch.randn_like(h)), x),
        "held, then run again": (LoopModel(nn.GRUCell, lambda t, h: held.setdefault(t, h) if t != 5 else held[4]), x),
        "truncated every 4": (LoopModel(nn.GRUCell, lambda t, h: h.detach() if t % 4 == 0 else h), x),
        "c truncated": (LSTMLoop(lambda t, s: (s[0], s[1].detach()) if t % 4 == 0 else s), x),
        "reads what it drops": (Padded(nn.GRUCell(EMBED, HIDDEN), reads_discarded=True), (x, torch.tensor([T, 7, 4]))),
        "truncated, kept a leaf": (
            LoopModel(nn.GRUCell, lambda t, h: h.detach().requires_grad_() if t % 4 == 0 else h),
            x,
        ),
        "gradient halved": (LoopModel(nn.GRUCell, lambda t, h: h.detach() + 0.5 * (h - h.detach())), x),
        "gradient clipped": (
            LoopModel(nn.GRUCell, lambda t, h: h.register_hook(lambda g: g.clamp(-1e-3, 1e-3)) and h),
            x,
        ),
        "batch shrinks": (LoopModel(nn.GRUCell, lambda t, h: h[:2] if t == 4 else h), x),
        "gradient scaled by 0.999": (LoopModel(nn.GRUCell, lambda t, h: h.detach() + 0.999 * (h - h.detach())), x),
        "a third argument": (ContextLoop(ExtraArgument, lambda t, h: h), x),
        "returns None beside h": (LoopModel(NoneBeside, lambda t, h: h[0]), x),
        "returns nothing": (LoopModel(Empty, lambda t, h: h), x),
        # a zero state through a relu between steps is "kept" with no gradient, as a held row is; it runs
        # on at step 6, so it was never held: refused for its gradient, not as a padded row run again
        "state zero through a relu": (ReluBetween(), x * (torch.arange(T) >= 5)[:, None]),
        "checkpointed": (Checkpointed(), x),
        "checkpointed, padded": (Checkpointed(padded=True), x),
        "checkpointed head, reentrant": (ReentrantHead(), x),
        "scripted cell": (Scripted(), x),
    }[case]
    model = model.double()
    with pytest.raises(HarnessError) as error:
        harness.record(model, inputs, module=model.cell, loss=lambda logits: logits.square().sum())
    message = str(error.value)
    assert message.startswith(("module=", "model=")) and expected in message and "\n" not in message, message


# ---------------------------------------------------------------------------------------------------
# bad input: one line naming the argument, before any compute
# ---------------------------------------------------------------------------------------------------


class TwoRecurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = nn.LSTM(3, 4), nn.GRU(4, 4)

    def forward(self, x):
        return self.decoder(self.encoder(x)[0])[0]


class ReadsC(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return out + c[-1]


class Stateless(nn.Module):
    hidden_size = 4

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, x, h):
        return torch.tanh(self.linear(x))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("two modules", "holds 2 recurrent modules: encoder (LSTM), decoder (GRU)"),
        ("linear module", "module=Linear: not recurrent"),
        ("transformer", "module=Transformer: not recurrent"),
        ("reads c", "the loss reads what the module returns besides"),
        ("nan inputs", "inputs: 1 of 30 values are nan or inf"),
        ("empty batch", "inputs: shape (5, 0, 3) holds no values"),
        ("meta", "on the meta device"),
        ("stateless cell", "step does not read its state"),
        ("detached loss", "loss: its value does not depend on the model's outputs"),
        ("segment 1.5", "segment=1.5: expected an integer >= 1"),
        ("segment 0", "segment=0: expected an integer >= 1"),
        ("segment -5", "segment=-5: expected an integer >= 1"),
        ("memory nan", "memory_fraction=nan: expected a number in (0, 1]"),
        ("memory -1", "memory_fraction=-1: expected a number in (0, 1]"),
        ("sources True", "sources=True: expected an integer"),
        ("one-argument loss with sources", "loss: expected a callable taking (output, s)"),
    ],
)
def test_bad_input_is_one_line(case, expected):
    x = torch.randn(5, 2, 3)
    lstm = nn.LSTM(3, 4)
    calls = {
        "two modules": lambda: harness.record(TwoRecurrent(), x),
        "linear module": lambda: harness.record(TwoRecurrent(), x, module=nn.Linear(3, 4)),
        "transformer": lambda: harness.record(
            nn.Transformer(8, 2, batch_first=True), x, module=nn.Transformer(8, 2, batch_first=True)
        ),
        "reads c": lambda: harness.record(ReadsC(), x, loss=lambda out: out.sum()),
        "nan inputs": lambda: harness.record(lstm, torch.where(torch.arange(30).view(5, 2, 3) == 7, math.nan, x)),
        "empty batch": lambda: harness.record(lstm, torch.randn(5, 0, 3)),
        "meta": lambda: harness.record(nn.LSTM(3, 4, device="meta"), torch.randn(5, 2, 3, device="meta")),
        "stateless cell": lambda: harness.record(Stateless(), x),
        "detached loss": lambda: harness.record(lstm, x, loss=lambda out: out.detach().sum()),
        "segment 1.5": lambda: harness.record(lstm, x, segment=1.5),
        "segment 0": lambda: harness.record(lstm, x, segment=0),
        "segment -5": lambda: harness.record(lstm, x, segment=-5),
        "memory nan": lambda: harness.record(lstm, x, memory_fraction=math.nan),
        "memory -1": lambda: harness.record(lstm, x, memory_fraction=-1),
        "sources True": lambda: harness.record(lstm, x, sources=True),
        "one-argument loss with sources": lambda: harness.record(lstm, x, loss=lambda out: out.sum(), sources=2),
    }
    with pytest.raises(HarnessError) as error:
        calls[case]()
    message = str(error.value)
    assert expected in message and "\n" not in message, message


@pytest.mark.parametrize(
    "kind, call, expected",
    [
        (nn.LSTM, lambda p: p.fit(layer=5), "layer=5: expected an integer from -1 to 0 (1 layers)"),
        (nn.GRU, lambda p: p.fit(state="c"), "state='c': expected one of h"),
        (nn.GRU, lambda p: p.fit(horizon_decades=0), "horizon_decades=0: expected a positive number"),
    ],
)
def test_bad_fit_arguments_are_one_line(kind, call, expected):
    profile = harness.record(kind(3, 4), torch.randn(6, 2, 3))
    with pytest.raises(HarnessError) as error:
        call(profile)
    assert expected in str(error.value), str(error.value)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_language_model_total_adjoint_equals_retain_grad(kind):
    """adjoint="total": every layer's h (and c) as a node of the graph, exactly what retain_grad gives."""
    model = language_model(kind)
    tokens, targets = tokens_and_targets()
    profile = harness.record(model, tokens, module=model.rnn, loss=every_step, targets=targets, adjoint="total")
    assert profile.columns["adjoint"] == "total"
    expected = brute_force(model, tokens, lambda logits: every_step(logits, targets))
    assert_close_log10(profile.log_norms, expected, what=f"{kind.__name__} total adjoint")


def untrained_char_lm_views():
    """examples/char_lm.py's model at initialisation, on the example's first batch cut to 8 sequences:
    (every-step adjoint fit, dependency-view fit) of the top layer's h."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import char_lm

    text = char_lm.corpus()
    alphabet = sorted(set(text))
    data = torch.tensor([alphabet.index(c) for c in text])
    torch.manual_seed(0)
    model = char_lm.CharLM(len(alphabet)).eval()
    tokens, targets = next(char_lm.batches(data, 32, 64, torch.Generator().manual_seed(1)))
    tokens, targets = tokens[:8], targets[:8]
    adjoint = harness.record(model, tokens, module=model.lstm, loss=char_lm.cross_entropy, targets=targets)
    dependency = harness.record(
        model, tokens, module=model.lstm, loss=char_lm.cross_entropy_at, targets=targets, sources=16
    )
    return adjoint.fit(), dependency.fit()


def test_an_all_steps_adjoint_reads_flat_where_the_dependency_view_decays():
    """The numbers docs/python.md quotes ("which view answers which question")."""
    adjoint, dependency = untrained_char_lm_views()
    assert adjoint["regime"] == "stable" and abs(adjoint["rate"]) < 0.005
    assert round(dependency["rate"], 2) == -0.45 and dependency["regime"] == "vanishing"
    assert dependency["horizon"] == 11 and not dependency["horizon_censored"]
