"""harness.record / harness.from_torch / GradientProfile, each against an independent computation.

The reference never uses harness code: it runs the torch module itself one step at a time
(module(x[t:t+1], hx), torch's fused kernel), keeps every step's (num_layers, batch, hidden) h (and c)
with retain_grad, and reads dL/dh_t, dL/dc_t for every layer and every t (t = 0: a zero leaf) from one
loss.backward(). A state the loss never reaches (the lstm's c_T, layer 0's h_T for a loss on the top
layer) has no gradient: a zero, ln 0 = -inf, exactly what harness records.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn

import harness

T, B, INPUT, HIDDEN, LAYERS = 15, 4, 3, 5, 2
TOL = 1e-6  # max |difference| of log10 norms
F64 = torch.float64
TORCH_MODULES = {"lstm": nn.LSTM, "gru": nn.GRU}


# ---------------------------------------------------------------------------------------------------
# The independent reference
# ---------------------------------------------------------------------------------------------------


def per_sample_log_norms(grads: list[torch.Tensor | None], like: torch.Tensor) -> torch.Tensor:
    """ln ||g|| per sample, (batch,) per block; None (no gradient reached it) is a zero gradient."""
    return torch.stack(
        [
            torch.zeros(like.shape[0], dtype=F64) if g is None else torch.linalg.vector_norm(g.double(), dim=-1)
            for g in grads
        ],
        dim=-1,
    ).log()


def unroll_module(module: nn.RNNBase, x: torch.Tensor):
    """Run `module` one step at a time from zero leaves; return ([h_0..h_T], [c_0..c_T] or None, the
    top layer's output sequence shaped like the module's own output). Every h_t, c_t retains its grad."""
    lstm = isinstance(module, nn.LSTM)
    steps = x.shape[1] if module.batch_first else x.shape[0]
    batch = x.shape[0] if module.batch_first else x.shape[1]
    zeros = dict(size=(module.num_layers, batch, module.hidden_size), dtype=x.dtype)
    h = torch.zeros(**zeros, requires_grad=True)
    c = torch.zeros(**zeros, requires_grad=True) if lstm else None
    hs, cs = [h], [c] if lstm else None
    for t in range(steps):
        x_t = x[:, t : t + 1] if module.batch_first else x[t : t + 1]
        _, hx = module(x_t, (h, c) if lstm else h)
        h, c = hx if lstm else (hx, None)
        h.retain_grad()
        hs.append(h)
        if lstm:
            c.retain_grad()
            cs.append(c)
    # The top layer's h_t *is* the module's output at t (same values); reading it from h_n makes
    # h_n.grad the total adjoint (through the outputs and the recurrence).
    outputs = torch.stack([h[-1] for h in hs[1:]])  # (T, B, H)
    return hs, cs, outputs.transpose(0, 1) if module.batch_first else outputs


def reference_module(module: nn.RNNBase, x: torch.Tensor, loss) -> torch.Tensor:
    """ln ||dL/d block_t|| per sample, (T+1, batch, blocks), blocks layer 0's (h[, c]), layer 1's, ..."""
    hs, cs, outputs = unroll_module(module, x)
    loss(outputs).backward()
    rows = []
    for t in range(len(hs)):
        grads = []
        for layer in range(module.num_layers):
            grads.append(None if hs[t].grad is None else hs[t].grad[layer])
            if cs is not None:
                grads.append(None if cs[t].grad is None else cs[t].grad[layer])
        rows.append(per_sample_log_norms(grads, hs[t][0]))
    return torch.stack(rows)


def reference_cell(cell: nn.Module, x: torch.Tensor, loss, two_states: bool) -> torch.Tensor:
    """The same for a user cell (one layer): forward(x_t, state) -> state, x time major.

    The recorded state coordinates are clones of what the cell returns, handed on to the next step: their
    grads are partial derivatives w.r.t. the state (h_t, c_t), as nn.LSTM's separate h_n, c_n outputs give.
    (torch.nn.LSTMCell computes its h from the very c tensor it returns, so that c's own grad would also
    hold the path c_t -> h_t.)"""
    zeros = dict(size=(x.shape[1], cell.hidden_size), dtype=x.dtype)
    state = tuple(torch.zeros(**zeros, requires_grad=True) for _ in range(2 if two_states else 1))
    states = [state]
    for x_t in x:
        new = cell(x_t, state if two_states else state[0])
        state = tuple(s.clone() for s in (new if two_states else (new,)))
        for s in state:
            s.retain_grad()
        states.append(state)
    loss(torch.stack([s[0] for s in states[1:]])).backward()
    return torch.stack([per_sample_log_norms([s.grad for s in state], state[0]) for state in states])


def probe(seed: int = 0, batch_first: bool = False):
    """The documented default loss, written out: r . h_T summed over the batch, r a seeded unit vector."""
    r = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(seed), dtype=F64)
    r = r / r.norm()
    return lambda out: ((out[:, -1] if batch_first else out[-1]) @ r.to(out)).sum()


def final_loss(batch_first: bool):
    """A custom loss that reads only the last step."""
    w = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(11), dtype=F64)
    return lambda out: ((out[:, -1] if batch_first else out[-1]) * w.to(out)).sum()


def sequence_loss(batch_first: bool, steps: int = T):
    """A custom loss that reads every step: a weighted sum over steps plus a square."""
    w = torch.randn(steps, 1, HIDDEN, generator=torch.Generator().manual_seed(12), dtype=F64)
    w = w.transpose(0, 1) if batch_first else w

    def loss(out):
        return (out * w.to(out)).sum() + 0.5 * (out**2).mean()

    return loss


def assert_log10_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = TOL, what: str = ""):
    """Same shape; -inf / +inf / nan in the same places; finite log10 values within tol."""
    assert actual.dtype == F64, f"{what}: log_norms dtype {actual.dtype}, expected float64"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    a, e = actual / math.log(10), expected.double() / math.log(10)
    for kind, test in (("-inf", torch.isneginf), ("+inf", torch.isposinf), ("nan", torch.isnan)):
        where = (test(a) != test(e)).nonzero().tolist()
        assert not where, f"{what}: {kind} differs at (t, sample, block) {where[:5]}"
    finite = torch.isfinite(e)
    worst = (a[finite] - e[finite]).abs().max().item() if finite.any() else 0.0
    assert worst < tol, f"{what}: max |log10 difference| {worst:.3g} >= {tol}"


def seeded_module(kind, batch_first=False, seed=0, **kwargs) -> nn.RNNBase:
    torch.manual_seed(seed)
    return kind(INPUT, HIDDEN, num_layers=LAYERS, batch_first=batch_first, **kwargs).double()


def seeded_inputs(batch_first=False, seed=1, dtype=F64, steps=T) -> torch.Tensor:
    x = torch.randn(steps, B, INPUT, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x.transpose(0, 1).contiguous() if batch_first else x


BATCH_FIRST_PROBE_BUG = (
    "BUG harness/lab/api.py probe_loss: the default probe reads outputs[-1], but record() hands the loss "
    "batch-first outputs (B, T, H) for a batch_first module, so the probe reads the last *sample* at every "
    "step instead of the last *step* of every sample"
)

# (loss, recorder asked for, recorder the profile must report)
LOSS_CASES = [
    ("probe", "exact", "exact"),
    ("probe", "auto", "exact"),
    ("final", "exact", "exact"),
    ("final", "auto", "exact"),
    ("sequence", "autograd", "autograd"),
    ("sequence", "auto", "autograd"),
]


def loss_for(name: str, batch_first: bool):
    """(the loss given to harness.record, None for its default; the same loss for the reference)."""
    if name == "probe":
        return None, probe(0, batch_first)
    made = final_loss(batch_first) if name == "final" else sequence_loss(batch_first)
    return made, made


def check_against_reference(module, x, loss_name, recorder, used):
    given, reference_loss = loss_for(loss_name, module.batch_first)
    expected = reference_module(module, x, reference_loss)
    message = BATCH_FIRST_PROBE_BUG if loss_name == "probe" and module.batch_first else ""
    try:
        profile = harness.record(module, x, loss=given, recorder=recorder)
    except harness.HarnessError as error:
        pytest.fail(f"record refused a case it must record: {error}. {message}")
    assert profile.columns["recorder"] == used, (
        f"recorder {profile.columns['recorder']!r}, expected {used!r}. {message}"
    )
    assert_log10_close(profile.log_norms, expected, what=f"{type(module).__name__} {loss_name}/{recorder}. {message}")
    assert profile.log_norms.shape == (T + 1, B, LAYERS * (2 if isinstance(module, nn.LSTM) else 1))
    return profile


# ---------------------------------------------------------------------------------------------------
# 1-2. torch.nn.LSTM / GRU / RNN(relu) against the step-by-step reference
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_name,recorder,used", LOSS_CASES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", sorted(TORCH_MODULES))
def test_record_torch_module_equals_stepwise_reference(cell, batch_first, loss_name, recorder, used):
    module = seeded_module(TORCH_MODULES[cell], batch_first)
    profile = check_against_reference(module, seeded_inputs(batch_first), loss_name, recorder, used)
    assert profile.state_names == (("h", "c") if cell == "lstm" else ("h",))
    if loss_name != "sequence":  # a final-step loss: nothing reaches the states it does not read at T
        assert torch.isneginf(profile.log_norms[-1, :, : -len(profile.state_names)]).all()


@pytest.mark.parametrize("loss_name,recorder,used", LOSS_CASES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_record_relu_rnn_equals_stepwise_reference(bias, batch_first, loss_name, recorder, used):
    module = seeded_module(nn.RNN, batch_first, nonlinearity="relu", bias=bias)
    profile = check_against_reference(module, seeded_inputs(batch_first), loss_name, recorder, used)
    assert profile.columns["activation"] == "relu"


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", sorted(TORCH_MODULES))
def test_exact_recorder_refuses_a_sequence_loss(cell, batch_first):
    module = seeded_module(TORCH_MODULES[cell], batch_first)
    with pytest.raises(harness.ConfigError) as error:
        harness.record(module, seeded_inputs(batch_first), loss=sequence_loss(batch_first), recorder="exact")
    assert "autograd" in str(error.value) and "\n" not in str(error.value)


def test_dropout_module_in_eval_mode_equals_reference():
    module = seeded_module(nn.LSTM, dropout=0.5).eval()
    check_against_reference(module, seeded_inputs(), "sequence", "auto", "autograd")


# ---------------------------------------------------------------------------------------------------
# 3. float32 modules are recorded in float64
# ---------------------------------------------------------------------------------------------------


def vanishing_float32(cell: str) -> nn.RNNBase:
    """A float32 module whose gradient at t = 0 underflows float32 after T steps: small recurrent
    weights, and the lstm's forget gate / the gru's update gate shut (they carry the state unscaled)."""
    module = seeded_module(TORCH_MODULES.get(cell, nn.RNN)).float()
    with torch.no_grad():
        for layer in range(LAYERS):
            getattr(module, f"weight_hh_l{layer}").mul_(1e-4)
            bias = getattr(module, f"bias_ih_l{layer}")
            if cell == "lstm":
                bias[HIDDEN : 2 * HIDDEN] = -40.0  # forget gate (i, f, g, o)
            if cell == "gru":
                bias[HIDDEN : 2 * HIDDEN] = -40.0  # update gate (r, z, n)
    return module


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float32_module_with_sequence_loss_is_recorded_in_float64(cell):
    """recorder='auto' with a loss reading more than the last step picks autograd, which records what torch
    computes in float64 (a float64 copy): equal to the float64 reference, finite where float32 underflows."""
    module = vanishing_float32(cell)
    x = seeded_inputs(dtype=torch.float32)
    w = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(5), dtype=F64)

    def loss(out):  # reads the last two steps only: far from them the gradient vanishes
        return ((out[-1] + out[-2]) * w.to(out)).sum()

    profile = harness.record(module, x, loss=loss, recorder="auto")
    assert profile.columns["recorder"] == "autograd" and profile.columns["dtype"] == "float32"
    expected = reference_module(copy.deepcopy(module).double(), x.double(), loss)
    assert_log10_close(profile.log_norms, expected, what=f"float32 {cell}")
    # The test can tell: in float32 the same computation underflows to 0 at t = 0 ...
    in_float32 = reference_module(module, x, loss)
    assert torch.isneginf(in_float32[0]).all(), "test setup: float32 should underflow at t = 0"
    # ... while the float64 numbers there are far below float32's range and still finite.
    assert torch.isfinite(profile.log_norms[0]).all()
    assert profile.log_norms[0].max() < math.log(torch.finfo(torch.float32).tiny)
    assert module.weight_hh_l0.dtype == torch.float32  # the user's module is left as it was


# ---------------------------------------------------------------------------------------------------
# 4. the dependency view (sources=N) against a brute-force loop over loss steps
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", sorted(TORCH_MODULES))
def test_dependency_view_equals_brute_force(cell, batch_first):
    sources, seed = 6, 3
    module = seeded_module(TORCH_MODULES[cell], batch_first)
    x = seeded_inputs(batch_first)
    profile = harness.record(module, x, sources=sources, seed=seed)

    steps = (torch.randperm(T, generator=torch.Generator().manual_seed(seed))[:sources] + 1).sort().values.tolist()
    counts = torch.tensor([sum(s >= T - row for s in steps) for row in range(T + 1)], dtype=F64)
    assert torch.equal(profile.sources.double(), counts), f"sources {profile.sources.tolist()} vs {counts.tolist()}"

    blocks = LAYERS * (2 if cell == "lstm" else 1)
    total = torch.zeros(T + 1, B, blocks, dtype=F64)  # row T - k: lag k
    for s in steps:  # L_s: the probe on the output at s alone = the probe at the end of the prefix x[:s]
        prefix = x[:, :s] if batch_first else x[:s]
        per_t = reference_module(module, prefix, probe(seed, batch_first))  # (s+1, B, blocks), row t
        for t in range(s + 1):
            total[T - (s - t)] += per_t[t]
    expected = total / counts.view(-1, 1, 1)  # 0 / 0 = nan where no source reaches the lag
    message = BATCH_FIRST_PROBE_BUG if batch_first else ""
    assert_log10_close(profile.log_norms, expected, what=f"dependency view {cell}. {message}")
    assert torch.isnan(profile.log_norms[counts == 0]).all()
    assert profile.view == "dependency" and profile.columns["recorder"] == "exact"
    frame = profile.to_frame()
    assert frame.groupby("t").sources.first().tolist() == counts.tolist()


# ---------------------------------------------------------------------------------------------------
# 5. user cells
# ---------------------------------------------------------------------------------------------------


class TanhCell(nn.Module):
    """A minimal user cell: h_t = tanh(W x_t + U h_{t-1} + b)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x_t, h):
        return torch.tanh(self.input(x_t) + self.recurrent(h))


