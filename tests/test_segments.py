"""Recording in segments: the same numbers as the in-memory recording, whatever the segment length,
for every cell and both recorders; bounded graphs for sequences that crashed in memory."""

import math

import pytest
import torch

import harness
from harness.core import memory, theory
from harness.core.cells import RecurrentNet
from harness.core.init import initialise
from harness.core.memory import segment_length
from harness.core.networks import NETWORKS, build
from harness.core.recorders import record_log_norms
from harness.core.segments import record_profile, segment_coefficients
from harness.core.spec import RunSpec
from harness.lab.run import record

SEQ_LEN = 40


def network(cell: str, num_layers: int = 2):
    model = build(cell, "tanh", 3, 5, num_layers, {}).double()
    initialise(model, "default", 1.1, torch.Generator().manual_seed(0))
    return model


def probe(width: int):
    readout = torch.randn(width, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return lambda outputs: (outputs[-1] @ readout).sum()


def sequence_loss(outputs):
    return outputs.pow(2).mean() + outputs[:, 0].sin().sum()


CASES = [
    (cell, recorder, final)
    for cell in NETWORKS
    for recorder in ("exact", "autograd")
    for final in (True, False)
    if final or recorder == "autograd"
]


@pytest.mark.parametrize("cell,recorder,final_state_only", CASES)
def test_segmented_equals_in_memory_whatever_the_segment_length(cell, recorder, final_state_only):
    model = network(cell)
    x = torch.randn(SEQ_LEN, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss = probe(model.output_size) if final_state_only else sequence_loss
    in_memory, value, finite = record_profile(model, x, loss, final_state_only, recorder, SEQ_LEN)
    assert finite and in_memory.shape == (SEQ_LEN + 1, 3, model.num_parts)
    for segment in (1, 7, 16, 39):
        segmented, segmented_value, _ = record_profile(model, x, loss, final_state_only, recorder, segment)
        # identical, not close: the same operations on the same numbers, -inf where a gradient is 0
        assert torch.equal(segmented, in_memory), (segment, (segmented - in_memory).abs().max())
        assert segmented_value == value


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("segment", [SEQ_LEN, 7])
def test_a_recording_that_carries_the_tangent_records_the_same_and_finds_the_largest_exponent(cell, segment):
    """The tangent rides the recording's forward pass: the recording is unchanged, bit for bit, and
    the exponent is theory.lyapunov_exponent's (a pass of its own with the cells' JVPs, tested against
    autograd Jacobians), on two layers, in memory and in segments."""
    model = network(cell)
    x = torch.randn(SEQ_LEN, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain = record_profile(model, x, probe(model.output_size), True, "exact", segment)[0]
    tangent = theory.CarriedTangent(model, SEQ_LEN, 3, torch.Generator().manual_seed(2), x)
    carried = record_profile(model, x, probe(model.output_size), True, "exact", segment, tangent=tangent)[0]
    assert torch.equal(carried, plain)
    expected = theory.lyapunov_exponent(model, x, torch.Generator().manual_seed(2))
    assert tangent.exponent() == pytest.approx(expected, abs=1e-12)


def test_in_memory_path_equals_autograd_on_the_unrolled_graph():
    """The segment-sized recording against torch.autograd.grad over every S_t of one graph."""
    model = network("lstm")
    x = torch.randn(SEQ_LEN, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss = probe(model.output_size)
    states = model(x, model.initial_state(3))
    grads = torch.autograd.grad(loss(model.top_hidden(states[-1]).unsqueeze(0)), states)
    expected = torch.stack([g.view(3, model.num_parts, -1).norm(dim=-1) for g in grads]).log()
    for segment in (SEQ_LEN, 9):
        measured = record_profile(model, x, loss, True, "exact", segment)[0]
        finite = torch.isfinite(expected)
        assert torch.equal(finite, torch.isfinite(measured))
        assert ((measured - expected)[finite]).abs().max() < 1e-9


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("activation,scale,bias", [("tanh", 0.6, True), ("tanh", 3.0, False), ("relu", 1.2, True)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_written_out_exact_recorder_is_the_one_through_autograds_hooks(cell, activation, scale, bias, dtype):
    """The built-in cells' exact recorder runs its backward written out (recorders.pull_back); the
    reference is the hooks' renormalisation on the real autograd graph (recorders.record_log_norms),
    which the user cells keep. Two layers, vanishing and exploding scales, a relu, no biases, float32,
    in memory and in segments: the same log-norms to rounding, and the same -inf where a gradient is 0."""
    model = RecurrentNet(cell, activation, 3, 5, 2, bias=bias).double()
    initialise(model, "gaussian", scale, torch.Generator().manual_seed(0))
    model = model.to(dtype)
    x = torch.randn(SEQ_LEN, 3, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    readout = torch.randn(5, generator=torch.Generator().manual_seed(3), dtype=dtype)
    states = model(x, model.initial_state(3))
    expected = record_log_norms((model.top_hidden(states[-1]) @ readout).sum(), states, model.block_sizes, "exact")
    spread = expected[torch.isfinite(expected)]
    assert spread.max() - spread.min() > 5  # gradients that vanish or grow by e^5 or more over the sequence
    for segment in (SEQ_LEN, 7):
        measured = record_profile(model, x, lambda out: (out[-1] @ readout).sum(), True, "exact", segment)[0]
        finite = torch.isfinite(expected)
        assert torch.equal(finite, torch.isfinite(measured)) and torch.equal(expected.isnan(), measured.isnan())
        tolerance = 1e-10 if dtype == torch.float64 else 1e-3
        assert (measured - expected)[finite].abs().max() < tolerance, segment


def test_a_user_cell_records_in_segments():
    cell = torch.nn.LSTMCell(3, 4).double()
    x = torch.randn(30, 2, 3, dtype=torch.float64)
    whole = harness.record(cell, x, segment=30)
    assert torch.equal(harness.record(cell, x, segment=4).log_norms, whole.log_norms)


@pytest.mark.parametrize("recorder", ["autograd", "exact"])
def test_segment_length_follows_the_memory_budget(monkeypatch, recorder):
    """Segments hold as many steps as the budget allows, at most MAX_SEGMENT: steps of graph
    (autograd's hooks) or, written out, of Jacobian coefficients, where a sequence that fits whole is
    one segment (its forward pass is then not run twice)."""
    model = network("lstm", num_layers=1)
    per_step, _ = memory.recording_bytes_per_step(model, 32, 4, recorder)
    monkeypatch.setattr(memory, "available_memory", lambda: 4 * 10**6 * per_step)  # 10^6 steps in a quarter
    assert segment_length(model, 10**6, 32, 4, recorder, 0.25) == (
        memory.MAX_SEGMENT if recorder == "autograd" else 10**6
    )
    assert segment_length(model, 10**6 + 1, 32, 4, recorder, 0.25) == memory.MAX_SEGMENT
    assert segment_length(model, 100, 32, 4, recorder, 0.25) == 100  # never longer than the sequence
    monkeypatch.setattr(memory, "available_memory", lambda: 1000 * per_step)
    assert segment_length(model, 10**6, 32, 4, recorder, 0.5) == 500
    monkeypatch.setattr(memory, "available_memory", lambda: 0)
    assert segment_length(model, 10**6, 32, 4, recorder, 0.5) == memory.MIN_SEGMENT
    assert segment_length(model, 10**6, 32, 4, recorder, 0.5, segment=17) == 17  # memory.segment overrides


def test_the_written_out_recorder_keeps_what_the_memory_estimate_says():
    """coefficient_bytes_per_step reads its sizes off one step: twice the bytes that a recording's kept
    coefficients really hold per step (their storages, counted once), plus a fixed allowance."""
    for cell in ("rnn", "lstm", "gru"):
        model = network(cell).float()
        kept = segment_coefficients(model, model.initial_state(32).detach(), model.input_drive(torch.randn(128, 32, 3)))
        held = {
            c.untyped_storage().data_ptr(): c.untyped_storage().nbytes()
            for step in kept
            for layer in step
            for c in layer
        }
        estimate = memory.coefficient_bytes_per_step(model, 32, 4)
        assert 2 * sum(held.values()) / 128 + memory.STEP_OBJECT_BYTES == estimate, cell


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "lru"])
def test_thirty_thousand_steps_record_without_crashing(cell):
    """A 4-unit network over 30,000 steps: the in-memory graph of this length segfaulted torch while
    being freed (the run was lost without a trace). The tanh rnn's exact recorder is written out and
    keeps no graph at all; the lru's goes through autograd's hooks in segments of bounded graphs.
    Both complete with finite norms."""
    columns = dict(
        cell=cell,
        activation="tanh",
        init="default",
        scale=1.0,
        seq_len=30_000,
        hidden_size=4,
        input_size=4,
        num_layers=1,
        batch_size=2,
        seed=0,
        task="probe",
        recorder="exact",
        dtype="float32",
        device="cpu",
    )
    recording = record(RunSpec.from_columns(columns))
    ((_, log_norms),) = recording.profiles
    assert log_norms.shape == (30_001, 2, 1) and torch.isfinite(log_norms).all()
    if cell == "lru":
        assert recording.extras["segment_length"] <= memory.MAX_SEGMENT
    else:  # a vanishing profile: far below float32's range, still finite (the exact recorder's log domain)
        assert log_norms[0].max() / math.log(10) < -300


@pytest.mark.parametrize("segment", [SEQ_LEN, 6])
def test_progress_counts_every_step_forward_and_backward(segment):
    model = network("gru")
    x = torch.randn(SEQ_LEN, 2, 3, dtype=torch.float64)
    done = []
    record_profile(model, x, probe(model.output_size), True, "exact", segment, done.append)
    assert sum(done) == 2 * SEQ_LEN


def test_a_long_single_run_says_how_fast_it_went_where_stderr_is_no_terminal(capsys, monkeypatch):
    from harness.lab import session

    clock = iter(range(0, 1000, 3))  # every reading of the clock 3 s after the last
    monkeypatch.setattr(session.time, "perf_counter", lambda: next(clock))
    with session.step_bar(True, 200, "recording") as update:
        update(200)
    assert capsys.readouterr().err.strip() == "recording: 200 steps in 3.0 s (67 steps/s)"


def test_streamed_inputs_give_the_same_numbers_however_they_are_sliced():
    from harness.core.tasks import CHUNK, StreamedInputs

    stream = StreamedInputs((3 * CHUNK + 17, 2, 3), base_seed=12345)
    whole = stream[0 : stream.shape[0]]
    assert whole.shape == (3 * CHUNK + 17, 2, 3)
    for begin, end in [(0, 5), (CHUNK - 3, CHUNK + 4), (100, 700), (3 * CHUNK, 3 * CHUNK + 17)]:
        assert torch.equal(stream[begin:end], whole[begin:end])
    assert not torch.equal(stream.chunk(0), stream.chunk(1))  # chunks are independent draws


def test_a_probe_too_long_to_hold_streams_its_inputs(monkeypatch):
    """T = 10^6, batch 32, input 64 would need 16 GB of float64 inputs: the probe streams them."""
    from harness.core import tasks

    batch = tasks.probe(10**6, 32, torch.Generator().manual_seed(0), input_size=64, hidden_size=8)
    assert isinstance(batch.inputs, tasks.StreamedInputs) and batch.inputs.shape == (10**6, 32, 64)
    assert batch.inputs[999_990 : 10**6].shape == (10, 32, 64)
    # a run records on streamed inputs as on the same inputs held whole, in segments or not
    monkeypatch.setattr(tasks, "MAX_HELD_INPUTS", 0)
    streamed = tasks.probe(SEQ_LEN, 3, torch.Generator().manual_seed(0), input_size=3, hidden_size=5)
    held = streamed.inputs[0:SEQ_LEN]
    model = network("lstm")
    loss = probe(model.output_size)
    reference = record_profile(model, held, loss, True, "exact", SEQ_LEN)[0]
    for segment in (SEQ_LEN, 7):
        assert torch.equal(record_profile(model, streamed.inputs, loss, True, "exact", segment)[0], reference)


def test_the_suffix_sums_folded_segment_by_segment_are_the_ones_folded_at_once():
    """One suffix sum (recorders.suffix_sums) for the in-memory recording, the segments and the units
    rows: carried from segment to segment, bit for bit the sums of one fold, and what they mean."""
    from harness.core.recorders import suffix_sums

    logs = torch.randn(41, 3, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    whole, total = suffix_sums(logs)
    assert torch.equal(whole[-1], torch.zeros(3, 1)) and torch.allclose(whole[0] + logs[0], total[0])
    assert torch.allclose(whole[10], logs[11:].sum(0))
    for segment in (1, 7, 16):
        parts, carried = [], None
        for end in range(41, 0, -segment):
            sums, carried = suffix_sums(logs[max(end - segment, 0) : end], carried)
            parts.insert(0, sums)
        assert torch.equal(torch.cat(parts), whole) and torch.equal(carried, total)
