"""The explicit cells against torch.nn.RNN / LSTM / GRU with the same weights."""

import math

import pytest
import torch
import torch.nn.functional as F

from harness.core.cells import ACTIVATIONS, CELLS, RecurrentNet
from tests.conftest import build

TORCH_MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cell_equals_torch_module(cell, num_layers):
    model, batch = build(cell, num_layers=num_layers, seq_len=15, batch_size=4)
    reference = TORCH_MODULES[cell](model.input_size, model.hidden_size, num_layers).double()
    reference.load_state_dict(model.state_dict())  # same names, same shapes, same weights

    states = model(batch.inputs, model.initial_state(4))
    outputs = torch.stack([model.top_hidden(s) for s in states[1:]])
    ref_outputs, ref_final = reference(batch.inputs)
    torch.testing.assert_close(outputs, ref_outputs, rtol=0, atol=1e-6)
    # The final joint state holds every layer's h (and c) as torch returns them.
    final_blocks = torch.stack(model.split(states[-1])).view(num_layers, -1, 4, model.hidden_size)
    ref_blocks = torch.stack(ref_final if cell == "lstm" else (ref_final,), dim=1)
    torch.testing.assert_close(final_blocks, ref_blocks, rtol=0, atol=1e-6)

    weights = torch.randn_like(outputs)
    (outputs * weights).sum().backward()
    (ref_outputs * weights).sum().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(
            param.grad, dict(reference.named_parameters())[name].grad, rtol=0, atol=1e-6, msg=name
        )


def test_activation_registry_values():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    expected = {
        "tanh": torch.tanh(x),
        "relu": x.clamp_min(0),
        "sigmoid": 1 / (1 + torch.exp(-x)),
        "identity": x,
        "leaky_relu": torch.where(x > 0, x, 0.01 * x),
        "gelu": x * 0.5 * (1 + torch.erf(x / math.sqrt(2))),
        "softsign": x / (1 + x.abs()),
    }
    assert set(ACTIVATIONS) == set(expected)
    for name, values in expected.items():
        torch.testing.assert_close(ACTIVATIONS[name](x), values, msg=name)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_activation_replaces_tanh_in_candidate_and_lstm_output(cell):
    """A cell with activation=A equals the same cell written out by hand with A in tanh's places."""
    model, batch = build(cell, activation="softsign", seq_len=5)
    w_ih, w_hh, b_ih, b_hh = (getattr(model, f"{n}_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    h = torch.zeros(3, model.hidden_size, dtype=torch.float64)
    c = torch.zeros_like(h)
    for x in batch.inputs:
        gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if cell == "rnn":
            h = F.softsign(gi + gh)
        elif cell == "lstm":
            i, f, g, o = (gi + gh).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * F.softsign(g)
            h = torch.sigmoid(o) * F.softsign(c)
        else:
            (xr, xz, xn), (hr, hz, hn) = gi.chunk(3, 1), gh.chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * F.softsign(xn + r * hn) + z * h
    states = model(batch.inputs, model.initial_state(3))
    torch.testing.assert_close(model.top_hidden(states[-1]), h)


def test_joint_state_layout():
    model = RecurrentNet("lstm", "tanh", 3, 5, 2)
    assert model.num_parts == 4
    state = torch.arange(4 * 5.0).repeat(2, 1)
    assert [b[0, 0].item() for b in model.split(state)] == [0, 5, 10, 15]  # l0 h, l0 c, l1 h, l1 c
    assert model.top_hidden(state)[0, 0].item() == 10