@pytest.mark.parametrize(
    "loss_name,recorder,used",
    [
        ("probe", "exact", "exact"),
        ("probe", "auto", "exact"),
        ("sequence", "autograd", "autograd"),
        ("sequence", "auto", "autograd"),
    ],
)
@pytest.mark.parametrize("kind", ["tanh_cell", "lstm_cell"])
def test_user_cell_equals_unrolled_loop(kind, loss_name, recorder, used):
    torch.manual_seed(0)
    cell = (TanhCell(INPUT, HIDDEN) if kind == "tanh_cell" else nn.LSTMCell(INPUT, HIDDEN)).double()
    x = seeded_inputs()
    given, reference_loss = loss_for(loss_name, False)
    expected = reference_cell(cell, x, reference_loss, two_states=kind == "lstm_cell")
    profile = harness.record(cell, x, loss=given, recorder=recorder)
    assert profile.columns["recorder"] == used
    assert_log10_close(profile.log_norms, expected, what=f"{kind} {loss_name}/{recorder}")
    if kind == "lstm_cell" and loss_name == "probe":
        assert torch.isneginf(profile.log_norms[-1, :, 1]).all()  # c_T: the loss reads h_T only


class ZeroStateCell(TanhCell):
    """A user cell that makes its own h_0 as most code does: float32 zeros, whatever the cell was cast to."""

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, self.hidden_size)


