"""The two adjoints, each against its own independent reference, in float64.

total (harness.core.total): every layer's h_t (and c_t) a node of the graph, what retain_grad gives.
Reference: the torch module unrolled by hand with nn.LSTMCell / GRUCell / RNNCell on its own weights,
retain_grad on every layer's h and c at every step.

state (harness.core.segments.record_profile, what the recorders record): dL/dS_t of the joint state.
Reference: the same cells, stepped on one concatenated tensor S_t (retain_grad on it) that each step
splits into the layers' blocks and joins again.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import harness
from harness.core.cells import CellNet
from harness.core.errors import ConfigError
from harness.core.segments import record_profile
from harness.core.total import decades_apart, total_adjoint
from harness.core.zoo.indrnn import IndRNNNet
from harness.core.zoo.lru import LRUNet

T, B, IN, H = 9, 3, 3, 5
TOL = 1e-9
MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


def torch_module(kind: str, num_layers: int, nonlinearity: str = "tanh", seed: int = 0) -> nn.RNNBase:
    torch.manual_seed(seed)
    options = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    return MODULES[kind](IN, H, num_layers=num_layers, **options).double()


def cells_of(module: nn.RNNBase) -> list[nn.RNNCellBase]:
    """One torch cell per layer of `module`, on copies of its weights."""
    kind = next(k for k, m in MODULES.items() if type(module) is m)
    options = {"nonlinearity": module.nonlinearity} if kind == "rnn" else {}
    cells = []
    for layer in range(module.num_layers):
        cell = CELLS[kind](IN if layer == 0 else H, H, **options).double()
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(module, f"{name}_l{layer}"))
        cells.append(cell)
    return cells


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(T, B, IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


READOUT = torch.randn(H, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
LOSSES = {
    "every step": lambda outputs: (outputs @ READOUT).sum(),
    "final step": lambda outputs: (outputs[-1] @ READOUT).sum(),
}


def log_norms(grads: list[list[torch.Tensor | None]]) -> torch.Tensor:
    """(T+1, batch, blocks) ln norms of per-step lists of block gradients (None: -inf)."""
    rows = [
        torch.stack(
            [torch.full((B,), -math.inf, dtype=torch.float64) if g is None else g.norm(dim=-1).log() for g in step]
        )
        for step in grads
    ]
    return torch.stack(rows).transpose(1, 2)


def zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=torch.float64, requires_grad=True)


def reference_total(cells: list[nn.Module], x: torch.Tensor, loss, per_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ln norms, the top outputs) of every layer's h (and c) at every step under retain_grad."""
    nodes = [[zeros(B, H) for _ in range(len(cells) * per_layer)]]
    for x_t in x:
        new, below = [], x_t
        for layer, cell in enumerate(cells):
            old = nodes[-1][layer * per_layer : (layer + 1) * per_layer]
            out = cell(below, tuple(old) if per_layer == 2 else old[0])
            out = list(out) if per_layer == 2 else [out]
            for tensor in out:
                tensor.retain_grad()
            new.extend(out)
            below = out[0]
        nodes.append(new)
    outputs = torch.stack([step[-per_layer] for step in nodes[1:]])
    loss(outputs).backward()
    return log_norms([[block.grad for block in step] for step in nodes]), outputs.detach()


def reference_state(cells: list[nn.Module], x: torch.Tensor, loss, per_layer: int) -> torch.Tensor:
    """ln norms of dL/dS_t's blocks, S_t one concatenated tensor that each step splits and joins."""
    width = len(cells) * per_layer
    states = [zeros(B, width * H)]
    for x_t in x:
        blocks, new, below = states[-1].split(H, dim=-1), [], x_t
        for layer, cell in enumerate(cells):
            old = blocks[layer * per_layer : (layer + 1) * per_layer]
            out = cell(below, tuple(old) if per_layer == 2 else old[0])
            out = list(out) if per_layer == 2 else [out]
            new.extend(out)
            below = out[0]
        state = torch.cat(new, dim=-1)
        state.retain_grad()
        states.append(state)
    loss(torch.stack([s.split(H, dim=-1)[-per_layer] for s in states[1:]])).backward()
    return log_norms([list(s.grad.split(H, dim=-1)) for s in states])


def close(got: torch.Tensor, want: torch.Tensor, tol: float = TOL) -> None:
    """Equal to tol in ln where finite, and -inf at the same places."""
    assert got.shape == want.shape
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    finite = torch.isfinite(want)
    assert (got[finite] - want[finite]).abs().max() < tol


def state_recording(net, x: torch.Tensor, loss) -> torch.Tensor:
    """What the harness records today: dL/dS_t, in one segment, by autograd."""
    return record_profile(net, x, loss, final_state_only=False, recorder="autograd", segment=x.shape[0])[0]


