"""Init schemes and `scale`, checked against what each scheme promises."""

import math

import pytest
import torch

from harness.core.cells import CELLS, RecurrentNet
from harness.core.init import INITS, NotApplicable, initialise


def make(cell="rnn", init="gaussian", scale=1.0, hidden=200, seed=0, forget_bias=0.0):
    model = RecurrentNet(cell, "tanh", 50, hidden, 2).double()
    initialise(model, init, scale, torch.Generator().manual_seed(seed), forget_bias)
    return model


def blocks(model, layer=0):
    w = getattr(model, f"weight_hh_l{layer}").detach()
    return w.chunk(model.cell.gates, dim=0)


def spectral_radius(matrix):
    return torch.linalg.eigvals(matrix).abs().max().item()


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_orthogonal_blocks_are_scaled_orthogonal(cell, scale):
    for block in blocks(make(cell, "orthogonal", scale, hidden=16)):
        torch.testing.assert_close(block.T @ block, scale**2 * torch.eye(16, dtype=torch.float64))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_identity_blocks(cell):
    for block in blocks(make(cell, "identity", 0.7, hidden=5)):
        torch.testing.assert_close(block, 0.7 * torch.eye(5, dtype=torch.float64))


def test_gaussian_entries_and_radius():
    model = make("rnn", "gaussian", scale=1.5, hidden=400)
    (w,) = blocks(model)
    assert w.std().item() == pytest.approx(1.5 / math.sqrt(400), rel=0.02)
    # Circular law: the spectral radius of an N(0, s^2/H) matrix tends to s.
    assert spectral_radius(w) == pytest.approx(1.5, rel=0.05)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "identity"])
def test_input_weights_and_biases(init):
    model = make("lstm", init, hidden=64)
    assert model.weight_ih_l0.std().item() == pytest.approx(1 / math.sqrt(50), rel=0.05)
    assert model.weight_ih_l1.std().item() == pytest.approx(1 / math.sqrt(64), rel=0.05)
    for name, param in model.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(param) == 0, name


def test_default_is_torch_uniform_times_scale():
    model = make("gru", "default", scale=3.0, hidden=20)
    bound = 1 / math.sqrt(20)
    for name, param in model.named_parameters():
        limit = 3 * bound if name.startswith("weight_hh") else bound
        assert param.abs().max().item() <= limit, name
        assert param.abs().max().item() > 0.9 * limit, name  # it does fill the range


def test_forget_bias_shifts_only_the_forget_gate():
    base, shifted = make("lstm", "default"), make("lstm", "default", forget_bias=1.0)
    for layer in range(2):
        diff = getattr(shifted, f"bias_hh_l{layer}") - getattr(base, f"bias_hh_l{layer}")
        i, f, g, o = diff.detach().chunk(4)
        torch.testing.assert_close(f, torch.ones_like(f))
        assert not i.any() and not g.any() and not o.any()


def test_forget_bias_refused_for_other_cells():
    with pytest.raises(NotApplicable, match="lstm only"):
        make("gru", forget_bias=1.0)


@pytest.mark.parametrize("init", sorted(INITS))
def test_seed_determines_weights(init):
    a, b, c = make(init=init, seed=1, hidden=8), make(init=init, seed=1, hidden=8), make(init=init, seed=2, hidden=8)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters())) or init == "identity"