def test_a_float32_user_cells_own_zero_state_is_recorded_in_float64():
    """A loss reading every step records a float64 copy of the cell (autograd): the cell's float32 h_0 is
    cast with it (it ended in a dtype mismatch from inside the cell), equal to the float64 reference."""
    torch.manual_seed(0)
    cell = ZeroStateCell(INPUT, HIDDEN)
    x = seeded_inputs(dtype=torch.float32)
    given, reference_loss = loss_for("sequence", False)
    profile = harness.record(cell, x, loss=given)
    assert profile.columns["recorder"] == "autograd"
    expected = reference_cell(copy.deepcopy(cell).double(), x.double(), reference_loss, two_states=False)
    assert_log10_close(profile.log_norms, expected, what="float32 cell with its own zero state")


class HugeStateCell(nn.Module):
    """A cell whose state is 10^10 wide, its initial_state a view of one zero (nothing allocated)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def initial_state(self, batch_size):
        return torch.zeros(1, 1).expand(batch_size, 10**10)

    def forward(self, x_t, h):
        return h * self.weight


def test_a_recording_that_cannot_fit_is_refused_before_anything_is_computed():
    """What every recording holds (the outputs at every step, the state) is checked against the memory
    available first: it ended in torch's allocator error (a traceback) at the first step."""
    with pytest.raises(
        harness.ConfigError, match=r"inputs of shape \(10, 2, 3\) \(time-major\): the recording holds at least 880.0 GB"
    ):
        harness.record(HugeStateCell(), torch.randn(10, 2, 3))


