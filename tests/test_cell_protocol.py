"""Cells answer for themselves: every built-in cell declares the whole network protocol
(harness.core.protocol) and has its CellType row in the registry; a new cell is one module and its row;
no other core code names a cell; record.units works on every cell (units rows; gates where the cell has gate blocks)."""

import ast
import dataclasses
import importlib
import pkgutil
import sys
import textwrap

import numpy as np
import pytest
import torch

from harness.core import networks, zoo
from harness.core.detail import record_detail
from harness.core.errors import NotApplicable
from harness.core.init import initialise
from harness.core.networks import CellType
from harness.core.protocol import StackedNet
from harness.core.recorders import record_log_norms
from harness.core.spec import VALIDATORS, CellSpec
from harness.core.tasks import probe
from harness.lab.tables import detail_frames
from tests.conftest import ROOT


def build(
    cell: str, scale: float = 1.0, hidden_size: int = 4, input_size: int = 3, seq_len: int = 6, batch_size: int = 2
):
    """A model and a probe batch as a run makes them (the probe reads the network's own output width)."""
    generator = torch.Generator().manual_seed(0)
    model = networks.build(cell, "tanh", input_size, hidden_size, 1, {}).double()
    initialise(model, "default", scale, generator)
    return model, probe(seq_len, batch_size, generator, input_size=input_size, hidden_size=model.output_size)


CELLS = list(networks.CELL_TYPES)
WRITTEN_OUT = ("linearised_step", "step_coefficients", "push_tangent", "pull_cotangent", "step_jvp", "step_values")


def test_the_registry_finds_every_built_in_cell_in_its_order():
    assert CELLS == ["rnn", "lstm", "gru", "lru", "indrnn", "minimal", "mingru", "minlstm", "selective"]
    assert networks.NETWORKS is networks.CELL_TYPES
    assert [networks.cell_style(name) for name in CELLS] == [
        (0, "#0072B2", "W_hh"),
        (1, "#D55E00", "W_hh"),
        (2, "#009E73", "W_hh"),
        (3, "#CC79A7", "|λ|"),
        (4, "#E69F00", "u"),
        (5, "#56B4E9", "W_hh"),
        (6, "#332288", "1−z"),
        (7, "#117733", "f′"),
        (8, "#AA4499", "exp(ΔA)"),
    ]
    assert networks.cell_style("LeakyCell") is None


@pytest.mark.parametrize("name", CELLS)
def test_every_built_in_cell_declares_the_whole_protocol(name):
    cell_type = networks.CELL_TYPES[name]
    assert isinstance(cell_type, CellType) and cell_type.name == name
    assert cell_type.colour.startswith("#") and len(cell_type.colour) == 7 and cell_type.scaled
    assert cell_type.graph_states_per_step > 0
    cell_fields = {f.name: f for f in dataclasses.fields(CellSpec)}
    for option, unset in cell_type.options.items():  # a build option is a cell.<key> whose default is "not set"
        assert cell_fields[option].default == unset, option
    assert all(key in VALIDATORS for key in cell_type.takes), cell_type.takes
    # The command line offers it as cell=<name> (registered from the registry, or a YAML of its own).
    from hydra.core.config_store import ConfigStore  # registered by tests/conftest.py, as harness.cli.main does

    assert (ROOT / "conf" / "cell" / f"{name}.yaml").exists() or f"{name}.yaml" in ConfigStore.instance().repo.get(
        "cell", {}
    )

    model, batch = build(name)
    assert isinstance(model, StackedNet) and model.cell_name == name
    for method in ("initialise_weights", "linear_rate"):  # the two every network must answer itself
        assert getattr(type(model), method) is not getattr(StackedNet, method), method
    rate = model.linear_rate(batch.inputs, torch.Generator().manual_seed(0))
    assert isinstance(rate, str) and rate.startswith("linear: ") or isinstance(rate, float)
    field = model.mean_field("gaussian", 1.0, 1.0)
    assert isinstance(field, str) and field.startswith("mean field: ") or len(field) == 2
    closed = model.closed_form_profile(batch.readout, 6)
    assert isinstance(closed, dict) and all(len(values) == 7 for values in closed.values())
    assert isinstance(model.dense_eigenvalues, bool) and isinstance(model.linear_lyapunov, bool)
    if model.gate_names is not None:  # the units view's gate blocks: torch's layout and a layer_tail
        assert all(isinstance(g, str) for g in model.gate_names) and hasattr(model, "layer_tail")
        assert model.weight_hh_l0.shape[0] == len(model.gate_names) * model.hidden_size
    assert all(hasattr(model, method) for method in WRITTEN_OUT) == model.analytic_jacobian
    # What the cell declares it takes is what its network does.
    assert ("train.flossing_k" in cell_type.takes) == model.analytic_jacobian  # flossing runs on the JVPs
    takes_forget = "cell.forget_bias" in cell_type.takes
    takes_chrono = "cell.chrono_tmax" in cell_type.takes
    for takes, apply in (
        (takes_forget, lambda: model.add_forget_bias(1.0)),
        (takes_chrono, lambda: model.chrono(10, torch.Generator().manual_seed(0))),
    ):
        if takes:
            apply()
        else:
            with pytest.raises(NotApplicable, match="only$"):
                apply()


