"""The whole-sequence rnn and gru layers training runs through on the CPU (harness.core.sequences)
against torch's own nn.RNN / nn.GRU on the same parameters: outputs and every gradient, in float64."""

import pytest
import torch

from harness.core.cells import RecurrentNet
from harness.core.sequences import to_torch, train_forward


@pytest.mark.parametrize("cell,activation", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh")])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_the_written_out_backward_is_torchs(cell, activation, num_layers, bias):
    net = RecurrentNet(cell, activation, 3, 5, num_layers, bias).double()
    generator = torch.Generator().manual_seed(0)
    for parameter in net.parameters():
        parameter.data.uniform_(-0.7, 0.7, generator=generator)
    x = torch.randn(17, 4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    weights = torch.randn(17, 4, 5, dtype=torch.float64, generator=generator)  # a loss on every step's output
    ours = train_forward(net)(x)
    theirs = to_torch(net)(x)[0]
    assert (ours - theirs).abs().max() < 1e-13
    wrt = [x, *net.parameters()]
    for a, b in zip(
        torch.autograd.grad((ours * weights).sum(), wrt), torch.autograd.grad((theirs * weights).sum(), wrt)
    ):
        assert (a - b).abs().max() < 1e-12


def test_each_network_trains_through_the_fastest_exact_path():
    """rnn (tanh, relu) and gru (tanh) on the CPU: these sequences; the lstm: torch's module (oneDNN's fused
    kernel on the CPU); other activations: the explicit cells (None)."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    made_by = {
        (cell, activation): type(train_forward(RecurrentNet(cell, activation, 3, 4, 1).double())(x).grad_fn).__name__
        for cell, activation in [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]
    }
    assert made_by[("rnn", "tanh")] == made_by[("rnn", "relu")] == "RNNSequenceBackward"
    assert made_by[("gru", "tanh")] == "GRUSequenceBackward"
    assert "Sequence" not in made_by[("lstm", "tanh")]
    assert train_forward(RecurrentNet("gru", "sigmoid", 3, 4, 1)) is None