# ---------------------------------------------------------------------------------------------------
# 6. refusals: one line each, all HarnessError
# ---------------------------------------------------------------------------------------------------


def float32_lstm():
    torch.manual_seed(0)
    return nn.LSTM(INPUT, HIDDEN)


REFUSALS = {
    "bidirectional": lambda: (nn.LSTM(INPUT, HIDDEN, bidirectional=True).double(), seeded_inputs()),
    "proj_size": lambda: (nn.LSTM(INPUT, HIDDEN, proj_size=2).double(), seeded_inputs()),
    "dropout_training": lambda: (nn.LSTM(INPUT, HIDDEN, num_layers=2, dropout=0.5).double().train(), seeded_inputs()),
    "input_features": lambda: (seeded_module(nn.LSTM), torch.randn(T, B, INPUT + 1, dtype=F64)),
    "input_features_batch_first": lambda: (
        seeded_module(nn.GRU, batch_first=True),
        torch.randn(B, T, INPUT + 1, dtype=F64),
    ),
    "input_features_cell": lambda: (nn.LSTMCell(INPUT, HIDDEN).double(), torch.randn(T, B, INPUT + 1, dtype=F64)),
    "inputs_2d": lambda: (seeded_module(nn.LSTM), torch.randn(T, INPUT, dtype=F64)),
    "dtype_mismatch": lambda: (float32_lstm(), seeded_inputs()),
    "dtype_mismatch_float64_module": lambda: (seeded_module(nn.GRU), seeded_inputs(dtype=torch.float32)),
}


