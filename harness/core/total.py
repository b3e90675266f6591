"""The total adjoint: the gradient of every layer's state tensor as its own node of the unrolled graph.

The recorders (harness.core.recorders, harness.core.segments) record the *state* adjoint dL/dS_t: the
joint state S_t (every layer's blocks side by side) taken as one variable, everything after it a
function of S_t and the later inputs. Its block for layer l's h_t holds the later layers' h_t fixed,
so it leaves out the path h^l_t -> h^{l+1}_t at the same step (layer l + 1 reads the fresh h of the
layer below), and an lstm's c block leaves out c_t -> h_t (h_t = o ⊙ act(c_t) is computed from it).

The *total* adjoint is the gradient of the tensor itself, a node of the graph the network unrolls into,
with every path from it to the loss: what retain_grad on h^l_t (or c^l_t) gives. It equals the state
adjoint on the top layer's h (nothing at step t reads it but the loss and step t + 1), on every block at
t = 0 (the initial state feeds step 1 only) and on every block of a one-block network (rnn, gru, a
one-layer cell whose state is one tensor: its S_t is the block). It differs on a lower layer's h and on
an lstm's c, where the missing same-step path adds in.

    total_adjoint(net, inputs, output_loss)   ln ||dL/d block^l_t|| per sample, (T+1, batch, blocks)

It unrolls the network layer by layer within each step, each block its own tensor, on a float64 copy of
the network, and takes the gradient of the loss with respect to every block with one autograd.grad. The
graph of all T steps is held at once (no segments). A network gives its layers' steps:

    RecurrentNet (rnn, lstm, gru)   layer_tail on its recurrent matmul, as linearised_step runs it
    HiddenNet (indrnn, minimal)     layer_step, as its step runs it
    CellNet (user cells)            each cell's own forward(x_t, state)
    any one-block network           its step (its joint state is its only block)

Any other (the lru with several layers) is refused in one line (ConfigError).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.cells import CellNet, as_tuple
from harness.core.errors import ConfigError
from harness.core.protocol import StackedNet
from harness.core.zoo.classic import RecurrentNet
from harness.core.zoo.hidden import HiddenNet
from harness.core.zoo.steps import recurrent

# One layer's step: (layer, the bottom layer's drive at t, the fresh h of the layer below (None for
# layer 0), the layer's blocks at t - 1) -> its blocks at t.
LayerStep = Callable[[int, Tensor, Tensor | None, tuple[Tensor, ...]], tuple[Tensor, ...]]

SUPPORTED = "rnn, lstm, gru, indrnn, minimal, user cells (CellNet) and any network whose state is one block"


def total_adjoint(net: StackedNet, inputs: Tensor, output_loss: Callable[[Tensor], Tensor]) -> Tensor:
    """ln ||dL/d block^l_t|| per sample for t = 0..T, each block a node of the unrolled graph (see the
    module docstring), float64, shaped (T+1, batch, blocks) like record_profile's log_norms: layer 0's
    blocks, then layer 1's, ...; t = 0 the initial state; -inf where no gradient reaches a block.

    inputs: (seq_len, batch, input_size). output_loss receives the top layer's outputs (its first
    block) at every step, stacked (T, batch, width), and returns the scalar loss. Computed in float64,
    on a float64 copy of a network in another dtype; no parameter's .grad is written.
    ConfigError for a network that does not give its layers' steps (SUPPORTED).
    """
    layer_steps(net)  # refused before anything is copied
    if next(net.parameters()).dtype != torch.float64:
        net = copy.deepcopy(net).double()
    layer_step = layer_steps(net)
    x = inputs.double()
    per_layer = len(net.state_names)
    with torch.enable_grad():
        first = net.split(net.initial_state(x.shape[1]).detach().to(x))
        nodes = [[block.clone().requires_grad_() for block in first]]  # each block its own leaf
        for drive in net.input_drive(x):
            previous, new = nodes[-1], []
            below = None
            for layer in range(net.num_layers):
                out = layer_step(layer, drive, below, tuple(previous[layer * per_layer : (layer + 1) * per_layer]))
                new.extend(out)
                below = out[0]
            nodes.append(new)
        loss = output_loss(torch.stack([blocks[-per_layer] for blocks in nodes[1:]]))
        flat = [block for blocks in nodes for block in blocks]
        grads = torch.autograd.grad(loss, flat, allow_unused=True)
    norms = torch.stack(
        [
            torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
            if g is None
            else torch.linalg.vector_norm(g.double(), dim=-1)
            for g in grads
        ]
    )
    return norms.log().view(len(nodes), net.num_parts, x.shape[1]).transpose(1, 2).contiguous()


def layer_steps(net: StackedNet) -> LayerStep:
    """How `net` steps one layer at a time; ConfigError where it does not say."""
    if isinstance(net, RecurrentNet):

        def classic(layer: int, drive: Tensor, below: Tensor | None, blocks: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            if below is not None:  # the layer below's fresh h is this layer's input, as linearised_step reads it
                drive = _projection(net, layer, below)
            hw = recurrent(blocks[0], getattr(net, f"weight_hh_l{layer}"), getattr(net, f"bias_hh_l{layer}"))
            return tuple(net.layer_tail(layer, drive, hw, blocks))

        return classic
    if isinstance(net, HiddenNet):

        def hidden(layer: int, drive: Tensor, below: Tensor | None, blocks: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return (net.layer_step(layer, drive if below is None else _projection(net, layer, below), blocks[0]),)

        return hidden
    if isinstance(net, CellNet):

        def cell(layer: int, drive: Tensor, below: Tensor | None, blocks: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            state = blocks[0] if len(blocks) == 1 else blocks
            return as_tuple(net.layers[layer](drive if below is None else below, state))

        return cell
    if net.num_parts == 1:  # one layer, one block: S_t is the block, so net.step gives the node itself

        def whole(layer: int, drive: Tensor, below: Tensor | None, blocks: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return (net.step(blocks[0], drive),)

        return whole
    raise ConfigError(
        f"adjoint='total': {net.cell_name} with {net.num_layers} layer(s) does not give each layer's state "
        f"as its own tensor; supported: {SUPPORTED} (or adjoint='state')"
    )


def _projection(net: StackedNet, layer: int, below: Tensor) -> Tensor:
    """Layer `layer`'s input drive: the layer below's fresh h through W_ih and b_ih."""
    return F.linear(below, getattr(net, f"weight_ih_l{layer}"), getattr(net, f"bias_ih_l{layer}"))


def decades_apart(total: Tensor, state: Tensor) -> float:
    """The largest |log10 total - log10 state| over the entries where both are finite (0 if none)."""
    both = torch.isfinite(total) & torch.isfinite(state)
    if not bool(both.any()):
        return 0.0
    return float((total - state)[both].abs().max()) / math.log(10)
