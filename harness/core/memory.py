"""What a run needs in memory, estimated from its columns before anything is built, and what is free.

    parameters   the network built in float64 then cast (its gradients and Adam's two moments when it trains)
    inputs       the held-out batch (a probe too large to hold streams it) and each training batch
    recording    one segment's graph (or, written out, its steps' Jacobian coefficients), the states
                 kept at segment starts, the per-step log norms
    training     what the whole-sequence forward keeps for its backward (training is not segmented)
    units        record.units: one in-memory graph of the whole sequence and the per-unit rows
    theory       the eigenvalues of the bottom layer's recurrent matrix (LAPACK's working copies)
    tables       the profile table, a row per step, state and recording

The parts are deliberately generous (harness.core.segments' graph estimate carries a ~2x margin):
the estimate refuses only what cannot fit; a run it lets through may still be large. The network is
built on torch's "meta" device, which allocates nothing, so parameter counts are exact for the
built-in cells; a user cell's are not counted (its constructor is its own business).
"""
from __future__ import annotations

import math
import os
from typing import Any

import torch

from harness.core.cells import RecurrentNet, StackedNet
from harness.core.errors import ConfigError
from harness.core.networks import meta_network
from harness.core.recorders import written_out
from harness.core.tasks import CHUNK, MAX_HELD_INPUTS, TASKS

MIN_SEGMENT = 64  # fewer steps per segment cost more in Python overhead than they save in memory
MAX_SEGMENT = 8192  # steps per segment at most where there are several: longer ones only cost memory (and
                   # graphs of ~3e4 hooked steps crash)
STEP_OBJECT_BYTES = 8192  # a written-out step's Python objects and small tensors (~5 KB measured), generously
GRAPH_BYTES_PER_VALUE = 24  # autograd's saved tensors per state entry per step, measured on the lstm (~2x margin)
GRAPH_BYTES_PER_STEP = 16_384  # autograd nodes, hooks and Python objects per step, whatever the width
TABLE_BYTES_PER_ROW = 600  # a profile row: ~40 config columns and 5 quantiles, in pandas
# Which keys to change when a part is too large, the first one named in the message.
KEYS = {"parameters": ("hidden_size", "num_layers"), "inputs": ("seq_len", "batch_size", "input_size"),
        "recording": ("seq_len", "batch_size", "memory.fraction"), "training": ("seq_len", "batch_size", "hidden_size"),
        "theory": ("hidden_size",), "tables": ("seq_len", "train.record_every"), "units": ("seq_len", "batch_size")}


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or 4 GiB if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _graph_bytes(state: int, n_params: int, batch_size: int, itemsize: int) -> int:
    width = state + n_params // max(state, 1)
    return GRAPH_BYTES_PER_VALUE * batch_size * width * itemsize + GRAPH_BYTES_PER_STEP


def graph_bytes_per_step(net: StackedNet, batch_size: int, itemsize: int) -> int:
    """A generous estimate of one recorded step's graph: saved tensors and per-node overhead."""
    return _graph_bytes(sum(net.block_sizes), sum(p.numel() for p in net.parameters()), batch_size, itemsize)


def coefficient_bytes_per_step(net: RecurrentNet, batch_size: int, itemsize: int) -> int:
    """What the written-out recorder keeps of one step, its Jacobian coefficients, twice over: their
    sizes read off one step of one sample (on torch's meta device for a meta network, allocating
    nothing)."""
    p = next(net.parameters())
    with torch.no_grad():
        drive = net.input_drive(torch.zeros(1, 1, net.input_size, dtype=p.dtype, device=p.device))[0]
        _, internals = net.linearised_step(net.initial_state(1).detach(), drive)
        values = sum(c.numel() for layer in net.coefficients(internals) for c in layer)
    return 2 * values * batch_size * itemsize + STEP_OBJECT_BYTES


def recording_bytes_per_step(net: StackedNet, batch_size: int, itemsize: int, recorder: str) -> tuple[int, bool]:
    """(bytes one recorded step holds, whether a sequence that fits may be one segment): a written-out
    step's coefficients, kept by the forward pass so that nothing is computed twice; or a step of
    graph, never more than MAX_SEGMENT of them."""
    if written_out(net, recorder):
        return coefficient_bytes_per_step(net, batch_size, itemsize), True
    return graph_bytes_per_step(net, batch_size, itemsize), False