# and each nn.RNN/LSTM/GRU named as its own module (module=model: run by the harness's substitution, so
# checked before it runs); a cell named so is a one-step model called on (batch, features)
NAMED = [pytest.param(case, True, id=f"{case}-named") for case in sorted(REFUSALS) if not case.endswith("_cell")]


@pytest.mark.parametrize("case, named", [(case, False) for case in sorted(REFUSALS)] + NAMED)
def test_record_refuses_in_one_line(case, named):
    model, x = REFUSALS[case]()
    with pytest.raises(harness.HarnessError) as error:
        harness.record(model, x, module=model if named else None)
    message = str(error.value)
    assert message and "\n" not in message, repr(message)
    assert isinstance(error.value, harness.ModelError)


@pytest.mark.parametrize("given", [{}, {"module": nn.GRUCell(INPUT, HIDDEN)}], ids=["alone", "with module="])
@pytest.mark.parametrize("model", [lambda x: x, "lstm", None], ids=["function", "str", "None"])
def test_a_model_that_is_not_a_module_is_refused_in_one_line(model, given):
    with pytest.raises(harness.ModelError) as error:
        harness.record(model, seeded_inputs(), **given)
    message = str(error.value)
    assert message.startswith(f"model={type(model).__name__}: expected a torch.nn.Module") and "\n" not in message