def test_cell_only_keys_are_what_the_cells_declare():
    from harness.core.spec import CELL_ONLY

    assert CELL_ONLY == {
        "cell.forget_bias": ("lstm",),
        "cell.chrono_tmax": ("lstm", "gru"),
        "cell.r_min": ("lru",),
        "cell.r_max": ("lru",),
        "cell.max_phase": ("lru",),
        "cell.state_size": ("selective",),
        "cell.dt_min": ("selective",),
        "cell.dt_max": ("selective",),
        "train.omega": ("rnn",),
        "train.flossing_k": ("rnn", "lstm", "gru"),
    }
    with pytest.raises(NotApplicable, match="^cell.r_min, cell.r_max and cell.max_phase apply to the lru only$"):
        networks.build("gru", "tanh", 3, 4, 1, {"r_min": 0.5})
    with pytest.raises(NotApplicable, match="^forget_bias applies to the lstm only$"):
        initialise(networks.build("gru", "tanh", 3, 4, 1, {}), "default", 1.0, torch.Generator(), forget_bias=1.0)
    with pytest.raises(NotApplicable, match="^chrono init applies to the lstm and gru only$"):
        initialise(networks.build("lru", "tanh", 3, 4, 1, {}), "default", 1.0, torch.Generator(), chrono_tmax=5)


# Core code outside the cells' own modules and their rows names no cell. Allowed: the bridges to torch's
# own nn.RNN / nn.LSTM / nn.GRU classes (which exist for those three equations only), and the default cell.
ALLOWED = {
    "api.py": "torch's module classes",
    "sequences.py": "torch's fused modules",
    "spec.py": "the default",
    "networks.py": "the registry's rows",
}


def test_no_core_code_outside_the_cells_names_a_cell():
    found = []
    for path in sorted((ROOT / "harness" / "core").rglob("*.py")):
        if "zoo" in path.parts or path.name in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in networks.CELL_TYPES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "ask the cell's protocol instead (harness.core.protocol): " + "; ".join(found)
    spec = (ROOT / "harness" / "core" / "spec.py").read_text()
    names = [
        n.value for n in ast.walk(ast.parse(spec)) if isinstance(n, ast.Constant) and n.value in networks.CELL_TYPES
    ]
    assert names == ["rnn"]  # CellSpec's default, nothing else


NEW_CELL = '''
import torch
from harness.core.zoo.hidden import HiddenNet


class LeakyNet(HiddenNet):
    """h_t = h_{t-1} / 2 + act(x_t W^T + b + u * h_{t-1}) / 2."""
    def __init__(self, activation, input_size, hidden_size, num_layers):
        super().__init__("leaky", activation, input_size, hidden_size, num_layers, {"weight_hh": (hidden_size,)})

    def layer_step(self, layer, drive, h):
        return 0.5 * h + 0.5 * self.act(drive + getattr(self, f"weight_hh_l{layer}") * h)

    def initialise_weights(self, init, scale, generator):
        for p in self.parameters():
            p.data.uniform_(-0.5, 0.5, generator=generator)
        for layer in range(self.num_layers):
            getattr(self, f"weight_hh_l{layer}").data.mul_(scale)

    def linear_rate(self, inputs=None, generator=None):
        return "linear: needs a linear step"


def build(name, activation, input_size, hidden_size, num_layers):
    return LeakyNet(activation, input_size, hidden_size, num_layers)
'''


