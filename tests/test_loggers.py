"""The monitor's loggers (harness.lab.loggers), read back with each tool's own reader: TensorBoard's event
files through tensorboard's EventAccumulator, the W&B offline run's transaction log and files, the
parquet log through the harness's own collect and `python -m harness.plot`."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import wandb
from tensorboard.backend.event_processing import event_accumulator
from wandb.proto import wandb_internal_pb2

import harness
from harness.core.errors import ConfigError
from harness.core.runfolder import check_done
from harness.lab.loggers import SCALARS, Parquet, TensorBoard, WandB, scalars
from harness.lab.monitor import Snapshot
from harness.lab.rebuild import plot
from harness.lab.results import collect

STEPS = (0, 2, 4)


def fits_of(profile: harness.GradientProfile) -> list[dict]:
    """profile.fits(), or the same built from fit() where a GradientProfile has no fits() yet."""
    if hasattr(profile, "fits"):
        return profile.fits()
    return [
        {"layer": layer, "state": state, **profile.fit(layer=layer, state=state)}
        for layer in range(profile.log_norms.shape[2] // len(profile.state_names))
        for state in profile.state_names
    ]


def make_snapshots(steps=STEPS, seed: int = 0) -> list[Snapshot]:
    """A 2-layer LSTM recorded by a Monitor at `steps`, its recurrent weights grown between recordings (a
    profile that changes as a trained one does)."""
    torch.manual_seed(seed)
    lstm, inputs = torch.nn.LSTM(4, 8, num_layers=2), torch.randn(30, 3, 4)
    monitor = harness.Monitor(lstm, inputs, name="monitor")
    snapshots = []
    for step in steps:
        snapshots.append(monitor.record(step))
        with torch.no_grad():
            for name, weight in lstm.named_parameters():
                if name.startswith("weight_hh"):
                    weight.mul_(1.3)
    return snapshots


@pytest.fixture(scope="module")
def snapshots() -> list[Snapshot]:
    return make_snapshots()


def zero_snapshot(step: int = 0) -> Snapshot:
    """An RNN whose weights are all zero: no gradient beyond lag 0, so its rate and half-life are nan."""
    rnn = torch.nn.RNN(4, 8)
    with torch.no_grad():
        for weight in rnn.parameters():
            weight.zero_()
    profile = harness.record(rnn, torch.randn(20, 3, 4), name="monitor")
    return Snapshot(step, profile, fits_of(profile))


def expected_scalars(snapshot: Snapshot) -> dict[str, float]:
    return {
        f"gradient/{name}/layer{fit['layer']}_{fit['state']}": fit[name]
        for fit in snapshot.fits
        for name in SCALARS
        if math.isfinite(fit[name])
    }


def test_scalars_leave_out_what_is_not_finite(snapshots):
    first = snapshots[0]
    bent = [dict(fit, rate=math.nan, half_life=math.inf) if fit["layer"] == 0 else fit for fit in first.fits]
    values = scalars(Snapshot(first.step, first.profile, bent))
    assert "gradient/horizon/layer0_h" in values and "gradient/rate/layer1_c" in values
    assert not any(key.startswith(("gradient/rate/layer0", "gradient/half_life/layer0")) for key in values)
    assert len(values) == 3 * 2 * 2 - 2 * 2 and all(math.isfinite(v) for v in values.values())


def read_tensorboard(log_dir: Path) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    )
    accumulator.Reload()
    return accumulator


def check_tensorboard(log_dir: Path, snapshots: list[Snapshot]) -> None:
    """Every finite scalar of every snapshot at its step (float32, as TensorBoard stores them), both
    images at every step, and the over-training image redrawn each time."""
    events = read_tensorboard(log_dir)
    tags = events.Tags()
    steps = [s.step for s in snapshots]
    expected = [expected_scalars(s) for s in snapshots]
    assert set(tags["scalars"]) == set().union(*expected)
    for key in tags["scalars"]:
        written = {event.step: event.value for event in events.Scalars(key)}
        assert written == pytest.approx({s.step: e[key] for s, e in zip(snapshots, expected) if key in e}, rel=1e-6)
    assert set(tags["images"]) == {"gradient/profile", "gradient/profiles_over_training"}
    for tag in tags["images"]:
        images = events.Images(tag)
        assert [image.step for image in images] == steps
        assert all(image.encoded_image_string.startswith(b"\x89PNG") and image.width > 300 for image in images)
        assert len({image.encoded_image_string for image in images}) == len(steps), f"{tag}: redrawn at each step"


def test_tensorboard_writes_the_fits_and_both_images(tmp_path, snapshots):
    logger = TensorBoard(tmp_path / "tb")
    for snapshot in snapshots:
        logger.log(snapshot)
    logger.close()
    check_tensorboard(tmp_path / "tb", snapshots)


def test_tensorboard_skips_a_nan_rate_without_crashing(tmp_path):
    zero = zero_snapshot(step=3)
    (fit,) = zero.fits
    assert math.isnan(fit["rate"]) and math.isnan(fit["half_life"]) and math.isfinite(fit["horizon"])
    logger = TensorBoard(tmp_path / "tb")
    logger.log(zero)
    logger.close()
    events = read_tensorboard(tmp_path / "tb")
    assert events.Tags()["scalars"] == ["gradient/horizon/layer0_h"]
    assert [(e.step, e.value) for e in events.Scalars("gradient/horizon/layer0_h")] == [(3, fit["horizon"])]
    assert [image.step for image in events.Images("gradient/profiles_over_training")] == [3]
    scalars_only = TensorBoard(tmp_path / "scalars", images=False)
    scalars_only.log(zero)
    scalars_only.close()
    events = read_tensorboard(tmp_path / "scalars")
    assert events.Tags()["scalars"] == ["gradient/horizon/layer0_h"] and events.Tags()["images"] == []


# The W&B transaction log (run-<id>.wandb): wandb 0.31 has no Python reader of its own (its Go core
# writes and reads it), so this is its record framing (LevelDB's log format, under a ":W&B" header)
# around wandb's own protobuf records.
BLOCK, HEADER = 32768, 7
FULL, LAST = 1, 4


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B transaction log"
    records, pos, parts = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if left < HEADER or (length == 0 and kind == 0):  # the block's padding
            pos += left
            continue
        if pos + HEADER + length > len(data):  # the service is still writing this record
            break
        parts += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def settled_history(run_dir: Path, rows: int, seconds: float = 30.0) -> list[dict]:
    """wandb_history once it holds `rows` rows: wandb's service process writes the offline file on its
    own time, which on a loaded machine can trail run.finish()."""
    import time

    deadline = time.monotonic() + seconds
    while len(history := wandb_history(run_dir)) < rows and time.monotonic() < deadline:
        time.sleep(0.5)
    return history


def wandb_history(run_dir: Path) -> list[dict]:
    """Every history row (one run.log) of an offline run, keys joined by '/'."""
    (log,) = run_dir.glob("run-*.wandb")
    rows = []
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
    return rows


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """W&B offline, silent, with everything it writes under tmp_path."""
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def check_wandb_row(row: dict, snapshot: Snapshot, run_dir: Path) -> None:
    """A history row holds the snapshot's finite scalars and step, its profile as a table (a line per
    block: the batch median log10 norm at every lag where it is finite) and the over-training image."""
    assert row["gradient/step"] == snapshot.step
    expected = expected_scalars(snapshot)
    assert {k: row[k] for k in row if k.startswith(("gradient/rate", "gradient/half_life", "gradient/horizon"))} == (
        pytest.approx(expected)
    )
    assert row["gradient/profile_table/_type"] == "table-file"
    table = json.loads((run_dir / "files" / row["gradient/profile_table/path"]).read_text())
    assert table["columns"] == ["step", "lineKey", "lineVal"]  # wandb.plot.line_series: x, line, y
    lines = pd.DataFrame(table["data"], columns=["lag", "line", "value"])
    frame = snapshot.profile.to_frame()
    for (layer, state), rows in frame.groupby(["layer", "state"]):
        finite = rows[np.isfinite(rows.log10_norm)].sort_values("lag")
        drawn = lines[lines.line == f"layer{layer}_{state}"]
        assert drawn.lag.tolist() == finite.lag.tolist()
        assert drawn.value.to_numpy() == pytest.approx(finite.log10_norm.to_numpy())
    image = run_dir / "files" / row["gradient/profiles_over_training/path"]
    assert image.read_bytes().startswith(b"\x89PNG")


def test_wandb_offline_run_holds_the_fits_and_the_profile(offline, snapshots):
    logger = WandB(project="harness-test", dir=offline)
    for snapshot in snapshots:
        logger.log(snapshot)
    logger.close()
    (run_dir,) = (offline / "wandb").glob("offline-run-*")
    rows = settled_history(run_dir, len(STEPS))
    assert [row["_step"] for row in rows] == list(STEPS)  # a run it started: logged at the training step
    for row, snapshot in zip(rows, snapshots):
        check_wandb_row(row, snapshot, run_dir)


def test_wandb_logs_into_a_run_it_is_given_at_the_run_s_own_step(offline, snapshots):
    run = wandb.init(project="harness-test", dir=offline)
    for loss in (3.0, 2.0, 1.0, 0.5, 0.25):  # the user's own logging moves the run's step ahead
        run.log({"loss": loss})
    logger = WandB(run=run)
    for snapshot in snapshots[:2]:
        logger.log(snapshot)
    logger.close()
    run.log({"loss": 0.1})  # still open: a run given is the user's to finish
    run.finish()
    (run_dir,) = (offline / "wandb").glob("offline-run-*")
    rows = settled_history(run_dir, 8)  # five of the user's, two of ours, the user's last
    ours = [row for row in rows if "gradient/step" in row]
    assert [row["_step"] for row in rows] == list(range(8)) and [row["gradient/step"] for row in ours] == [0, 2]
    for row, snapshot in zip(ours, snapshots):
        check_wandb_row(row, snapshot, run_dir)


def test_parquet_log_is_a_run_the_harness_reads_and_plots_as_training(tmp_path, snapshots, capsys):
    root = tmp_path / "lm"
    logger = Parquet(root / "monitor")
    for snapshot in snapshots[:2]:
        logger.log(snapshot)
        assert check_done(root / "monitor") is None, "DONE vouches for the files rewritten at each snapshot"
    profile, summary, _ = collect(root)
    expected = pd.concat([s.frame() for s in snapshots[:2]], ignore_index=True)
    pd.testing.assert_frame_equal(profile, expected)
    (row,) = summary.itertuples()
    assert row.status == "ok" and row.run_id == snapshots[0].run_id and row.run_dir == "monitor"
    top = next(f for f in snapshots[1].fits if f["layer"] == 1 and f["state"] == "h")  # the headline: last step
    assert row.rate == pytest.approx(top["rate"]) and row.horizon == top["horizon"]
    assert plot([root], root, []) == 0
    assert (root / "figures" / "training_profiles.png").is_file()
    # the log goes on after a plot (into its parent, or into the run folder itself) and is drawn again
    from harness.cli.plot import main as plot_main

    assert plot_main([str(root / "monitor")]) == 0
    logger.log(snapshots[2])
    logger.close()
    assert plot_main([str(root)]) == 0
    assert "training_profiles.png" in capsys.readouterr().out
    profile, _, _ = collect(root)
    assert sorted(profile.step.unique()) == list(STEPS)
    meta = json.loads((root / "monitor" / "meta.json").read_text())
    assert meta["steps"] == list(STEPS) and meta["source"] == "harness.Monitor"


def test_parquet_log_writes_only_where_the_harness_may(tmp_path, snapshots):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt, which the harness did not write"):
        Parquet(theirs)
    other = Parquet(tmp_path / "other")
    other.log(zero_snapshot())
    assert json.loads((tmp_path / "other" / "meta.json").read_text())["status"] == "zero"
    with pytest.raises(ConfigError, match="holds the finished run"):
        Parquet(tmp_path / "other").log(snapshots[0])  # another run's log is never replaced
    again = Parquet(tmp_path / "other")  # the same run again (a rerun): its log is replaced
    again.log(zero_snapshot(step=5))
    assert json.loads((tmp_path / "other" / "meta.json").read_text())["steps"] == [5]
    mixed = Parquet(tmp_path / "mixed")
    mixed.log(snapshots[0])
    with pytest.raises(ConfigError, match="expected one monitor's snapshots per folder"):
        mixed.log(zero_snapshot(step=2))
    # A rerun of a training whose first snapshot differs (not seeded; another thread count changes the
    # last digits): another recording of the same configuration, whose log it replaces.
    rerun = make_snapshots(steps=(0,), seed=1)[0]
    assert rerun.run_id != snapshots[0].run_id
    Parquet(tmp_path / "mixed").log(rerun)
    assert json.loads((tmp_path / "mixed" / "meta.json").read_text())["run_id"] == rerun.run_id
    # ... but never a run saved by GradientProfile.save, of the same configuration or not
    rerun.profile.save(tmp_path / "saved")
    with pytest.raises(ConfigError, match="holds the finished run"):
        Parquet(tmp_path / "saved").log(make_snapshots(steps=(0,), seed=2)[0])


def test_importing_harness_and_the_loggers_imports_no_logging_library():
    code = (
        "import sys, harness, harness.lab.loggers; "
        "print(sorted(m for m in ('tensorboard', 'wandb', 'lightning', 'torch.utils.tensorboard') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_training_panels_name_their_runs_as_the_untrained_runs_beside_them_are_named(tmp_path):
    """Two monitored trainings (probe seeds 0 and 1), each beside its first snapshot saved alone with the
    same seed: every seed is held by two runs, which only the recording tells apart. The training
    panels are named as the report names these runs (by recording), not by the seed alone, which
    the saved snapshot beside each shares (they read 'seed=0' and 'seed=1')."""
    import matplotlib.pyplot as plt

    from harness.lab.figures import recordings_named
    from harness.lab.figures.training import draw_training_profiles

    for seed in (0, 1):
        torch.manual_seed(seed)
        lstm, inputs = torch.nn.LSTM(4, 8), torch.randn(20, 3, 4)
        monitor = harness.Monitor(lstm, inputs, seed=seed, loggers=[Parquet(tmp_path / f"train{seed}")])
        for step in (0, 1):
            monitor.record(step)
            with torch.no_grad():
                lstm.weight_hh_l0.mul_(1.5)
        monitor.snapshots[0].profile.save(tmp_path / f"first{seed}")
    profile, summary, _ = collect(tmp_path)
    profile, summary = recordings_named(profile, summary)
    (page,) = draw_training_profiles(profile, summary, tmp_path)
    titles = [ax.get_title() for ax in page.figure.axes if ax.get_title()]
    trained = summary[summary.run_dir.str.startswith("train")]
    assert sorted(titles) == sorted(f"recording={r}, seed={s}" for r, s in zip(trained.recording, trained.seed))
    plt.close(page.figure)