def test_a_loss_through_a_reentrant_checkpoint_is_refused_in_one_line():
    """torch.autograd.grad, which the recorders use, cannot pass a use_reentrant=True checkpoint: torch's
    RuntimeError came through as it was."""
    head = nn.Linear(HIDDEN, 1).double()
    loss = lambda out: torch.utils.checkpoint.checkpoint(head, out, use_reentrant=True).sum()
    with pytest.raises(harness.ModelError) as error:
        harness.record(seeded_module(nn.GRU), seeded_inputs(), loss=loss)
    assert str(error.value).startswith("model=GRU: the loss passes through torch.utils.checkpoint with use_reentrant")


@pytest.mark.parametrize(
    "kwargs",
    [{"recorder": "fast"}, {"sources": 0}, {"sources": T + 1}, {"seed": "a"}, {"seed": 1.5}, {"seed": 2**70}],
)
def test_record_refuses_bad_settings(kwargs):
    with pytest.raises(harness.ConfigError) as error:
        harness.record(seeded_module(nn.GRU), seeded_inputs(), **kwargs)
    assert "\n" not in str(error.value)


def test_dropout_refusal_lifts_in_eval_mode():
    module = nn.LSTM(INPUT, HIDDEN, num_layers=2, dropout=0.5).double()
    with pytest.raises(harness.ModelError, match="eval"):
        harness.record(module, seeded_inputs())
    profile = harness.record(module.eval(), seeded_inputs())
    assert torch.isfinite(profile.log_norms[:-1]).all()


# ---------------------------------------------------------------------------------------------------
# 7. from_torch shares the parameters and computes the module's output
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(TORCH_MODULES))
def test_from_torch_shares_parameters_and_output(cell):
    module = seeded_module(TORCH_MODULES[cell])
    net = harness.from_torch(module)
    assert net.weight_hh_l0 is module.weight_hh_l0
    for name, parameter in module.named_parameters():
        assert getattr(net, name) is parameter, name
    assert {id(p) for p in net.parameters()} == {id(p) for p in module.parameters()}
    x = seeded_inputs()
    states = net(x, net.initial_state(B))
    outputs = torch.stack([net.top_hidden(s) for s in states[1:]])
    expected, _ = module(x)
    torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-12)
    with torch.no_grad():  # training one trains the other
        module.weight_hh_l0.add_(1.0)
    assert torch.equal(net.weight_hh_l0, module.weight_hh_l0)


# ---------------------------------------------------------------------------------------------------
# 8. GradientProfile: fit, table, run folder, figure
# ---------------------------------------------------------------------------------------------------


def linear_profile(w: float = 0.9, inputs: torch.Tensor | None = None, **record: Any) -> harness.GradientProfile:
    """A 1-unit linear rnn h_t = w h_{t-1} + x_t: ||dL/dh_{T-k}|| = |w|^k |r| with |r| = 1."""
    net = harness.RecurrentNet("rnn", "identity", 1, 1, 1).double()
    with torch.no_grad():
        net.weight_hh_l0.fill_(w)
        net.weight_ih_l0.fill_(1.0)
        net.bias_ih_l0.zero_()
        net.bias_hh_l0.zero_()
    return harness.record(net, seeded_inputs().sum(-1, keepdim=True) if inputs is None else inputs, **record)


def test_fit_of_linear_rnn_is_closed_form():
    profile = linear_profile(0.9)
    lag = torch.arange(T, -1, -1, dtype=F64).view(-1, 1, 1).expand(T + 1, B, 1)
    torch.testing.assert_close(profile.log_norms, lag * math.log(0.9), rtol=0, atol=1e-12)
    fit = profile.fit()
    assert abs(fit["rate"] - math.log(0.9)) < 1e-9, fit
    assert fit["regime"] == "vanishing"
    assert abs(fit["log10_gain"] - T * math.log10(0.9)) < 1e-9


def test_to_frame_columns_and_lag():
    profile = linear_profile()
    frame = profile.to_frame()
    for column in (
        "layer",
        "state",
        "t",
        "lag",
        "log10_norm",
        "log10_norm_q10",
        "log10_norm_q25",
        "log10_norm_q75",
        "log10_norm_q90",
    ):
        assert column in frame.columns, column
    assert (frame.lag == T - frame.t).all()
    assert sorted(frame.t) == list(range(T + 1))
    assert abs(frame.log10_norm - frame.lag * math.log10(0.9)).max() < 1e-12  # every sample is |w|^lag


