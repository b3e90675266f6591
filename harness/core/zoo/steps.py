"""The step functions of rnn, lstm and gru (harness.core.zoo.classic): each cell's elementwise tail, its
Jacobian's coefficients, and their push (tangents forward) and pull (cotangents backward). Builds no
network (no build): harness.core.zoo.classic does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from harness.core.protocol import Activation

# A cell's step is its recurrent matmul hw = h W_hh^T + b_hh followed by an elementwise `tail`
# (xw, hw, state) -> new state, where xw = x_t W_ih^T + b_ih is computed outside (batched when
# possible). Gates are always sigmoid; `act` replaces tanh. The split is what lets a tangent be pushed
# through a step at the cost of one more matmul (RecurrentNet.step_jvp): the matmuls are linear, and
# the tail's Jacobian is elementwise, written out in two parts. `coefficients` turns what the tail
# computed on its way (its `internals`: activated gates, pre-activations) into the Jacobian's
# elementwise factors, for every step of a batch at once or one step at a time; `push` applies them
# to the tangents of xw, hw and the state (dxw None: the inputs do not move), a few products per step.
# `pull` is push's transpose, for the backward: from the cotangent of the new state it returns the
# cotangents of hw and of xw, and of the old state where it enters elementwise (None where only
# through hw), so that dL/dS_{t-1} costs the same few products and the transposed matmuls
# (RecurrentNet.pull_cotangent). `slope` is the activation's derivative. b_hh is None for a network
# without biases (torch's bias=False).

Internals = tuple[Tensor, ...]


def recurrent(h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """h W_hh^T + b_hh, fused into one addmm where there is a bias."""
    return h @ w_hh.t() if b_hh is None else torch.addmm(b_hh, h, w_hh.t())


def plus(dxw: Tensor | None, dhw: Tensor) -> Tensor:
    return dhw if dxw is None else dxw + dhw


def rnn_tail(
    xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation
) -> tuple[tuple[Tensor, ...], Internals]:
    pre = xw + hw
    h = act(pre)
    return (h,), (pre, h)


def rnn_coefficients(internals: Internals, slope: Callable) -> tuple[Tensor, ...]:
    return (slope(*internals),)


def rnn_push(
    coefficients: tuple[Tensor, ...], dxw: Tensor | None, dhw: Tensor, dstate: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    return (coefficients[0] * plus(dxw, dhw),)


def rnn_pull(coefficients: tuple[Tensor, ...], dstate: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple]:
    # dxw = dhw = act'(pre) dh'; the old h enters only through hw
    dpre = coefficients[0] * dstate[0]
    return dpre, dpre, (None,)


def lstm_tail(
    xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation
) -> tuple[tuple[Tensor, ...], Internals]:
    _, c = state
    i, f, g, o = (xw + hw).chunk(4, dim=-1)
    si, sf, so, ag = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), act(g)
    c_new = sf * c + si * ag
    ac = act(c_new)
    return (so * ac, c_new), (si, sf, so, g, ag, c, c_new, ac)


def lstm_coefficients(internals: Internals, slope: Callable) -> tuple[Tensor, ...]:
    """(the factors of dz = dxw + dhw's four blocks in dc' (i, f, g) and dh' (o), f, o act'(c'))."""
    si, sf, so, g, ag, c, c_new, ac = internals
    gates = torch.cat([si * (1 - si) * ag, sf * (1 - sf) * c, si * slope(g, ag), so * (1 - so) * ac], dim=-1)
    return gates, sf, so * slope(c_new, ac)


def lstm_push(
    coefficients: tuple[Tensor, ...], dxw: Tensor | None, dhw: Tensor, dstate: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    # dc' = f dc + i(1-i) act(g) di + f(1-f) c df + i act'(g) dg;  dh' = o(1-o) act(c') do + o act'(c') dc'
    gates, f, out = coefficients
    d_i, d_f, d_g, d_o = (gates * plus(dxw, dhw)).chunk(4, dim=-1)
    dc_new = torch.addcmul(d_i.add(d_f).add_(d_g), f, dstate[1])
    return torch.addcmul(d_o, out, dc_new), dc_new


def lstm_pull(coefficients: tuple[Tensor, ...], dstate: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple]:
    # lstm_push transposed: what reaches c' is dc' + o act'(c') dh'; the i, f, g blocks of dz take it
    # through their factors, the o block takes dh'; the old c gets f times it, the old h only via hw
    gates, f, out = coefficients
    dh, dc = dstate
    dc_new = torch.addcmul(dc, out, dh)
    dz = gates * torch.cat([dc_new, dc_new, dc_new, dh], dim=-1)
    return dz, dz, (None, f * dc_new)


def gru_tail(
    xw: Tensor, hw: Tensor, state: tuple[Tensor, ...], act: Activation
) -> tuple[tuple[Tensor, ...], Internals]:
    (h,) = state
    x_r, x_z, x_n = xw.chunk(3, dim=-1)
    h_r, h_z, h_n = hw.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    pre = x_n + r * h_n  # torch.nn.GRU puts b_hn inside the reset gate's product
    n = act(pre)
    return ((1 - z) * n + z * h,), (r, z, pre, n, h_n, h)


def gru_coefficients(internals: Internals, slope: Callable) -> tuple[Tensor, ...]:
    """(the factors of dhw's three blocks (r, z, n) in dh', those of dxw's, z)."""
    r, z, pre, n, h_n, h = internals
    dn = (1 - z) * slope(pre, n)  # dh' per d(pre)
    k_r, k_z = dn * h_n * r * (1 - r), (h - n) * z * (1 - z)
    return torch.cat([k_r, k_z, dn * r], dim=-1), torch.cat([k_r, k_z, dn], dim=-1), z


def gru_push(
    coefficients: tuple[Tensor, ...], dxw: Tensor | None, dhw: Tensor, dstate: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    # dh' = (1-z) act'(pre) (dx_n + r dh_n + h_n dr) + (h - n) dz + z dh,  dr = r(1-r)(dx_r + dh_r), dz likewise
    of_hw, of_xw, z = coefficients
    d_r, d_z, d_n = (of_hw * dhw if dxw is None else torch.addcmul(of_hw * dhw, of_xw, dxw)).chunk(3, dim=-1)
    return (torch.addcmul(d_r.add(d_z).add_(d_n), z, dstate[0]),)


def gru_pull(coefficients: tuple[Tensor, ...], dstate: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple]:
    # gru_push transposed: each of the three blocks of dhw and dxw takes dh' through its factor; the
    # old h gets z dh' directly, the rest through hw
    of_hw, of_xw, z = coefficients
    (dh,) = dstate
    spread = torch.cat([dh, dh, dh], dim=-1)
    return of_hw * spread, of_xw * spread, (z * dh,)