def test_a_new_cell_is_one_module_and_its_row(tmp_path, monkeypatch):
    """A cell's row names its module, which is imported only when a network is built."""
    package = tmp_path / "more_cells"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "leaky.py").write_text(textwrap.dedent(NEW_CELL))
    monkeypatch.syspath_prepend(str(tmp_path))
    row = CellType("leaky", "more_cells.leaky", order=99, colour="#000000", graph_states_per_step=3.0, scaled="u")
    try:
        found = networks.registry([row, *networks.CELLS])
        assert list(found) == [*CELLS, "leaky"] and "more_cells.leaky" not in sys.modules
        net = found["leaky"].build("tanh", 3, 4, 1)
    finally:
        sys.modules.pop("more_cells.leaky", None)
        sys.modules.pop("more_cells", None)
    initialise(net, "default", 0.9, torch.Generator().manual_seed(0))
    x = torch.randn(8, 2, 3, generator=torch.Generator().manual_seed(1))
    detail = record_detail(net, x, lambda outputs: outputs.sum())
    assert detail.units.shape == (9, 2, 4) and detail.gates is None
    for clash in ("name", "order", "colour"):  # each must be unique among the rows
        twin = dataclasses.replace(row, **{clash: getattr(networks.CELLS[0], clash)})
        with pytest.raises(RuntimeError, match=f"two declare the same {clash}"):
            networks.registry([*networks.CELLS, twin])


def test_every_zoo_module_that_builds_a_network_has_a_row():
    """The rows and the modules stay in step: a module with a build is named by a row, and each row's
    module builds the network its name says (test_every_built_in_cell_declares_the_whole_protocol)."""
    building = {
        f"{zoo.__name__}.{module.name}"
        for module in pkgutil.iter_modules(zoo.__path__)
        if hasattr(importlib.import_module(f"{zoo.__name__}.{module.name}"), "build")
    }
    assert building == {row.module for row in networks.CELLS}


@pytest.mark.parametrize("name", CELLS)
def test_record_units_works_on_every_cell(name):
    """The units rows of every built-in cell are the profile's entries, one by one (their norm per block
    is the exact recorder's); gates and weights rows where the cell names gate blocks (the lru's and
    indrnn's recurrences are elementwise: units rows only, and the run writes no gates table)."""
    model, batch = build(name, scale=0.9, hidden_size=4, input_size=3, seq_len=10, batch_size=2)
    detail = record_detail(model, batch.inputs, batch.loss)
    states = model(batch.inputs, model.initial_state(2))
    profile = record_log_norms(
        batch.loss(model.top_hidden(states[-1]).unsqueeze(0)), states, model.block_sizes, "exact"
    )
    per_block = torch.stack(
        [torch.logsumexp(2 * block, dim=-1) / 2 for block in detail.units.split(list(model.block_sizes), dim=-1)],
        dim=-1,
    )
    finite = torch.isfinite(profile)
    assert torch.allclose(per_block[finite], profile[finite], atol=1e-9)
    assert (detail.gates is None) == (model.gate_names is None)
    units, gates = detail_frames(detail, "run", model.state_names, model.block_sizes)
    assert len(units) == 11 * sum(model.block_sizes) and (gates is None) == (detail.gates is None)
    assert np.isfinite(units[units.t < 10].log10_norm.to_numpy()).all()  # at T, an lstm's c gets no gradient


@pytest.mark.parametrize("name", ["lru", "indrnn"])
def test_a_run_with_record_units_on_a_cell_without_gate_blocks_writes_units_only(name, tmp_path):
    import pandas as pd

    from harness.core.spec import RunSpec
    from harness.lab.run import run

    base = dataclasses.asdict(RunSpec())
    config = {
        **base,
        "cell": {**base["cell"], "name": name},
        "record": {"units": True},
        "seq_len": 10,
        "hidden_size": 4,
        "input_size": 3,
        "batch_size": 2,
    }
    assert run(config, tmp_path) == "ok"
    units = pd.read_parquet(tmp_path / "units.parquet")
    assert len(units) == 11 * (8 if name == "lru" else 4) and not (tmp_path / "gates.parquet").exists()
