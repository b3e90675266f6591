"""The memory estimate (harness.core.memory): what it counts, what it refuses. In process, no runs;
benchmarks/memory_estimate.py holds the sums to the peak memory of real runs."""

from __future__ import annotations

import pytest

from harness.core import memory
from harness.core.errors import ConfigError
from harness.core.spec import RunSpec, config_columns

GIB = 1 << 30


def columns(**overrides) -> RunSpec:
    config = dict(
        cell="rnn",
        activation="tanh",
        init="default",
        scale=1.0,
        seq_len=100,
        hidden_size=64,
        input_size=64,
        num_layers=1,
        batch_size=32,
        seed=0,
        task="probe",
        recorder="exact",
        dtype="float32",
        device="cpu",
    )
    return RunSpec.from_columns(config_columns({**config, **overrides}))


def test_a_wide_tanh_rnn_that_fits_is_not_refused():
    """hidden 28000: ~9.4 GB of parameters (float64 and the float32 cast), no eigendecomposition."""
    wide = columns(hidden_size=28000)
    memory.check_fits(wide, available=24 * GIB)
    parts = memory.estimate(wide, 24 * GIB)
    assert 9 * 10**9 < sum(parts.values()) < 12 * 10**9


@pytest.mark.parametrize(
    "overrides, decomposes",
    [
        ({}, False),  # tanh: mean field and the carried Lyapunov exponent, no matrix
        ({"activation": "identity", "init": "orthogonal"}, True),  # linear_rate: eigvals of W_hh
        ({"activation": "identity", "num_layers": 2}, False),  # linear_rate needs one layer
        ({"cell": "lru"}, False),  # its rate reads its eigenvalues off a vector
        ({"cell": "lstm", "activation": "identity"}, False),
    ],
)
def test_theory_counts_an_eigendecomposition_only_where_theory_does_one(overrides, decomposes):
    hidden = 2000
    theory = memory.estimate(columns(hidden_size=hidden, **overrides), 24 * GIB)["theory"]
    matrix = 8 * hidden * hidden
    assert (theory > matrix) == decomposes, theory
    assert memory.eigendecomposes(columns(**overrides)) == decomposes


def test_a_float64_run_needs_no_float64_copy_for_its_eigenvalues():
    parts32 = memory.estimate(columns(hidden_size=2000, activation="identity"), 24 * GIB)
    parts64 = memory.estimate(columns(hidden_size=2000, activation="identity", dtype="float64"), 24 * GIB)
    tangents = 4 * 32 * 2000 * (8 - 4)  # the float64 run's Lyapunov tangent is twice as large
    assert parts32["theory"] - parts64["theory"] == 8 * 2000 * 2000 - tangents


def test_the_process_itself_is_counted():
    parts = memory.estimate(columns(seq_len=10, hidden_size=4, batch_size=1), 24 * GIB)
    assert parts["process"] == memory.PROCESS_BYTES
    assert sum(parts.values()) < 1.5 * memory.PROCESS_BYTES  # a tiny run is the process and little else


def test_training_counts_gradients_moments_and_the_whole_sequence():
    at_init = memory.estimate(columns(task="adding", recorder="autograd"), 24 * GIB)
    trained = memory.estimate(
        columns(task="adding", recorder="autograd", **{"train.steps": 10, "train.record_every": 5}), 24 * GIB
    )
    assert at_init["training"] == 0 < trained["training"]
    assert trained["parameters"] > at_init["parameters"]


def test_units_and_the_spectrum_cost_more():
    plain = memory.estimate(columns(), 24 * GIB)
    assert memory.estimate(columns(**{"record.units": True}), 24 * GIB)["units"] > 0 == plain["units"]
    assert memory.estimate(columns(**{"theory.spectrum_k": 16}), 24 * GIB)["theory"] > plain["theory"]


def test_the_written_out_step_keeps_less_than_the_segment_budget():
    """The segment length budgets twice the coefficients; the estimate counts what a step keeps."""
    from harness.core.networks import meta_network

    for cell in ("rnn", "lstm", "gru"):
        net = meta_network(columns(cell=cell, hidden_size=256))
        kept = memory.kept_bytes_per_step(net, 32, 4)
        assert 0 < kept < memory.coefficient_bytes_per_step(net, 32, 4) * 2, cell


def test_a_run_that_cannot_fit_is_refused_in_one_line_naming_the_key():
    with pytest.raises(ConfigError) as refused:
        memory.check_fits(columns(hidden_size=100_000), available=24 * GIB)
    message = str(refused.value)
    assert message.startswith("hidden_size=100000: the run needs about") and "\n" not in message
    with pytest.raises(ConfigError, match=r"^seq_len=.*expected a smaller seq_len"):
        memory.check_fits(
            columns(seq_len=10**6, hidden_size=512, batch_size=256, **{"record.units": True}), available=24 * GIB
        )


def test_nothing_fits_in_no_memory_and_the_process_is_never_the_key_named():
    with pytest.raises(ConfigError) as refused:
        memory.check_fits(columns(seq_len=10, hidden_size=4, batch_size=1), available=10**6)
    assert not str(refused.value).startswith("process")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_step_values_count_what_a_real_step_computes(cell):
    """step_values (the estimate's sizes, counted without running anything) against the coefficients
    and input drive of a real step of one sample, at several depths and widths."""
    import torch

    from harness.core.networks import build

    for num_layers, hidden_size in [(1, 5), (2, 16), (3, 7)]:
        net = build(cell, "tanh", 3, hidden_size, num_layers, {}).double()
        torch.nn.init.normal_(next(net.parameters()))
        with torch.no_grad():
            drive = net.input_drive(torch.randn(1, 1, 3, dtype=torch.float64))[0]
            _, internals = net.linearised_step(net.initial_state(1).detach(), drive)
            coefficients = sum(c.numel() for layer in net.coefficients(internals) for c in layer)
        assert net.step_values() == (coefficients, drive.numel()), (num_layers, hidden_size)


def test_checking_a_whole_sweep_runs_nothing_that_imports_torch_dynamo(tmp_path):
    """The sweep's checks (every job composed, each estimate) run no op on the meta device: its first
    elementwise op imports torch._dynamo, ~1 s and ~70 MB of every sweep's process (docs/benchmarks.md)."""
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    code = (
        "import sys; from harness.cli.main import check_command; "
        "check_command(['-m', 'cell=rnn,lstm,gru', 'num_layers=1,2', 'seq_len=10', 'hidden_size=8', "
        "'hydra.sweep.dir=' + sys.argv[1]], whole_sweep=True); "
        "print('torch' in sys.modules, 'torch._dynamo' in sys.modules)"
    )
    checked = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "sweep")],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.split() == ["True", "False"]  # the networks were built (on the meta device), nothing ran