def test_save_writes_the_frame(tmp_path):
    import pandas as pd

    profile = linear_profile()
    folder = profile.save(tmp_path / "run")
    assert (folder / "DONE").exists() and (folder / "meta.json").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "profile.parquet"), profile.to_frame())


def test_recordings_of_one_architecture_are_runs_of_their_own(tmp_path):
    """Two weights of one 1-unit linear rnn have the same columns; saved apart, each folder is read as its
    own run, with its own rate ln|w| (closed form). Before, the second was a 'duplicate' of the first
    and its summary row carried the first's rate; a recording is saved over only by itself."""
    import pandas as pd

    from harness.cli.plot import main as plot_main

    weights = {"small": 0.5, "large": 0.9}
    profiles = {folder: linear_profile(w) for folder, w in weights.items()}
    assert profiles["small"].columns.keys() == profiles["large"].columns.keys()
    assert profiles["small"].run_id != profiles["large"].run_id
    for folder, profile in profiles.items():
        profile.save(tmp_path / folder)
    assert plot_main([str(tmp_path)]) == 0
    summary = pd.read_parquet(tmp_path / "summary.parquet").set_index("run_dir")
    assert (summary.status == "ok").all() and sorted(summary.index) == sorted(weights)
    for folder, w in weights.items():
        assert summary.rate[folder] == pytest.approx(math.log(w), abs=1e-9)
    # the recording tells them apart where nothing else does: never pooled as seeds of one configuration
    by_config = pd.read_parquet(tmp_path / "summary_by_config.parquet")
    assert sorted(by_config.recording) == sorted(p.columns["recording"] for p in profiles.values())
    assert (by_config.n_seeds == 1).all()
    profiles["large"].save(tmp_path / "large")  # the same recording again: its own folder
    with pytest.raises(harness.ConfigError, match=rf"holds the finished run {profiles['small'].run_id}, not this"):
        profiles["large"].save(tmp_path / "small")
    assert linear_profile(0.5).run_id == profiles["small"].run_id  # the same numbers: the same run


def test_recordings_that_differ_by_seed_alone_are_seeds_of_one_configuration(tmp_path):
    """Three seeds of one linear rnn (other inputs, another probe): three recordings, yet seeds of one
    configuration, pooled as a command-line sweep's are: one summary_by_config row of n = 3 whose mean
    rate is ln|w| (closed form), and the report says seed was swept, not recording."""
    import pandas as pd

    from harness.cli.plot import main as plot_main

    for seed in range(3):
        inputs = torch.randn(T, B, 1, dtype=F64, generator=torch.Generator().manual_seed(seed))
        linear_profile(0.5, inputs, seed=seed).save(tmp_path / f"seed{seed}")
    assert plot_main([str(tmp_path)]) == 0
    (row,) = pd.read_parquet(tmp_path / "summary_by_config.parquet").itertuples()
    assert row.n_seeds == 3 and row.rate_mean == pytest.approx(math.log(0.5), abs=1e-9)
    report = (tmp_path / "report.html").read_text()
    swept = report.split("<b>Swept:</b> ", 1)[1].split("<", 1)[0]
    assert swept.strip(" ·") == "seed (3 values)" and "recording=" not in report
    # decided on runs, not on a long table's rows (a row per step of one run repeats its seed)
    from harness.lab.summary import config_columns, recordings_apart

    profile = pd.read_parquet(tmp_path / "profile.parquet")
    assert not recordings_apart(profile, [c for c in config_columns(profile) if c != "recording"])


