"""Whole-sequence rnn and gru layers with their backpropagation through time written out: what
training runs through on the CPU, where torch's own nn.RNN / nn.GRU are slow.

    outputs = train_forward(net)(inputs)       # (T, B, H): the top layer's h at every step

On a CPU, torch runs nn.LSTM through oneDNN's fused kernel, but nn.GRU and nn.RNN step by step
through generic autograd: at hidden 32, batch 32, 100 steps, a gru training step (forward and
backward) took 23.7 ms against the lstm's 3.6 ms. Here each layer is one autograd Function over the
whole sequence: the forward loop is the cell's own few ops per step, writing its gates into buffers
kept for the backward; the backward computes each step's elementwise factors for all steps at once,
leaves the loop one product per gate and the recurrent matmul, and forms the weight gradients with
one matmul over every step. Shapes: x_proj (T, B, G*H) = x W_ih^T + b_ih (by autograd, outside),
h0 (B, H), w_hh (G*H, H), b_hh (G*H) or None. Tested against torch.nn.RNN / GRU's outputs and every
gradient in float64; the equations are torch's (gates r, z, n in its order, b_hn inside the reset
gate's product), so runs train through these exactly where they would through torch's modules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.cells import RecurrentNet


class RNNSequence(torch.autograd.Function):
    """h_t = act(x_proj_t + h_{t-1} W_hh^T + b_hh), act tanh or relu."""

    @staticmethod
    def forward(ctx, x_proj: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, relu: bool) -> Tensor:
        drive = x_proj if b_hh is None else x_proj + b_hh
        states = x_proj.new_empty((x_proj.shape[0] + 1, *h0.shape))  # h_0 .. h_T
        states[0] = h0
        w_t = w_hh.t()
        for x, h, h_new in zip(drive.unbind(0), states[:-1].unbind(0), states[1:].unbind(0)):
            pre = torch.addmm(x, h, w_t)
            if relu:
                torch.clamp_min(pre, 0, out=h_new)
            else:
                torch.tanh(pre, out=h_new)
        ctx.save_for_backward(states, w_hh)
        ctx.relu, ctx.bias = relu, b_hh is not None
        return states[1:]

    @staticmethod
    def backward(ctx, grad_outputs: Tensor):
        states, w_hh = ctx.saved_tensors
        h = states[1:]
        slopes = (h > 0).to(h.dtype) if ctx.relu else 1 - h * h  # act' at every step, all at once
        grad_pre = torch.empty_like(h)
        carried = torch.zeros_like(states[0])
        for grad_out, slope, pre in reversed(list(zip(grad_outputs.unbind(0), slopes.unbind(0), grad_pre.unbind(0)))):
            torch.mul(carried + grad_out, slope, out=pre)
            carried = pre @ w_hh
        flat_pre, flat_h = grad_pre.flatten(0, 1), states[:-1].flatten(0, 1)
        return (grad_pre, carried, flat_pre.t() @ flat_h, flat_pre.sum(0) if ctx.bias else None, None)


class GRUSequence(torch.autograd.Function):
    """torch.nn.GRU's step: r, z = sigmoid(x_r + h W_hr^T + b_hr), sigmoid(...); n = tanh(x_n + r (h W_hn^T
    + b_hn)); h_t = (1 - z) n + z h_{t-1}."""

    @staticmethod
    def forward(ctx, x_proj: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
        steps, (batch, hidden) = x_proj.shape[0], h0.shape
        states = x_proj.new_empty((steps + 1, batch, hidden))  # h_0 .. h_T
        hw = x_proj.new_empty((steps, batch, 3 * hidden))  # h_{t-1} W_hh^T + b_hh, kept for the backward
        gates = x_proj.new_empty((steps, batch, 2 * hidden))  # r, z
        new = x_proj.new_empty((steps, batch, hidden))  # n
        states[0] = h0
        w_t, two = w_hh.t(), 2 * hidden
        # Every step's views made once (unbind), not indexed step by step: at these sizes indexing costs
        # as much as the arithmetic.
        for h, x_rz, x_n, out_hw, hw_rz, hw_n, rz, r, z, n, h_new in zip(
            states[:-1].unbind(0),
            x_proj[..., :two].unbind(0),
            x_proj[..., two:].unbind(0),
            hw.unbind(0),
            hw[..., :two].unbind(0),
            hw[..., two:].unbind(0),
            gates.unbind(0),
            gates[..., :hidden].unbind(0),
            gates[..., hidden:].unbind(0),
            new.unbind(0),
            states[1:].unbind(0),
        ):
            if b_hh is None:
                torch.mm(h, w_t, out=out_hw)
            else:
                torch.addmm(b_hh, h, w_t, out=out_hw)
            torch.sigmoid(x_rz + hw_rz, out=rz)
            torch.tanh(torch.addcmul(x_n, r, hw_n), out=n)
            torch.lerp(n, h, z, out=h_new)  # n + z (h - n)
        ctx.save_for_backward(states, hw, gates, new, w_hh)
        ctx.bias = b_hh is not None
        return states[1:]

    @staticmethod
    def backward(ctx, grad_outputs: Tensor):
        states, hw, gates, new, w_hh = ctx.saved_tensors
        hidden = new.shape[-1]
        r, z, h_n = gates[..., :hidden], gates[..., hidden:], hw[..., 2 * hidden :]
        # Each step's factors from dL/dh_t to its pre-activations, for all steps at once.
        to_n = (1 - z) * (1 - new * new)  # to n's pre-activation
        to_z = (states[:-1] - new) * z * (1 - z)  # to z's
        to_r = h_n * r * (1 - r)  # from n's pre-activation to r's
        grad_hw = torch.empty_like(hw)  # dL/d(h W_hh^T + b_hh): r, z, n blocks
        grad_pre_n = torch.empty_like(new)  # dL/d(n's pre-activation) = dL/dx_n
        carried = torch.zeros_like(states[0])
        steps = zip(
            grad_outputs.unbind(0),
            to_n.unbind(0),
            to_r.unbind(0),
            to_z.unbind(0),
            r.unbind(0),
            z.unbind(0),
            grad_pre_n.unbind(0),
            grad_hw.unbind(0),
            grad_hw[..., :hidden].unbind(0),
            grad_hw[..., hidden : 2 * hidden].unbind(0),
            grad_hw[..., 2 * hidden :].unbind(0),
        )
        for grad_out, n_t, r_from_n, z_t, r_t, z_gate, pre_n, all_hw, hw_r, hw_z, hw_n in reversed(list(steps)):
            grad_h = carried + grad_out
            torch.mul(grad_h, n_t, out=pre_n)
            torch.mul(pre_n, r_from_n, out=hw_r)
            torch.mul(grad_h, z_t, out=hw_z)
            torch.mul(pre_n, r_t, out=hw_n)
            carried = torch.addmm(grad_h * z_gate, all_hw, w_hh)
        grad_x = torch.cat([grad_hw[..., : 2 * hidden], grad_pre_n], dim=-1)
        flat_hw, flat_h = grad_hw.flatten(0, 1), states[:-1].flatten(0, 1)
        return grad_x, carried, flat_hw.t() @ flat_h, flat_hw.sum(0) if ctx.bias else None


TORCH_EQUATIONS = {"rnn": ("tanh", "relu"), "lstm": ("tanh",), "gru": ("tanh",)}  # cell -> activations torch has


def to_torch(net: RecurrentNet) -> nn.RNNBase | None:
    """The fused torch.nn module computing `net`'s equations on `net`'s own parameters (shared, so
    training either trains both), or None where the equations are not torch's (activations other than
    tanh, and relu for the rnn). The inverse of harness.lab.api.from_torch."""
    if net.activation not in TORCH_EQUATIONS.get(net.cell_name, ()):
        return None
    kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[net.cell_name]
    options = {"nonlinearity": net.activation} if net.cell_name == "rnn" else {}
    p = net.weight_hh_l0
    module = kind(
        net.input_size, net.hidden_size, net.num_layers, bias=net.bias, device=p.device, dtype=p.dtype, **options
    )
    for name, _ in list(module.named_parameters()):
        module._parameters[name] = getattr(net, name)  # net's own Parameter, shared
    module._init_flat_weights()  # torch's fused kernel reads this list of the parameters
    return module


def train_forward(net: RecurrentNet) -> Callable[[Tensor], Tensor] | None:
    """inputs (T, B, I) -> the top layer's h at every step (T, B, H), from h_0 = 0, through this
    module's sequences for a tanh/relu rnn or a tanh gru on the CPU, else through torch's own fused
    module where the equations are torch's (to_torch; on a GPU, cuDNN's), else None."""
    if net.activation not in TORCH_EQUATIONS.get(net.cell_name, ()):
        return None
    if net.cell_name in ("rnn", "gru") and net.weight_hh_l0.device.type == "cpu":

        def forward(inputs: Tensor) -> Tensor:
            outputs = inputs
            for layer in range(net.num_layers):
                x_proj = F.linear(outputs, getattr(net, f"weight_ih_l{layer}"), getattr(net, f"bias_ih_l{layer}"))
                h0 = x_proj.new_zeros((inputs.shape[1], net.hidden_size))
                w_hh, b_hh = getattr(net, f"weight_hh_l{layer}"), getattr(net, f"bias_hh_l{layer}")
                outputs = (
                    RNNSequence.apply(x_proj, h0, w_hh, b_hh, net.activation == "relu")
                    if net.cell_name == "rnn"
                    else GRUSequence.apply(x_proj, h0, w_hh, b_hh)
                )
            return outputs

        return forward
    module = to_torch(net)
    return lambda inputs: module(inputs)[0]
