"""What a run needs in memory, estimated from its spec before anything is built, and what is free.

    process      the interpreter with torch, pandas, hydra and matplotlib imported (PROCESS_BYTES)
    parameters   the network built in float64 and its cast copy (both are held at the cast), what its
                 init draws beside it (a gaussian W_hh, orthogonal blocks' QR), and when it trains
                 its gradients and Adam's two moments
    inputs       the held-out batch in float64 and its cast (a probe too large to hold streams it),
                 and each training batch
    recording    one segment's graph (or, written out, its steps' Jacobian coefficients and input
                 drives), the states kept at segment starts, the per-step log norms
    training     what the whole-sequence forward keeps for its backward (training is not segmented)
    units        record.units: one in-memory graph of the whole sequence and the per-unit rows
    theory       the eigenvalues of the bottom layer's recurrent matrix, where theory computes them
                 (a one-layer rnn with activation=identity; a user cell's small dense Jacobian), and the
                 Lyapunov tangents and their QR
    tables       the profile table, a row per step, state and recording

The parts are summed: memory a phase frees mostly stays with the process (small tensors are not
returned to the system), so a later phase rarely reuses it. Each part is what a run was measured to
hold (benchmarks/memory_estimate.py compares the sum with the peak resident memory of real runs: at
least it, at most 1.5x it), with the constants below saying what they were measured on. The
estimate refuses what cannot fit; it is not a promise that what fits is quick. The network is built
on torch's "meta" device, which allocates nothing, so parameter counts are exact for the built-in
cells; a user cell's are not counted (its constructor is its own business), and its graph is taken
at the old, generous GRAPH_BYTES_PER_VALUE.

The segment length a recorder picks (segment_length) budgets twice its coefficients' bytes
(coefficient_bytes_per_step) or the generous graph estimate: a margin for the choice, not counted
again in the estimate, which holds the segment the run will pick times what one step really keeps.
"""

from __future__ import annotations

import math
import os

from harness.core.errors import ConfigError
from harness.core.networks import CELL_TYPES, meta_network
from harness.core.protocol import StackedNet
from harness.core.recorders import written_out
from harness.core.spec import RunSpec
from harness.core.tasks import CHUNK, MAX_HELD_INPUTS, TASKS

MIN_SEGMENT = 64  # fewer steps per segment cost more in Python overhead than they save in memory
MAX_SEGMENT = 8192  # steps per segment at most where there are several: longer ones only cost memory (and
# graphs of ~3e4 hooked steps crash)
STEP_OBJECT_BYTES = 8192  # a written-out step's Python objects and small tensors (~5 KB measured), generously
GRAPH_BYTES_PER_VALUE = 24  # autograd's saved tensors per state entry per step, measured on the lstm (~2x margin):
# the segment length's budget, and a user cell's graph in the estimate
GRAPH_BYTES_PER_STEP = 16_384  # autograd nodes, hooks and Python objects per step, whatever the width
TABLE_BYTES_PER_ROW = 600  # a profile row: ~40 config columns and 5 quantiles, in pandas

