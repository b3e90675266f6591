"""Inside a profile: each state entry's gradient, each gate's, and each step's share of the recurrent
weights' gradient, in the exact recorder's log domain (any range: 1e-3000 is ln 1e-3000).

    units    ln|dL/dS_t,j|            every state entry j, t = 0..T                 (T+1, batch, state)
    gates    ln||dL/d hw_t^g||        the recurrent pre-activation hw_t = h_{t-1} W_hh^T + b_hh of the
                                      step that makes S_t, per gate block g (rnn: one; lstm: i, f, g, o;
                                      gru: r, z, n, where n's is the part inside r * (...); minimal:
                                      u, whose V z_t part carries the same gradient), per layer,
                                      t = 1..T                                   (T, batch, layers * gates)
    weights  ln||C_t^g||_F            C_t = sum over the batch of (dL/d hw_t)^T h_{t-1}: step t's part
                                      of dL/dW_hh, per layer and gate block; the C_t sum to dL/dW_hh
                                                                                 (T, layers * gates)

The weights' row is what decides whether a long dependency can be learned: a step whose C_t is
1e-30 of the others' cannot move the weights, however large dL/dh_t is there.

One backward pass over the in-memory graph with the exact recorder's per-sample renormalisation
(harness.core.recorders): the hook at S_t keeps the arriving gradient (its scale is the divisors of
the steps after t, known by then) and divides by its norm. Afterwards, each step's tail is pushed
back by a local vector-Jacobian product from the renormalised gradient through the whole step (in a
stack, a layer's hw_t also reaches S_t through the layers above it within the step), which gives each
layer's hw_t gradient and, against its h_{t-1}, C_t. Gates and weights for networks of any depth that
name their gate blocks (gate_names, harness.core.protocol: rnn, lstm, gru, minimal); units for any
network (the lru's and indrnn's recurrence is elementwise: units rows only). Checked against autograd
on the unrolled graph with retain_grad, and the C_t against torch's own dL/dW_hh of every layer
(tests/test_detail.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.core.protocol import StackedNet
from harness.core.recorders import Renormaliser, suffix_sums
from harness.core.zoo.steps import recurrent


class Detail(NamedTuple):
    units: Tensor  # (T+1, batch, state) ln|dL/dS_t,j|, float64
    gates: Tensor | None  # (T, batch, layers * gates) ln||dL/d hw_t^g||; None where there are no gates to show
    weights: Tensor | None  # (T, layers * gates) ln||C_t^g||_F
    gate_names: tuple[str, ...]  # per column of gates: the gate's name ...
    gate_layers: tuple[int, ...]  # ... and its layer
    contributions: Tensor | None  # (T, layers, rows, hidden) C_t itself, float64, when asked for (small cases)


def record_detail(
    net: StackedNet, inputs: Tensor, output_loss: Callable[[Tensor], Tensor], contributions: bool = False
) -> Detail:
    """The units, gates and weights rows of one recording (see the module docstring) for a loss that
    reads the final state only (the exact recorder's renormalisation needs that): output_loss gets the
    top layer's h_T as (1, batch, width). contributions: also return every C_t (T x the size of W_hh,
    float64; for tests and small cases)."""
    batch = inputs.shape[1]
    with torch.no_grad():
        drives = list(net.input_drive(inputs))
    states = [net.initial_state(batch)]
    for drive in drives:
        states.append(net.step(states[-1], drive))
    loss = output_loss(net.top_hidden(states[-1]).unsqueeze(0))

    # The exact recorder's division, on the whole state at once (one block): it keeps what arrives.
    renormalise = Renormaliser((sum(net.block_sizes),), keep_gradients=True)
    handles = [state.register_hook(renormalise) for state in states]
    try:
        torch.autograd.grad(loss, states[0])
    finally:
        for handle in handles:
            handle.remove()
    grads, logs = torch.stack(renormalise.gradients[::-1]), renormalise.logs()[1].squeeze(-1)  # S_0 .. S_T
    scale = suffix_sums(logs)[0]  # at t: the log divisors of the steps after t
    with torch.no_grad():
        units = grads.abs().log() + scale.unsqueeze(-1)
    if net.gate_names is None:
        return Detail(units, None, None, (), (), None)
    return _gates_and_weights(net, states, drives, grads, logs, scale, units, contributions)


def _step_from_hw(net: StackedNet, drive: Tensor, hws: list[Tensor], blocks: tuple[Tensor, ...]) -> Tensor:
    """S_t from each layer's recurrent pre-activation hw^l (the rest held fixed), the layers above
    reading the fresh h below as the network's own step does, so that a layer's hw gradient includes
    what flows back to it through the layers above within the step."""
    per_layer = len(net.state_names)
    new: list[Tensor] = []
    for layer, hw in enumerate(hws):
        if layer > 0:
            drive = F.linear(new[-per_layer], getattr(net, f"weight_ih_l{layer}"), getattr(net, f"bias_ih_l{layer}"))
        new.extend(net.layer_tail(layer, drive, hw, blocks[layer * per_layer : (layer + 1) * per_layer]))
    return torch.cat(new, dim=-1)


def _gates_and_weights(
    net: StackedNet,
    states: list[Tensor],
    drives: list[Tensor],
    grads: Tensor,
    logs: Tensor,
    scale: Tensor,
    units: Tensor,
    contributions: bool,
) -> Detail:
    names, hidden, per_layer = net.gate_names, net.hidden_size, len(net.state_names)
    gates, weights, kept = [], [], []
    for t in range(1, len(states)):
        blocks = net.split(states[t - 1].detach())
        with torch.no_grad():  # each hw^l a leaf of its own
            hws = [
                recurrent(
                    blocks[layer * per_layer], getattr(net, f"weight_hh_l{layer}"), getattr(net, f"bias_hh_l{layer}")
                )
                for layer in range(net.num_layers)
            ]
        hws = [hw.requires_grad_() for hw in hws]
        with torch.enable_grad():
            new = _step_from_hw(net, drives[t - 1], hws, blocks)
        unit = (grads[t] / logs[t].exp().unsqueeze(1)).to(new.dtype)  # as the hook passed it on
        log_scale = scale[t] + logs[t]  # (batch,): the true gradient is d_hw * exp(log_scale)
        top = log_scale.max()  # C_t = sum_b exp(log_scale_b) d_hw_b^T h_b: the largest scale factored out
        step_gates, step_weights, step_kept = [], [], []
        for layer, d_hw in enumerate(torch.autograd.grad(new, hws, unit)):
            d_hw = d_hw.double()
            per_gate = d_hw.view(d_hw.shape[0], len(names), hidden)
            step_gates.append(torch.linalg.vector_norm(per_gate, dim=-1).log() + log_scale.unsqueeze(1))
            weighted = d_hw * (log_scale - top).exp().unsqueeze(1)
            matrix = weighted.t() @ blocks[layer * per_layer].double()  # (gates * hidden, hidden)
            step_weights.append(
                torch.linalg.vector_norm(matrix.view(len(names), hidden, hidden), dim=(1, 2)).log() + top
            )
            step_kept.append(matrix * top.exp())
        gates.append(torch.cat(step_gates, dim=1))
        weights.append(torch.cat(step_weights))
        if contributions:
            kept.append(torch.stack(step_kept))
    layers = tuple(layer for layer in range(net.num_layers) for _ in names)
    return Detail(
        units,
        torch.stack(gates),
        torch.stack(weights),
        names * net.num_layers,
        layers,
        torch.stack(kept) if contributions else None,
    )