def test_only_a_configuration_that_repeats_a_seed_is_told_apart_by_recording(tmp_path):
    """Pooling is decided configuration by configuration: "a" (seeds 0-2) pools its three seeds however
    "b" is made; "b" holds two models of seed 0 (w = 0.5 and 0.9; no column tells them apart): a row
    each, their own rates ln|w| (closed form); "c" is one recording under two seeds (the 1-unit probe's
    sign is all the seed changes, and a norm does not see it): two seeds, pooled, whose interval has no
    width (what the seed changed: nothing)."""
    import pandas as pd

    from harness.cli.plot import main as plot_main

    def inputs(seed: int) -> torch.Tensor:
        return torch.randn(T, B, 1, dtype=F64, generator=torch.Generator().manual_seed(seed))

    for seed in range(3):
        linear_profile(0.5, inputs(seed), seed=seed, name="a").save(tmp_path / f"a{seed}")
    for w in (0.5, 0.9):
        linear_profile(w, inputs(7), name="b").save(tmp_path / f"b{w}")
    for seed in (0, 1):
        linear_profile(0.8, inputs(9), seed=seed, name="c").save(tmp_path / f"c{seed}")
    assert plot_main([str(tmp_path)]) == 0
    table = pd.read_parquet(tmp_path / "summary_by_config.parquet").sort_values(["name", "rate_mean"])
    assert table.name.tolist() == ["a", "b", "b", "c"] and table.n_seeds.tolist() == [3, 1, 1, 2]
    c = table[table.name == "c"].iloc[0]
    assert c.rate_ci_low == pytest.approx(c.rate_mean, abs=1e-12) == c.rate_ci_high
    expected = [math.log(0.5), math.log(0.9), math.log(0.5), math.log(0.8)]
    assert sorted(table.rate_mean) == pytest.approx(sorted(expected), abs=1e-9)
    assert table.recording.isna().tolist() == [True, False, False, True]
    # the report (and the figures, from the same rule) name the two of "b" alone by their recording
    assert "recording (2 values)" in (tmp_path / "report.html").read_text()


def test_one_recording_saved_twice_under_one_seed_is_one_run(tmp_path):
    """An rnn recorded alone and through a model that wraps it (module=): the same recording, the same
    seed, two run ids (the `model` column, no setting, differs). One run: summary_by_config's n is 1
    and the seq_len figure pools nothing (they read n = 2 seeds, of one seed, an interval of no width)."""
    import pandas as pd

    from harness.cli.plot import main as plot_main

    class Wrap(torch.nn.Module):
        def __init__(self, rnn: torch.nn.Module):
            super().__init__()
            self.rnn = rnn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    for steps in (20, 30):
        rnn, x = torch.nn.RNN(2, 4), torch.randn(steps, 2, 2)
        bare, wrapped = harness.record(rnn, x), harness.record(Wrap(rnn), x, module=rnn)
        assert bare.columns["recording"] == wrapped.columns["recording"] and bare.run_id != wrapped.run_id
        bare.save(tmp_path / f"bare{steps}")
        wrapped.save(tmp_path / f"wrapped{steps}")
    assert plot_main([str(tmp_path)]) == 0
    assert pd.read_parquet(tmp_path / "summary_by_config.parquet").n_seeds.tolist() == [1, 1]
    report = (tmp_path / "report.html").read_text()
    assert "seeds pooled" not in report and "seq_len (2 values)" in report


def test_non_tensor_targets_are_recorded():
    """Targets are whatever the loss takes (a list, a dict, a number): recorded, not refused at the end."""
    rnn, inputs = torch.nn.RNN(4, 8), torch.randn(15, 3, 4)
    weights = torch.randn(3, 8)
    for targets, read in (([weights], lambda t: t[0]), ({"w": weights}, lambda t: t["w"]), (2.0, lambda t: t)):
        profile = harness.record(rnn, inputs, loss=lambda out, t, read=read: (out[-1] * read(t)).sum(), targets=targets)
        assert profile.log_norms.isfinite().all()


def test_recordings_that_overflowed_everywhere_are_runs_of_their_own():
    """Two linear rnns whose states leave float64's range (20^t, 30^t) in every sample: neither profile
    measures anything (all nan, the same numbers), yet they are two recordings, of other weights."""
    first, second = (linear_profile(w, torch.ones(400, 2, 1, dtype=F64)) for w in (20.0, 30.0))
    assert first.log_norms.isnan().all() and second.log_norms.isnan().all()
    assert first.flags == second.flags == ["diverged"] and first.run_id != second.run_id


def test_plot_returns_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.axes
    import matplotlib.pyplot as plt

    ax = linear_profile().plot()
    try:
        assert isinstance(ax, matplotlib.axes.Axes)
        assert len(ax.lines) == 1
    finally:
        plt.close(ax.figure)
