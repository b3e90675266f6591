"""Per-unit, per-gate and per-step weight-gradient rows (harness.core.detail) against autograd on an
unrolled graph written out here: retain_grad on every state and recurrent pre-activation, and a
fresh copy of W_hh at every step, whose .grad is that step's contribution C_t."""

import math

import pandas as pd
import pytest
import torch

from harness.core.detail import record_detail
from tests.conftest import build

sig = torch.sigmoid


def unrolled(model, inputs, readout):
    """The textbook equations, step by step; returns states, hw's and W_hh copies, with their grads."""
    hidden, batch = model.hidden_size, inputs.shape[1]
    w_ih, b_ih, w_hh, b_hh = (
        p.detach() for p in (model.weight_ih_l0, model.bias_ih_l0, model.weight_hh_l0, model.bias_hh_l0)
    )
    h = torch.zeros(batch, hidden, dtype=torch.float64)
    c = torch.zeros(batch, hidden, dtype=torch.float64)
    first = torch.cat([h, c], 1) if model.cell_name == "lstm" else h.clone()
    first.requires_grad_()
    h, c = (first[:, :hidden], first[:, hidden:]) if model.cell_name == "lstm" else (first, c)
    states, hws, copies = [first], [], []
    for x in inputs:
        w = w_hh.clone().requires_grad_()
        xw, hw = x @ w_ih.T + b_ih, h @ w.T + b_hh
        hw.retain_grad()
        if model.cell_name == "rnn":
            h = torch.tanh(xw + hw)
        elif model.cell_name == "minimal":  # xw is W_z x + b_z here; V is weight_zh
            z = torch.tanh(xw)
            u = sig(hw + z @ model.weight_zh_l0.detach().T)
            h = u * h + (1 - u) * z
        elif model.cell_name == "lstm":
            i, f, g, o = (xw + hw).chunk(4, 1)
            c = sig(f) * c + sig(i) * torch.tanh(g)
            h = sig(o) * torch.tanh(c)
        else:
            (xr, xz, xn), (hr, hz, hn) = xw.chunk(3, 1), hw.chunk(3, 1)
            r, z = sig(xr + hr), sig(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        state = torch.cat([h, c], 1) if model.cell_name == "lstm" else h
        state.retain_grad()
        if model.cell_name == "lstm":  # the next step reads S_t, so that S_t's gradient is the whole one
            h, c = state[:, :hidden], state[:, hidden:]
        states.append(state)
        hws.append(hw)
        copies.append(w)
    (state[:, :hidden] @ readout).sum().backward()
    return states, hws, copies


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "minimal"])
def test_units_gates_and_weights_are_autograds(cell):
    model, batch = build(cell, scale=1.5, hidden_size=5, input_size=3, seq_len=12, batch_size=3)
    detail = record_detail(model, batch.inputs, batch.loss, contributions=True)
    states, hws, copies = unrolled(model, batch.inputs, batch.readout)
    gates = len(detail.gate_names)
    for t, state in enumerate(states):
        assert torch.allclose(detail.units[t], state.grad.abs().log(), atol=1e-9), t
    for t, (hw, w) in enumerate(zip(hws, copies)):
        per_gate = hw.grad.view(3, gates, 5).norm(dim=-1).log()
        assert torch.allclose(detail.gates[t], per_gate, atol=1e-9), t
        assert torch.allclose(detail.contributions[t, 0], w.grad, atol=1e-12), t
        assert torch.allclose(detail.weights[t], w.grad.view(gates, 5, 5).norm(dim=(1, 2)).log(), atol=1e-9), t
    # The steps' contributions add up to the gradient of the one shared W_hh, as torch computes it.
    states = model(batch.inputs, model.initial_state(3))
    batch.loss(model.top_hidden(states[-1]).unsqueeze(0)).backward()
    assert torch.allclose(detail.contributions.sum(0)[0], model.weight_hh_l0.grad, atol=1e-12)


