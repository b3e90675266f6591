"""Shared helpers: build a model the way a run does, and run the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.cli.configs import register
from harness.core import networks
from harness.core.cells import RecurrentNet
from harness.core.init import initialise
from harness.core.tasks import probe

ROOT = Path(__file__).resolve().parents[1]
register()  # tests compose configs with Hydra (initialize_config_dir), as the entry point does after this


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' tensors are small, and pytest-xdist runs a worker per core: torch's intra-op threads
    (one per core, in each worker) only spin-wait on one another. With two workers on two cores, a
    recording test took 4 s alone and up to 54 s beside another. Each test process computes on one
    thread, as the sweep's forked figure workers do; subprocess runs are untouched."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def figures_in_this_process(monkeypatch):
    """pytest-xdist already runs a worker per core: figures drawn in more processes would only crowd
    the machine (and the timing of the interrupt tests), and spies on plots.save see only this
    process. The test of drawing in workers asks for them by make_figures(workers=2)."""
    from harness.lab import figures as plots

    monkeypatch.setattr(plots, "PARALLEL_FIGURES", float("inf"))


def build(
    cell: str,
    activation: str = "tanh",
    init: str = "default",
    scale: float = 1.0,
    hidden_size: int = 6,
    input_size: int = 4,
    num_layers: int = 1,
    seq_len: int = 12,
    batch_size: int = 3,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
):
    """A model and a probe batch, made as harness.lab.run makes them."""
    generator = torch.Generator().manual_seed(seed)
    model = networks.build(cell, activation, input_size, hidden_size, num_layers, {}).double()
    initialise(model, init, scale, generator)
    batch = probe(seq_len, batch_size, generator, input_size=input_size, hidden_size=hidden_size)
    return model.to(dtype), batch.to("cpu", dtype)


def unroll(model: RecurrentNet, batch):
    """States S_0..S_T and the probe loss on the real graph."""
    states = model(batch.inputs, model.initial_state(batch.inputs.shape[1]))
    return states, batch.loss(model.top_hidden(states[-1]).unsqueeze(0))


def cli_env(**faults: float) -> dict[str, str]:
    """The environment of a CLI subprocess; faults (scale=, sleep=) as tests/faults/sitecustomize.py reads them."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    if faults:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests" / "faults"), env.get("PYTHONPATH")]))
        env.update({f"HARNESS_FAULT_{name.upper()}": str(value) for name, value in faults.items()})
    return env


def run_cli(
    *args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in a subprocess, as a user types it."""
    env = env or cli_env()
    result = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def read_profile(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "profile.parquet")


@pytest.fixture
def tmp_results(tmp_path: Path) -> Path:
    return tmp_path


GRID = ["-m", "cell=rnn,gru", "scale=0.5,1,2,3", "seq_len=8", "hidden_size=4", "batch_size=3"]
KEYS = ["run_id", "layer", "state", "t", "step"]
TIMINGS = ["wall_time_s", "startup_s"]  # seconds measured, not computed: they differ from sweep to sweep


def tables(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweep's profile and summary, in a fixed row order, without the timings."""
    profile = pd.read_parquet(sweep_dir / "profile.parquet").sort_values(KEYS).reset_index(drop=True)
    summary = pd.read_parquet(sweep_dir / "summary.parquet").drop(columns=TIMINGS)
    return profile, summary.sort_values("run_id").reset_index(drop=True)


def assert_same_tables(left: Path, right: Path) -> None:
    for a, b in zip(tables(left), tables(right)):
        pd.testing.assert_frame_equal(a, b)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """GRID through the default (fast, in-process) path: the numbers every other path must give."""
    out = tmp_path_factory.mktemp("reference")
    result = run_cli(*GRID, f"hydra.sweep.dir={out}", cwd=out.parent)  # never a sweep into the current folder
    return out, result
