"""User cells: a cell defined outside the package, named by a config's _target_, run by the real
command line from the user's folder, both recorders, against autograd with retain_grad."""

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from harness.core.errors import ConfigError
from harness.core.spec import config_columns
from tests.conftest import ROOT, run_cli

SIZES = dict(seq_len=20, hidden_size=5, input_size=3, batch_size=4, seed=0)


def independent_log10(scale: float, leak: float, activation: str) -> np.ndarray:
    """Batch median over samples of log10 ||dL/dh_t||, t = 0..T, by torch autograd on the unrolled
    loop with retain_grad, rebuilding the run's cell, inputs and probe readout as documented: the cell
    built under torch.manual_seed(seed), then the probe's generator draws the inputs and readout."""
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        LeakyCell = importlib.import_module("leaky_cell").LeakyCell
    finally:
        sys.path.remove(str(ROOT / "examples"))
    torch.manual_seed(SIZES["seed"])
    cell = LeakyCell(SIZES["input_size"], SIZES["hidden_size"], leak=leak, activation=activation).double()
    with torch.no_grad():
        cell.weight_hh.mul_(scale)
    generator = torch.Generator().manual_seed(SIZES["seed"])
    x = torch.randn(
        SIZES["seq_len"], SIZES["batch_size"], SIZES["input_size"], generator=generator, dtype=torch.float64
    )
    readout = torch.randn(SIZES["hidden_size"], generator=generator, dtype=torch.float64)
    readout /= readout.norm()
    hs = [torch.zeros(SIZES["batch_size"], SIZES["hidden_size"], dtype=torch.float64, requires_grad=True)]
    for t in range(SIZES["seq_len"]):
        hs.append(cell(x[t], hs[-1]))
        hs[-1].retain_grad()
    (hs[-1] @ readout).sum().backward()
    log10 = np.stack([h.grad.norm(dim=1).log10().numpy() for h in hs])  # (T+1, batch)
    return np.quantile(log10, 0.5, axis=1, method="nearest")


def test_user_cell_from_a_config_in_the_users_folder(tmp_path):
    shutil.copy(ROOT / "examples" / "leaky_cell.py", tmp_path)
    (tmp_path / "conf" / "cell").mkdir(parents=True)
    (tmp_path / "conf" / "cell" / "leaky.yaml").write_text(
        "name: leaky\n_target_: leaky_cell.LeakyCell\nkwargs:\n  leak: 0.3\n  activation: identity\n"
    )
    sizes = [f"{k}={v}" for k, v in SIZES.items()]
    run_cli(
        "-m",
        "cell=leaky",
        "recorder=exact,autograd",
        "scale=0.5,1.5",
        "dtype=float64",
        *sizes,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    summary = pd.read_csv(tmp_path / "sweep" / "summary.csv")
    assert len(summary) == 4 and (summary.status == "ok").all() and (summary.cell == "leaky").all()
    assert (summary["cell.kwargs.leak"] == 0.3).all()
    profile = pd.read_parquet(tmp_path / "sweep" / "profile.parquet")
    for (scale, recorder), run in profile.groupby(["scale", "recorder"]):
        measured = run.sort_values("t").log10_norm.to_numpy()
        expected = independent_log10(scale, 0.3, "identity")
        assert np.abs(measured - expected).max() < 1e-6, (scale, recorder)
    # The cell is linear in its state: theory's linear rate is ln rho(J), J = (1 - leak) I + leak W_hh.
    torch.manual_seed(0)
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        from leaky_cell import LeakyCell
    finally:
        sys.path.remove(str(tmp_path))
    w = LeakyCell(3, 5, leak=0.3, activation="identity").weight_hh.detach().double().numpy()
    for row in summary.itertuples():
        jacobian = 0.7 * np.eye(5) + 0.3 * row.scale * w
        assert row.theory_linear == pytest.approx(math.log(np.abs(np.linalg.eigvals(jacobian)).max()), abs=1e-9)
        assert math.isfinite(row.theory_lyapunov) and math.isnan(row.theory_mean_field)


def test_user_cell_on_the_command_line_without_a_file(tmp_path):
    shutil.copy(ROOT / "examples" / "leaky_cell.py", tmp_path)
    run_cli(
        "cell._target_=leaky_cell.LeakyCell",
        "seq_len=6",
        "hidden_size=4",
        "input_size=3",
        "batch_size=2",
        "init=gaussian",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    # init=gaussian means nothing for a cell that initialises itself: recorded, not guessed
    assert summary.cell.tolist() == ["LeakyCell"] and summary.status.tolist() == ["not_applicable"]


@pytest.mark.parametrize(
    "config,message",
    [
        (
            {"cell": {"name": "mine"}},
            "cell=mine: expected one of rnn, lstm, gru, lru, indrnn, minimal, mingru, minlstm, selective, "
            "or a user cell",
        ),
        ({"cell": {"name": "rnn", "kwargs": {"units": 3}}}, "cell.kwargs: cell=rnn is built in"),
        ({"cell": {"name": "x", "_target_": "not a path"}}, "cell._target_=not a path: expected an import path"),
    ],
)
def test_user_cell_config_errors(config, message):
    base = {
        "name": "t",
        "remedy": "none",
        "init": {"name": "default"},
        "task": {"name": "probe"},
        "activation": "tanh",
        "scale": 1.0,
        "seq_len": 5,
        "hidden_size": 2,
        "input_size": 2,
        "num_layers": 1,
        "batch_size": 1,
        "seed": 0,
        "recorder": "exact",
        "dtype": "float32",
        "device": "cpu",
    }
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_columns({**base, **config})


def test_examples_run_smoke_sized(tmp_path, monkeypatch):
    import runpy

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setattr("sys.argv", ["record_lstm.py", "--smoke", "--out", str(tmp_path / "out")])
    runpy.run_path(str(ROOT / "examples" / "record_lstm.py"), run_name="__main__")
    assert (tmp_path / "out" / "lstm_gru.png").exists() and (tmp_path / "out" / "LSTM" / "DONE").exists()
    monkeypatch.setattr("sys.argv", ["leaky_cell.py"])
    runpy.run_path(str(ROOT / "examples" / "leaky_cell.py"), run_name="__main__")


class MinGRUCell(torch.nn.Module):
    """minGRU (Feng et al. 2024): h_t = (1 - z_t) h_{t-1} + z_t h~_t, z_t and h~_t from x_t alone: affine
    in its state, with a Jacobian diag(1 - z_t) that depends on the input."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.gate, self.candidate = torch.nn.Linear(input_size, hidden_size), torch.nn.Linear(input_size, hidden_size)

    def forward(self, x_t, h):
        z = torch.sigmoid(self.gate(x_t))
        return (1 - z) * h + z * self.candidate(x_t)


def test_theory_note_names_an_input_dependent_jacobian():
    """Issue 27, item 4: the note said "needs a step affine in its state" for a cell that is affine in it."""
    from harness.core.cells import CellNet

    torch.manual_seed(0)
    x = torch.randn(5, 2, 3)
    generator = torch.Generator().manual_seed(0)
    note = CellNet([MinGRUCell(3, 4)], 3).linear_rate(x, generator)
    assert isinstance(note, str) and "affine in its state but its Jacobian depends on the input" in note, note
    tanh_note = CellNet([torch.nn.RNNCell(3, 4)], 3).linear_rate(x, generator)
    assert "its Jacobian changes with the state" in tanh_note, tanh_note