def test_rows_stay_finite_far_below_float64():
    """Where autograd underflows to 0 (a contracting rnn over 3000 steps: about 1e-900 at the start),
    the rows keep the log magnitudes, and they fall at the rate the recorder measures."""
    model, batch = build("rnn", scale=0.5, hidden_size=6, input_size=4, seq_len=3000, batch_size=2)
    detail = record_detail(model, batch.inputs, batch.loss)
    assert torch.isfinite(detail.units[:-1]).all() and torch.isfinite(detail.weights[1:]).all()
    assert torch.isneginf(detail.weights[0]).all()  # C_1 = dL/dhw_1^T h_0, and h_0 = 0
    assert detail.units[0].max() / math.log(10) < -300
    units = detail.units.logsumexp(-1).median(-1).values  # ln ||dL/dS_t|| (the profile)
    weights = detail.weights[:, 0]
    slope = lambda row: (row[2000] - row[1000]).item() / 1000  # noqa: E731
    assert slope(weights) == pytest.approx(slope(units), abs=0.02)


def test_a_run_writes_unit_and_gate_tables_and_a_sweep_collects_them(tmp_path, reference):
    from omegaconf import OmegaConf

    from harness.lab.results import collect
    from harness.lab.run import run

    config = OmegaConf.load(reference[0] / "0" / ".hydra" / "config.yaml")
    config.record = {"units": True}
    for folder, cell in (("0", "lstm"), ("1", "gru")):
        config.cell.name = cell
        assert run(config, tmp_path / folder) == "ok"
    units, gates = pd.read_parquet(tmp_path / "0" / "units.parquet"), pd.read_parquet(tmp_path / "0" / "gates.parquet")
    seq_len, hidden = config.seq_len, config.hidden_size
    assert len(units) == (seq_len + 1) * 2 * hidden and set(units.state) == {"h", "c"}
    assert len(gates) == seq_len * 4 and list(gates.gate[:4]) == ["i", "f", "g", "o"]
    assert (gates.lag == seq_len - gates.t).all() and units.t.max() == seq_len
    config.cell.name, config.num_layers = "lstm", 2
    assert run(config, tmp_path / "2") == "ok"
    stacked = pd.read_parquet(tmp_path / "2" / "gates.parquet")
    assert len(stacked) == seq_len * 2 * 4 and list(stacked.layer[:8]) == [0] * 4 + [1] * 4
    collect(tmp_path)
    for name, per_run in (("units.parquet", units), ("gates.parquet", gates)):
        table = pd.read_parquet(tmp_path / name)
        assert table.run_id.nunique() == 3
        pd.testing.assert_frame_equal(table[table.run_id == per_run.run_id[0]].reset_index(drop=True), per_run)
    # The figure: a panel per run and layer, the stacked run's two titled by layer.
    from harness.lab import figures as plots

    summary, profile = pd.read_parquet(tmp_path / "summary.parquet"), pd.read_parquet(tmp_path / "profile.parquet")
    (figure,) = plots.plot_gates(pd.read_parquet(tmp_path / "gates.parquet"), profile, summary, tmp_path / "figures")
    assert "a panel per run and layer (4 of 4, 3 runs)" in figure.caption


def test_units_need_a_loss_on_the_last_step():
    from harness.core.errors import ConfigError
    from harness.core.spec import RunSpec, check_run

    columns = dict(cell="rnn", task="copy", recorder="autograd", **{"record.units": True})
    with pytest.raises(ConfigError, match="record.units=true: task=copy has a loss on every step"):
        check_run(RunSpec.from_columns(columns))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "minimal"])
def test_a_stack_s_contributions_are_torch_s_gradient_of_every_layer(cell):
    """Two layers: each layer's hw gradient includes what reaches S_t through the layer above within
    the step (without it the bottom layer's sum is wrong), so the C_t of each layer sum to torch's
    dL/dW_hh of that layer, and the weights rows are their norms, gate block by gate block."""
    model, batch = build(cell, scale=1.5, hidden_size=5, input_size=3, num_layers=2, seq_len=10, batch_size=3)
    detail = record_detail(model, batch.inputs, batch.loss, contributions=True)
    gates = len(detail.gate_names) // 2
    assert detail.gates.shape == (10, 3, 2 * gates) and detail.gate_layers == (0,) * gates + (1,) * gates
    states = model(batch.inputs, model.initial_state(3))
    batch.loss(model.top_hidden(states[-1]).unsqueeze(0)).backward()
    for layer in (0, 1):
        expected = getattr(model, f"weight_hh_l{layer}").grad
        assert torch.allclose(detail.contributions[:, layer].sum(0), expected, atol=1e-12), layer
        norms = detail.contributions[:, layer].reshape(10, gates, 5, 5).norm(dim=(2, 3)).log()
        assert torch.allclose(detail.weights[:, layer * gates : (layer + 1) * gates], norms, atol=1e-9), layer