STACKS = [("lstm", 2, "tanh"), ("lstm", 3, "tanh"), ("gru", 2, "tanh"), ("gru", 3, "tanh"), ("rnn", 2, "tanh")]
STACKS += [("rnn", 3, "relu")]


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("kind, num_layers, nonlinearity", STACKS)
def test_total_is_retain_grad_on_every_layer(kind, num_layers, nonlinearity, loss_name):
    module, x, loss = torch_module(kind, num_layers, nonlinearity), inputs(), LOSSES[loss_name]
    per_layer = 2 if kind == "lstm" else 1
    want, outputs = reference_total(cells_of(module), x, loss, per_layer)
    assert torch.allclose(outputs, module(x)[0], atol=1e-12)  # the hand unroll is the module
    got = total_adjoint(harness.from_torch(module), x, loss)
    assert got.dtype == torch.float64 and got.shape == (T + 1, B, num_layers * per_layer)
    close(got, want)


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("kind, num_layers, nonlinearity", STACKS)
def test_state_is_the_joint_state_gradient(kind, num_layers, nonlinearity, loss_name):
    module, x, loss = torch_module(kind, num_layers, nonlinearity), inputs(), LOSSES[loss_name]
    per_layer = 2 if kind == "lstm" else 1
    want = reference_state(cells_of(module), x, loss, per_layer)
    close(state_recording(harness.from_torch(module), x, loss), want)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_adjoints_agree_on_the_top_h_and_at_t0_and_differ_below(kind):
    """The top layer's h and every block at t = 0 agree; a lower layer's h (the same-step path into
    the layer above) and an lstm's c (the same-step path into its h) do not."""
    module, x, loss = torch_module(kind, 2), inputs(), LOSSES["every step"]
    net = harness.from_torch(module)
    total, state = total_adjoint(net, x, loss), state_recording(net, x, loss)
    per_layer = 2 if kind == "lstm" else 1
    top_h = (2 - 1) * per_layer
    close(total[:, :, top_h], state[:, :, top_h])
    close(total[0], state[0])
    lower_h = decades_apart(total[1:, :, 0], state[1:, :, 0])
    print(f"{kind}: lower layer's h, total vs state: up to {lower_h:.2f} decades")
    assert lower_h > 0.05
    if kind == "lstm":
        c_blocks = [1, 3]
        apart = decades_apart(total[1:, :, c_blocks], state[1:, :, c_blocks])
        print(f"lstm: c blocks, total vs state: up to {apart:.2f} decades")
        assert apart > 0.05


def test_a_final_step_loss_reaches_a_lower_h_at_t_only_through_the_same_step_path():
    """With the loss on h^top_T alone, the state adjoint of a lower layer's h_T is exactly zero; the total
    one is not (h^0_T reaches the loss through h^1_T)."""
    module, x, loss = torch_module("gru", 2), inputs(), LOSSES["final step"]
    net = harness.from_torch(module)
    total, state = total_adjoint(net, x, loss), state_recording(net, x, loss)
    assert torch.isneginf(state[-1, :, 0]).all() and torch.isfinite(total[-1, :, 0]).all()


@pytest.mark.parametrize("kind, nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh")])
def test_one_layer_one_block_total_is_state(kind, nonlinearity):
    module, x = torch_module(kind, 1, nonlinearity), inputs()
    net = harness.from_torch(module)
    for loss in LOSSES.values():
        close(total_adjoint(net, x, loss), state_recording(net, x, loss))


def test_one_layer_lstm_h_is_state_c_is_not():
    module, x, loss = torch_module("lstm", 1), inputs(), LOSSES["every step"]
    net = harness.from_torch(module)
    total, state = total_adjoint(net, x, loss), state_recording(net, x, loss)
    close(total[:, :, 0], state[:, :, 0])
    assert decades_apart(total[1:, :, 1], state[1:, :, 1]) > 0.05
    close(total, reference_total(cells_of(module), x, loss, 2)[0])


def test_a_one_block_network_of_any_kind_is_its_own_node():
    """The lru gives no per-layer step, but with one layer its joint state is its only block."""
    net = LRUNet(IN, H, 1).double()
    net.initialise_weights("default", 1.0, torch.Generator().manual_seed(0))
    x, loss = inputs(), lambda outputs: (outputs[..., :H] @ READOUT).sum()
    close(total_adjoint(net, x, loss), state_recording(net, x, loss))


def test_user_cells_in_two_layers():
    torch.manual_seed(3)
    cells = [nn.GRUCell(IN, H).double(), nn.GRUCell(H, H).double()]
    net = CellNet(cells, IN)
    x = inputs()
    for loss in LOSSES.values():
        close(total_adjoint(net, x, loss), reference_total(cells, x, loss, 1)[0])
        close(state_recording(net, x, loss), reference_state(cells, x, loss, 1))


def test_indrnn_layers_against_their_equation():
    net = IndRNNNet("tanh", IN, H, 2).double()
    net.initialise_weights("default", 1.0, torch.Generator().manual_seed(0))
    x, loss = inputs(), LOSSES["every step"]

    def cell(layer):
        w, b, u = (getattr(net, f"{name}_l{layer}").detach() for name in ("weight_ih", "bias_ih", "weight_hh"))
        return lambda x_t, h: torch.tanh(x_t @ w.t() + b + u * h)

    close(total_adjoint(net, x, loss), reference_total([cell(0), cell(1)], x, loss, 1)[0])


def test_a_float32_network_is_recorded_on_a_float64_copy():
    module = torch_module("lstm", 2)
    x, loss = inputs(), LOSSES["every step"]
    want = total_adjoint(harness.from_torch(module), x, loss)
    module32 = module.float()
    got = total_adjoint(harness.from_torch(module32), x.float(), lambda out: loss(out.double()))
    assert got.dtype == torch.float64
    assert (got - want).abs().max() < 1e-5  # the float32 weights, rounded
    assert all(p.grad is None and p.dtype == torch.float32 for p in module32.parameters())


def test_a_network_without_per_layer_nodes_is_refused():
    net = LRUNet(IN, H, 2).double()
    with pytest.raises(ConfigError, match=r"adjoint='total'.*lru.*supported: rnn, lstm"):
        total_adjoint(net, inputs(), LOSSES["every step"])