def _segment(per_step: int, whole: bool, seq_len: int, memory_fraction: float, segment: int | None,
             available: int) -> int:
    if segment is None:
        fits = int(memory_fraction * available // per_step)
        if whole and fits >= seq_len:
            return seq_len
        segment = max(MIN_SEGMENT, min(fits, MAX_SEGMENT))
    return max(1, min(segment, seq_len))


def segment_length(net: StackedNet, seq_len: int, batch_size: int, itemsize: int, recorder: str,
                   memory_fraction: float, segment: int | None = None) -> int:
    """Steps per segment: `segment` if given; else the whole sequence if the written-out recorder can
    hold it in a memory_fraction of the available memory (recording_bytes_per_step); else as many
    steps as that holds, between MIN_SEGMENT and MAX_SEGMENT, and never more than seq_len."""
    if segment is not None:
        return max(1, min(segment, seq_len))
    per_step, whole = recording_bytes_per_step(net, batch_size, itemsize, recorder)
    return _segment(per_step, whole, seq_len, memory_fraction, None, available_memory())


def estimate(columns: dict[str, Any], available: int) -> dict[str, int]:
    """Bytes each part of a run needs at its peak (see the module docstring), from validated columns,
    with the segment length the recorder would pick given `available` bytes."""
    itemsize = 8 if columns["dtype"] == "float64" else 4
    seq_len, batch, hidden = columns["seq_len"], columns["batch_size"], columns["hidden_size"]
    task = TASKS[columns["task"]]
    inputs = task.input_size or columns["input_size"]
    net = meta_network(columns)
    n_params = sum(p.numel() for p in net.parameters()) if net else 0
    state = sum(net.block_sizes) if net else hidden * columns["num_layers"]
    training = bool(columns.get("train.steps"))
    recordings = 1 + (columns["train.steps"] // columns["train.record_every"] if training else 0)
    steps = seq_len + 21  # copy adds 21 steps of delimiter and recall
    if columns["task"] == "probe":
        held = steps * batch * inputs * 8
        input_bytes = held * (1 + itemsize / 8) if held <= MAX_HELD_INPUTS else 2 * CHUNK * batch * inputs * 8
    else:
        input_bytes = 2 * steps * batch * inputs * (8 + itemsize)  # held out and a training batch, float64 then cast
    parts = len(net.block_sizes) if net else 1
    per_step = _graph_bytes(state, n_params, batch, itemsize)  # also what training's whole-sequence graph holds
    recorded, whole = recording_bytes_per_step(net, batch, itemsize, columns["recorder"]) if net else (per_step, False)
    segment = _segment(recorded, whole, steps, columns.get("memory.fraction", 0.25), columns.get("memory.segment"), available)
    recording = (segment * recorded + math.ceil(steps / segment) * batch * state * itemsize
                 + 3 * steps * batch * parts * 8  # log norms, divisors, sums
                 + (0 if task.final_state_only else 2 * steps * batch * hidden * itemsize))
    return {
        "parameters": n_params * (8 + itemsize * (4 if training else 1)),
        "inputs": int(input_bytes),
        "recording": recording,
        "training": steps * per_step if training else 0,
        "units": steps * (per_step + 2 * batch * state * 8) if columns.get("record.units") else 0,  # one graph
        "theory": 3 * 8 * hidden * hidden  # the bottom layer's recurrent block in float64, twice in LAPACK
        + 4 * (columns.get("theory.spectrum_k") or 1) * batch * state * itemsize,  # tangents and their QR
        "tables": recordings * steps * parts * TABLE_BYTES_PER_ROW,
    }


def size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError


def check_fits(columns: dict[str, Any], available: int | None = None) -> None:
    """Raise ConfigError if the run's estimate exceeds the memory available, naming the key to change."""
    available = available_memory() if available is None else available
    parts = estimate(columns, available)
    total = sum(parts.values())
    if total <= available:
        return
    largest = max(parts, key=parts.get)
    key = KEYS[largest][0]
    detail = ", ".join(f"{name} {size(n)}" for name, n in parts.items() if n >= 0.01 * total)
    raise ConfigError(f"{key}={columns[key]}: the run needs about {size(total)} ({detail}) but "
                      f"{size(available)} of memory is available; expected a smaller {' or '.join(KEYS[largest])}")