# What the estimate counts (measured on Linux x86-64, torch 2 on the CPU, glibc malloc; peak RSS by
# clear_refs/VmHWM around each phase of a run, and whole runs by benchmarks/memory_estimate.py):
PROCESS_BYTES = 500 * 10**6  # `python -m harness seq_len=10 hidden_size=4 batch_size=1`: 470 MB peak
KEPT_STEP_BYTES = 3072  # a written-out step beside its coefficients and drive (Renormaliser's norms and
# divisors, tensor objects): rnn at hidden 16, batch 4, 2e5 steps, ~2.2 KB measured
KEPT_STATE_FRACTION = 1.0  # ... and temporaries of the pull back, in (batch, state) tensors per step
# (measured at batch 32: rnn 0.45 at hidden 256, lstm 0.86 at hidden 64, 0.57 at 128)
# A recorded step of autograd graph (the hooked recorders, the lru's, record.units), in (batch, state)
# tensors of the run's dtype: saved tensors, the step's input drive, its state and the backward's
# temporaries, is each built-in cell's CellType.graph_states_per_step (measured at hidden 256, batch
# 32, float32, 3000 steps in one graph).
GRAPH_NODE_BYTES = 8192  # autograd nodes and hooks per step, whatever the width (~5 KB at hidden 16, batch 4)
EIGVALS_COPIES = 1.5  # LAPACK geev's working copy and workspace, in H x H float64 matrices (1.3 measured at 3000)
LAYER_OBJECT_BYTES = 2048  # a layer's module and parameter objects, whatever its width (2-3 KB measured on
# torch's meta device for rnn and lru layers): a floor on what num_layers costs, checked before building them
DEFAULTS = RunSpec()  # each key's default, to tell which key of a part was set large (check_fits)
TRAIN_STATES_PER_STEP = 12.0  # the whole-sequence training forward and backward, (batch, state) per step
LARGER_IS_SMALLER = ("train.record_every",)  # a key whose larger value makes its part smaller
# Which keys shrink a part that is too large (check_fits names the one set furthest above its default).
KEYS = {
    "parameters": ("hidden_size", "num_layers"),
    "inputs": ("seq_len", "batch_size", "input_size"),
    "recording": ("seq_len", "batch_size", "memory.fraction"),
    "training": ("seq_len", "batch_size", "hidden_size", "num_layers"),
    "theory": ("hidden_size",),
    "tables": ("seq_len", "train.steps", "train.record_every"),
    "units": ("seq_len", "batch_size"),
}


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


def coefficient_bytes_per_step(net: StackedNet, batch_size: int, itemsize: int) -> int:
    """What the written-out recorder keeps of one step, its Jacobian coefficients, twice over (their
    sizes from the network's step_values)."""
    return 2 * net.step_values()[0] * batch_size * itemsize + STEP_OBJECT_BYTES


def recording_bytes_per_step(net: StackedNet, batch_size: int, itemsize: int, recorder: str) -> tuple[int, bool]:
    """(bytes one recorded step holds, whether a sequence that fits may be one segment): a written-out
    step's coefficients, kept by the forward pass so that nothing is computed twice; or a step of
    graph, never more than MAX_SEGMENT of them."""
    if written_out(net, recorder):
        return coefficient_bytes_per_step(net, batch_size, itemsize), True
    return graph_bytes_per_step(net, batch_size, itemsize), False


def _segment(
    per_step: int, whole: bool, seq_len: int, memory_fraction: float, segment: int | None, available: int
) -> int:
    if segment is None:
        fits = int(memory_fraction * available // per_step)
        if whole and fits >= seq_len:
            return seq_len
        segment = max(MIN_SEGMENT, min(fits, MAX_SEGMENT))
    return max(1, min(segment, seq_len))


def segment_length(
    net: StackedNet,
    seq_len: int,
    batch_size: int,
    itemsize: int,
    recorder: str,
    memory_fraction: float,
    segment: int | None = None,
) -> int:
    """Steps per segment: `segment` if given; else the whole sequence if the written-out recorder can
    hold it in a memory_fraction of the available memory (recording_bytes_per_step); else as many
    steps as that holds, between MIN_SEGMENT and MAX_SEGMENT, and never more than seq_len."""
    if segment is not None:
        return max(1, min(segment, seq_len))
    per_step, whole = recording_bytes_per_step(net, batch_size, itemsize, recorder)
    return _segment(per_step, whole, seq_len, memory_fraction, None, available_memory())


def kept_bytes_per_step(net: StackedNet, batch_size: int, itemsize: int) -> int:
    """What a written-out recording really holds per step: its coefficients once, the step's input
    drive (a segment's drives are kept until it is pulled back), the pull back's temporaries and the
    small objects."""
    values = sum(net.step_values()) + KEPT_STATE_FRACTION * sum(net.block_sizes)
    return int(values * batch_size * itemsize) + KEPT_STEP_BYTES


def graph_step_bytes(run: RunSpec, net: StackedNet | None, state: int, n_params: int, batch: int, itemsize: int) -> int:
    """What one step of autograd graph really holds (the cell's graph_states_per_step); a user cell's,
    generously."""
    if net is None:
        return _graph_bytes(state, n_params, batch, itemsize)
    return int(CELL_TYPES[run.cell.name].graph_states_per_step * batch * state * itemsize) + GRAPH_NODE_BYTES


def init_bytes(run: RunSpec, net: StackedNet | None) -> int:
    """What the init draws beside the float64 weights, at most (harness.core.init): a gaussian W_hh's
    randn copy; orthogonal_'s flattened draw, Q and R of a gate block; identity's eye."""
    if net is None or run.init.name == "default":
        return 0
    hidden, rows = run.hidden_size, 0
    for name, p in net.named_parameters():
        if name.startswith("weight_hh") and p.dim() == 2:
            rows = max(rows, p.shape[0])
    copies = {"gaussian": rows, "orthogonal": 3 * hidden, "identity": hidden}.get(run.init.name, 0)
    return copies * hidden * 8


def eigendecomposes(run: RunSpec, net: StackedNet | None = None) -> bool:
    """Whether theory.predictions computes eigenvalues of a dense H x H matrix (the network's
    dense_eigenvalues: a one-layer rnn with activation=identity; the lru's, indrnn's and minimal's rates
    read a vector; a user cell's dense Jacobian is at most MAX_JACOBIAN_STATE wide, counted apart).
    net: the run's meta_network, if built already."""
    net = meta_network(run) if net is None else net
    return net is not None and net.dense_eigenvalues


USER_CELL_JACOBIAN_BYTES = 4 * 8 * 1024**2  # theory.affine_step_rate: two 1024^2 Jacobians, eigvals' copies


def _theory_bytes(run: RunSpec, net: StackedNet | None, batch: int, state: int, hidden: int, itemsize: int) -> int:
    """Bytes the theory needs at its peak: Lyapunov tangents, and W_hh's eigenvalues or a user cell's Jacobians."""
    spectrum_k = run.theory.spectrum_k
    theory = 4 * max(spectrum_k, 1) * batch * state * itemsize  # tangents and their QR
    if net is not None and eigendecomposes(run, net):
        # eigvals of W_hh in float64: a copy if the run is float32, LAPACK's own
        theory += int((EIGVALS_COPIES + (itemsize == 4)) * 8 * hidden * hidden)
    elif net is None:
        theory += USER_CELL_JACOBIAN_BYTES
    return theory


def estimate(run: RunSpec, available: int) -> dict[str, int]:
    """Bytes each part of a run needs at its peak (see the module docstring), from a validated spec,
    with the segment length the recorder would pick given `available` bytes."""
    itemsize = 8 if run.dtype == "float64" else 4
    seq_len, batch, hidden = run.seq_len, run.batch_size, run.hidden_size
    task = TASKS[run.task.name]
    inputs = task.input_size or run.input_size
    net = meta_network(run)
    n_params = sum(p.numel() for p in net.parameters()) if net else 0
    state = sum(net.block_sizes) if net else hidden * run.num_layers
    training = bool(run.train.steps)
    recordings = 1 + (run.train.steps // run.train.record_every if training else 0)
    steps = seq_len + (21 if run.task.name == "copy" else 0)  # copy adds 21 steps of delimiter and recall
    # The inputs are drawn in float64 and cast; the float64 draw is freed (and, being large, handed back
    # to the system) before the recording starts, so only what it exceeds the recording by is counted.
    held = steps * batch * inputs * 8
    if run.task.name == "probe" and held > MAX_HELD_INPUTS:  # streamed: a chunk and its drive at a time
        cast, drawn = 2 * CHUNK * batch * inputs * 8, 0
    else:  # the held-out batch; a training task's batches are drawn and cast the same way, one at a time
        cast, drawn = held * itemsize // 8 * (2 if training else 1), held
    parts = len(net.block_sizes) if net else 1
    graph_step = graph_step_bytes(run, net, state, n_params, batch, itemsize)
    # The segment the run will pick (its budget: recording_bytes_per_step), times what a step really keeps.
    budget, whole = (
        recording_bytes_per_step(net, batch, itemsize, run.recorder)
        if net
        else (_graph_bytes(state, n_params, batch, itemsize), False)
    )
    segment = _segment(budget, whole, steps, run.memory.fraction, run.memory.segment, available)
    kept = kept_bytes_per_step(net, batch, itemsize) if net and written_out(net, run.recorder) else graph_step
    recording = (
        segment * kept
        + math.ceil(steps / segment) * batch * state * itemsize
        + 3 * steps * batch * parts * 8  # log norms, divisors, sums
        + (0 if task.final_state_only else 2 * steps * batch * hidden * itemsize)
    )
    theory = _theory_bytes(run, net, batch, state, hidden, itemsize)
    input_bytes = cast + max(0, drawn - recording)
    return {
        "process": PROCESS_BYTES,
        "parameters": n_params * (8 + itemsize * (4 if training else 1)) + init_bytes(run, net),
        "inputs": int(input_bytes),
        "recording": recording,
        "training": steps * (int(TRAIN_STATES_PER_STEP * batch * state * itemsize) + GRAPH_NODE_BYTES)
        if training
        else 0,
        "units": steps * (graph_step + 2 * batch * state * 8) if run.record.units else 0,  # one graph
        "theory": theory,
        "tables": recordings * steps * parts * TABLE_BYTES_PER_ROW,
    }


def size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError


def excess(run: RunSpec, key: str) -> float:
    """How many times its default `key`'s value costs in memory (record_every: the default over it, as
    fewer steps between recordings cost more); 0 where it has no number."""
    value, default = run.value(key), DEFAULTS.value(key)
    if not (isinstance(value, (int, float)) and isinstance(default, (int, float)) and value > 0 and default >= 0):
        return 0.0
    if default == 0:  # train.steps: off by default, so any steps at all are set above it
        return float(value)
    return default / value if key in LARGER_IS_SMALLER else value / default


def shrink(keys: tuple[str, ...]) -> str:
    """'a smaller seq_len or train.steps, or a larger train.record_every': what makes a part smaller."""
    smaller = " or ".join(k for k in keys if k not in LARGER_IS_SMALLER)
    larger = " or ".join(k for k in keys if k in LARGER_IS_SMALLER)
    return ", or ".join(f"a {word} {names}" for word, names in (("smaller", smaller), ("larger", larger)) if names)


def check_fits(run: RunSpec, available: int | None = None) -> None:
    """Raise ConfigError if the run's estimate exceeds the memory available, naming the key to change."""
    available = available_memory() if available is None else available
    layers = run.num_layers * LAYER_OBJECT_BYTES  # before building them for the estimate: 10^8 layers never end
    if layers > available:
        raise ConfigError(
            f"num_layers={run.num_layers}: the run needs more than {size(layers)} for its layers' objects alone "
            f"but {size(available)} of memory is available; expected a smaller num_layers"
        )
    parts = estimate(run, available)
    total = sum(parts.values())
    if total <= available:
        return
    largest = max((part for part in parts if part in KEYS), key=parts.get)  # not the process: no key shrinks it
    key = max(KEYS[largest], key=lambda k: excess(run, k))  # the one set furthest above its default
    detail = ", ".join(f"{name} {size(n)}" for name, n in parts.items() if n >= 0.01 * total)
    raise ConfigError(
        f"{key}={run.value(key)}: the run needs about {size(total)} ({detail}) but "
        f"{size(available)} of memory is available; expected {shrink(KEYS[largest])}"
    )
