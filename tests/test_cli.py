"""The real command line: textbook numbers, bad input, every experiment file, results on disk."""

import html
import json
import math
import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from harness.cli.collect import main as collect_main
from harness.cli.main import check_command
from harness.cli.overrides import check_overrides
from harness.cli.paths import options
from harness.cli.plot import main as plot_main
from harness.core.errors import ConfigError
from harness.lab.run import run as run_config
from tests.conftest import KEYS, ROOT, run_cli

SCHEMA = [
    "run_id",
    "name",
    "cell",
    "cell.forget_bias",
    "cell.chrono_tmax",
    "cell.r_min",
    "cell.r_max",
    "cell.max_phase",
    "cell.state_size",
    "cell.dt_min",
    "cell.dt_max",
    "cell._target_",
    "activation",
    "init",
    "task",
    "scale",
    "seq_len",
    "hidden_size",
    "input_size",
    "num_layers",
    "batch_size",
    "seed",
    "recorder",
    "dtype",
    "device",
    "remedy",
    "train.steps",
    "train.lr",
    "train.optimizer",
    "train.clip_norm",
    "train.clip_value",
    "train.weight_decay",
    "train.record_every",
    "theory.spectrum_k",
    "record.units",
    "train.omega",
    "train.flossing_k",
    "train.flossing_every",
    "memory.fraction",
    "memory.segment",
    "layer",
    "state",
    "t",
    "lag",
    "step",
    "log10_norm",
    "log10_norm_q10",
    "log10_norm_q25",
    "log10_norm_q75",
    "log10_norm_q90",
]
SUMMARY = [
    "run_id",
    "run_dir",
    "status",
    "rate",
    "gain_per_step",
    "half_life",
    "regime",
    "log10_gain",
    "wall_time_s",
    "input_drive_var",
]


@pytest.mark.slow
def test_textbook_gains_through_the_cli(tmp_path):
    """A 1-unit linear rnn: the gain over k steps is exactly |w|^k (0.9^10 = 0.3487, 1.1^10 = 2.5937)."""
    run_cli(
        "-m",
        "activation=identity",
        "init=orthogonal",
        "hidden_size=1",
        "seq_len=20",
        "scale=0.9,1.1",
        "recorder=exact,autograd",
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
    )
    profile = pd.read_parquet(tmp_path / "profile.parquet")
    assert sorted(profile.columns) == sorted(SCHEMA)
    assert profile.groupby(["scale", "recorder"]).ngroups == 4
    for (scale, recorder), run in profile.groupby(["scale", "recorder"]):
        by_lag = run.set_index("lag").log10_norm
        for k in (10, 20):
            gain = 10 ** (by_lag[k] - by_lag[0])
            assert gain == pytest.approx(scale**k, rel=1e-5), (scale, recorder, k)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(SUMMARY) <= set(summary.columns) and len(summary) == 4
    for row in summary.itertuples():
        assert row.rate == pytest.approx(math.log(row.scale), abs=1e-5)
        assert row.regime == ("vanishing" if row.scale < 1 else "exploding")


def test_run_folder_metadata(tmp_path):
    run_cli("cell=lstm", "seq_len=5", "hidden_size=4", f"hydra.run.dir={tmp_path}", cwd=tmp_path.parent)
    assert (tmp_path / "DONE").exists()
    meta = json.loads((tmp_path / "meta.json").read_text())
    for key in (
        "run_id",
        "config",
        "choices",
        "seed",
        "versions",
        "git_commit",
        "input_drive_var",
        "wall_time_s",
        "status",
    ):
        assert key in meta, key
    assert meta["status"] == "ok" and meta["choices"]["cell"] == "lstm"
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["config"]["cell"] == {
        "name": "lstm",
        "forget_bias": 0.0,
        "chrono_tmax": None,
        "r_min": 0.0,
        "r_max": 1.0,
        "max_phase": 2 * math.pi,
        "state_size": 16,
        "dt_min": 0.001,
        "dt_max": 0.1,
        "_target_": None,
        "kwargs": {},
    }
    assert not list(tmp_path.glob(".*.parquet*"))  # no temporary files left by the atomic writes


BAD_INPUT = [
    ("cell=foo", "cell=foo: expected one of gru, indrnn, lru, lstm, mingru, minimal, minlstm, rnn, selective"),
    ("activation=swish", "activation=swish: expected one of"),
    ("init=xavier", "init=xavier: expected one of default, gaussian, identity, orthogonal"),
    ("task=parity", "task=parity: expected one of"),
    ("recorder=fast", "recorder=fast: expected one of autograd, exact"),
    ("dtype=float16", "dtype=float16: expected one of float32, float64"),
    ("device=tpu", "device=tpu: expected one of cpu, cuda"),
    ("seq_len=0", "seq_len=0: expected an integer >= 1"),
    ("seq_len=-5", "seq_len=-5: expected an integer >= 1"),
    ("seq_len=abc", "seq_len=abc: expected an integer >= 1"),
    ("seq_len=10.5", "seq_len=10.5: expected an integer >= 1"),
    ("hidden_size=0", "hidden_size=0: expected an integer >= 1"),
    ("batch_size=0", "batch_size=0: expected an integer >= 1"),
    ("num_layers=0", "num_layers=0: expected an integer >= 1"),
    ("input_size=x", "input_size=x: expected an integer >= 1"),
    # above int64 the tables cannot hold it and torch cannot seed with it (it failed in the run, then the tables)
    ("seed=18446744073709551616", "seed=18446744073709551616: expected an integer from 0 to 2**63 - 1"),
    ("scale=-1", "scale=-1: expected a finite number >= 0"),
    ("scale=nan", "scale=nan: expected a finite number >= 0"),
    ("scale=inf", "scale=inf: expected a finite number >= 0"),
    ("scale=abc", "scale=abc: expected a finite number >= 0"),
    ("cell.forget_bias=big", "cell.forget_bias=big: expected a finite number"),
    ("hiden_size=3", "hiden_size=3: unknown key"),
    ("experiment=nope", "experiment=nope: expected one of"),
    ("-m scale=1,-1", "scale=-1: expected a finite number >= 0"),  # a sweep fails before its first run
    ("-m seq_len=range(0,3)", "seq_len=0: expected an integer >= 1"),
    ("train.steps=10", "train.steps=10: task=probe has nothing to learn"),
    ("task=copy train.steps=5", "recorder=exact: task=copy has a loss on every step; expected recorder=autograd"),
    ("train.optimizer=lbfgs", "train.optimizer=lbfgs: expected one of adam, rmsprop, sgd"),
    ("train.lr=0", "train.lr=0: expected a finite number > 0"),
    ("remedy=magic", "remedy=magic: expected one of"),
    ("seq_len=5=6", "seq_len=5=6: not a Hydra override"),
]
if not torch.cuda.is_available():
    BAD_INPUT.append(("device=cuda", "device=cuda: CUDA is not available on this machine; expected cpu"))


BAD_INPUT += [  # combinations, sizes and sweeps: refused whole, before anything runs
    (
        "-m task=adding,copy recorder=exact train.steps=2",
        "recorder=exact: task=copy has a loss on every step; expected recorder=autograd [run 1: task=copy "
        "recorder=exact train.steps=2; 1 of 2 runs refused, nothing ran]",
    ),
    ("cell=rnn cell.forget_bias=1.0", "cell.forget_bias=1.0: applies to cell=lstm only, not cell=rnn"),
    ("-m cell=gru,rnn cell.chrono_tmax=50", "cell.chrono_tmax=50: applies to cell=lstm or gru only, not cell=rnn"),
    ("cell=lstm cell.r_min=0.5", "cell.r_min=0.5: applies to cell=lru only, not cell=lstm"),
    ("-m cell=rnn,lstm cell.forget_bias=1.0", "[run 0: cell=rnn cell.forget_bias=1.0; 1 of 2 runs refused"),
    ("task=adding input_size=8", "input_size=8: task=adding has 2 input channels; expected input_size=2"),
    ("-m hidden_size=4,100000", "hidden_size=100000: the run needs about"),
    ("-m seq_len=10,20 hidden_size=4,100000", "2 of 4 runs refused"),
    # the key set large is named, not the first of its part (seq_len=40 was blamed for the batch)
    ("-m batch_size=2,2000000000 hidden_size=4 seq_len=40", "batch_size=2000000000: the run needs about"),
    # a key off by default, and a key whose smaller value costs more (record_every) said as such
    (
        "task=adding train.steps=1000000000",
        "train.steps=1000000000: the run needs about 600.5 GB (tables 600.0 GB) but",
    ),
    ("task=adding train.steps=1000000000", "expected a smaller seq_len or train.steps, or a larger train.record_every"),
    ("task=adding train.steps=1 num_layers=3000 hidden_size=64", "num_layers=3000: the run needs about"),
    # refused before 10^8 layers are built for the estimate (that never ended, holding GBs)
    ("-m num_layers=1,100000000 hidden_size=4", "num_layers=100000000: the run needs more than 204.8 GB for its"),
    ("scale=1,2", "scale=1,2: a sweep; expected -m (--multirun)"),
    ("scale=interval(0,1)", "scale=interval(0,1): a sweep; expected -m"),
    ("-m scale=interval(0,1)", "scale=interval(0,1): an interval has no points to run"),
]
# User mistakes that were tracebacks (or a 6-minute, 3 GB wait): one line, exit 2, before any compute.
LONG_NAME = "a" * 300
BAD_SETTINGS = [
    (f"name={LONG_NAME}", f"name={'a' * 40}... (300 characters): expected a folder name of 1 to 100 characters"),
    ("name=a/b", "name=a/b: expected a folder name of 1 to 100 characters, without / or \\, not . or .."),
    ("name=a\\b", "name=a\\b: expected a folder name"),
    ("name=..", "name=..: expected a folder name"),
    ("-m name=.", "name=.: expected a folder name"),
    ("name=${x}", "name=${x}: cannot be resolved (Interpolation key 'x' not found)"),
    ("-m name=${x}", "name=${x}: cannot be resolved (Interpolation key 'x' not found)"),
    ("name=${oc.env:NOPE_X}", "name=${oc.env:NOPE_X}: cannot be resolved ("),
    ("-m name=${oc.env:NOPE_X}", "Environment variable 'NOPE_X' not found"),
    ("-m name=${oc.env:NOPE_X,a/b}", "expected a folder name"),
    ("-m hydra.sweeper.torch_threads=-1", "hydra.sweeper.torch_threads=-1: expected an integer >= 1, or null"),
    ("-m hydra.sweeper.chunks=0", "hydra.sweeper.chunks=0: expected an integer >= 1, or null"),
    ("-m hydra.sweeper.resume=maybe", "hydra.sweeper.resume=maybe: expected true, false or rerun_changed"),
    ("-m hydra.sweeper.resume=1", "hydra.sweeper.resume=1: expected true, false or rerun_changed"),
    ("-m hydra.sweeper.resume='true'", "hydra.sweeper.resume='true': expected true, false or rerun_changed (unquoted)"),
    ("-m hydra/launcher=joblib hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs=0: expected a nonzero integer"),
]
BAD_INPUT += BAD_SETTINGS
FOLDERS = ["hydra.run.dir={tmp}/run", "hydra.sweep.dir={tmp}/sweep"]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[a for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_before_any_compute(tmp_path, args, message):
    """In-process: the checks the command line makes before Hydra makes a folder, and the sweeper's
    composition of the whole grid (tests below run the real command for exit codes and folders)."""
    with pytest.raises(ConfigError) as error:
        check_command([*args.split(), *(f.format(tmp=tmp_path) for f in FOLDERS)], whole_sweep=True)
    text = str(error.value)
    assert message in text and "\n" not in text
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("resume", ["true", "false", "rerun_changed"])
def test_every_resume_setting_is_accepted(tmp_path, resume):
    """rerun_changed, which a resumed sweep of runs finished by other code names, failed to merge into
    the sweeper's config (typed bool) with Hydra's 'Error merging override'."""
    check_command(
        ["-m", "seq_len=5", f"hydra.sweeper.resume={resume}", *(f.format(tmp=tmp_path) for f in FOLDERS)],
        whole_sweep=True,
    )


@pytest.mark.parametrize(
    "args,message",
    [
        ("-m task=adding,copy recorder=exact train.steps=2", "recorder=exact: task=copy has a loss on every step"),
        ("cell=rnn cell.forget_bias=1.0", "cell.forget_bias=1.0: applies to cell=lstm only"),
        ("-m seq_len=10 hidden_size=4,100000", "hidden_size=100000: the run needs about"),
    ],
)
def test_the_command_refuses_in_one_line_and_makes_no_folder(tmp_path, args, message):
    result = run_cli(*args.split(), *(f.format(tmp=tmp_path) for f in FOLDERS), cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert not result.stdout and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "folder,message",
    [
        ("/proc/x", "hydra.sweep.dir=/proc/x: a system folder, not a place for results"),
        ("{tmp}/file/x", "{tmp}/file is not a folder"),
    ],
)
def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, folder, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=re.escape(message.format(tmp=tmp_path))):
        check_command(["-m", "seq_len=5", f"hydra.sweep.dir={folder.format(tmp=tmp_path)}"])


def broken_experiment(tmp_path, text):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    path = tmp_path / "conf" / "experiment" / "broken.yaml"
    path.write_text("# @package _global_\n" + text)
    return path, [
        "-m",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "experiment=broken",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "hydra:\n  sweeper:\n    params:\n      scale: 1.0,-2.0\n",
            "{path}: hydra.sweeper.params: scale=-2.0: expected a finite number >= 0",
        ),
        (
            "scael: 2\n",
            "{path}: In 'experiment/broken': ConfigKeyError raised while composing config: "
            "Key 'scael' not in 'RunSpec'",
        ),
        ("scale: [2\n", 'while parsing a flow sequence in "{path}", line 2'),
    ],
)
def test_a_mistake_in_an_experiment_file_names_the_file(tmp_path, text, message):
    path, args = broken_experiment(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        check_command(args)
    assert str(error.value).startswith(message.format(path=path)) and "\n" not in str(error.value)


def test_bad_value_in_an_experiment_sweep_is_refused_before_any_run(tmp_path):
    path, args = broken_experiment(tmp_path, "hydra:\n  sweeper:\n    params:\n      scale: 1.0,-2.0\n")
    result = run_cli(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: hydra.sweeper.params: scale=-2.0: expected a finite number >= 0"
    assert not (tmp_path / "sweep").exists()


def smoke_sized(config: OmegaConf) -> list[str]:
    """Overrides that shrink an experiment to a smoke test: tiny sizes, short sequences, a few training
    steps, and two values of each numeric or activation axis. Every remedy is kept, and every cell
    unless remedies are swept too (then the first two, rnn and lstm, which every remedy applies to)."""
    fixed_inputs = "train" in config  # a training task fixes its input size
    flossing = "flossing" in str(config.hydra.sweeper.params.get("remedy", ""))  # 8 exponents: 8 units at least
    smoke = [f"hidden_size={8 if flossing else 4}", "batch_size=2", *([] if fixed_inputs else ["input_size=3"])]
    if config.get("seq_len", 0) > 100 and "seq_len" not in config.hydra.sweeper.params:  # a long fixed T
        smoke += ["seq_len=20"]
    if "train" in config:
        smoke += ["seq_len=12", "train.steps=4", "train.record_every=2"]
    if config.get("theory", {}).get("spectrum_k"):  # at most the (now tiny) state size
        smoke += ["theory.spectrum_k=2"]
    params = config.hydra.sweeper.params
    for key, values in params.items():
        if key == "remedy" or key == "cell" and "remedy" not in params:
            continue
        if values.startswith("range("):  # range(start, stop, step): its first two points
            start, _, step = (float(v) for v in values[len("range(") : -1].split(","))
            values = f"{start:g},{start + step:g}"
        smoke.append(f"hydra.sweeper.params.{key}='{','.join(values.split(',')[:2])}'")
    return smoke


@pytest.mark.slow
@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_runs_smoke_sized(tmp_path, experiment):
    config = OmegaConf.load(ROOT / "experiments" / f"{experiment}.yaml")
    smoke = smoke_sized(config)
    result = run_cli("-m", f"experiment={experiment}", *smoke, f"hydra.sweep.dir={tmp_path}", cwd=tmp_path.parent)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) > 1 and (summary.status != "failed").all() and (summary.status != "incomplete").all()
    assert (summary.name == experiment).all()
    assert (tmp_path / "figures" / "profiles.png").exists()
    assert "runs (" in result.stdout
    report = (tmp_path / "report.html").read_text()
    question = (ROOT / "experiments" / f"{experiment}.yaml").read_text().split("# Question: ", 1)[1].split()[:6]
    assert f"<b>Question.</b> {html.escape(' '.join(question))}" in report  # the file's own words
    assert f"python -m harness -m experiment={experiment} " in report


def test_experiment_files_document_themselves():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# @package _global_"), path
        assert "# Question:" in text and "# Figures:" in text and f"experiment={path.stem}" in text, path


def test_collect_and_plot_rebuild_after_an_interrupted_sweep(tmp_path, reference, capsys):
    """harness.collect and harness.plot, called as their command lines call them (in-process)."""
    sweep = tmp_path / "sweep"
    shutil.copytree(reference[0], sweep)
    full = pd.read_parquet(sweep / "profile.parquet")
    figures = sorted(p.name for p in (sweep / "figures").iterdir())
    assert figures == ["heatmap.png", "phase.png", "profiles.png"]
    # As if the sweep had been killed during its last run and before collecting.
    (sweep / "7" / "DONE").unlink()
    for generated in [
        "profile.parquet",
        "fits.parquet",
        "summary.csv",
        "summary.parquet",
        "report.html",
        *(f"figures/{name}" for name in figures),
    ]:
        (sweep / generated).unlink()
    assert collect_main([str(sweep)]) == 1 and "incomplete: 7" in capsys.readouterr().out
    summary = pd.read_csv(sweep / "summary.csv")
    assert summary.status.tolist() == ["ok"] * 7 + ["incomplete"]
    assert summary.cell.tolist() == ["rnn"] * 4 + ["gru"] * 4 and summary.run_id.notna().all()
    rebuilt = pd.read_parquet(sweep / "profile.parquet")
    kept = full[full.run_id.isin(summary.run_id[:7])].sort_values(KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(rebuilt.sort_values(KEYS).reset_index(drop=True), kept)

    # Every figure and the report, deleted and rebuilt from the tables alone.
    for path in (sweep / "figures").iterdir():
        path.unlink()
    (sweep / "report.html").unlink()
    assert plot_main([str(sweep)]) == 0
    assert sorted(p.name for p in (sweep / "figures").iterdir()) == figures
    report = (sweep / "report.html").read_text()
    pngs = [name for name in figures if name.endswith(".png")]
    assert report.count("src='data:image/png;base64,") == len(pngs)  # embedded: the file stands alone
    assert all(f"alt='{name[:-4]}'" in report for name in pngs)
    assert plot_main([str(sweep), "--svg"]) == 0  # vector copies on request, named in the report
    assert (sweep / "figures" / "phase.svg").exists() and "vector copy: figures/phase.svg" in (
        sweep / "report.html"
    ).read_text()

    # A subset, and two sweeps together, into folders of their own.
    assert plot_main([str(sweep), "--where", "cell=rnn", "--out", str(tmp_path / "rnn")]) == 0
    assert set(pd.read_csv(tmp_path / "rnn" / "summary.csv").cell) == {"rnn"}
    assert (tmp_path / "rnn" / "figures" / "phase.png").exists()
    other = tmp_path / "other"  # a run of its own, as `python -m harness cell=lstm ...` writes it
    config = OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml")
    config.cell.name = "lstm"
    run_config(config, other)
    same = tmp_path / "same"  # and one configuration in two folders: one run
    shutil.copytree(sweep / "0", same)
    capsys.readouterr()
    assert plot_main([str(sweep), str(other), str(same), "--out", str(tmp_path / "both")]) == 0
    both = pd.read_csv(tmp_path / "both" / "summary.csv")
    assert sorted(set(both.cell)) == ["gru", "lstm", "rnn"] and len(both) == 9
    # the run given twice is drawn once, and said so (it was dropped without a word)
    assert f"1 run of {same} is a run of a folder given before it (the same run_id): drawn once" in (
        capsys.readouterr().out
    )
    assert plot_main([str(sweep), "--where", "colour=red", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: --where colour=red: expected KEY=VALUE")
    assert plot_main([str(tmp_path / "nope")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'nope'}: no such folder; expected a sweep or run folder under results/\n"
    )


def test_collect_and_plot_commands_exit_in_one_line(tmp_path):
    """The real entry points, for their exit codes: a folder with no runs is one line, no traceback."""
    for module in ("harness.collect", "harness.plot"):
        result = subprocess.run([sys.executable, "-m", module, str(tmp_path)], capture_output=True, text=True)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"error: {tmp_path}: no run folders in it")


@pytest.mark.parametrize(
    "args,message",
    [
        ("hydra.run.dir=${x}", "hydra.run.dir=${x}: cannot be resolved (Interpolation key 'x' not found)"),
        ("hydra.run.dir=${oc.env:NOPE_X}/run", "hydra.run.dir=${oc.env:NOPE_X}/run: cannot be resolved ("),
        ("-m hydra.sweep.dir=${x}", "hydra.sweep.dir=${x}: cannot be resolved (Interpolation key 'x' not found)"),
        ("-m hydra.sweep.dir={tmp} hydra.sweep.subdir=${nope}", "hydra.sweep.subdir=${nope}: cannot be resolved"),
        ("hydra.run.dir={tmp}/${hydra.job.num}", "hydra.run.dir={tmp}/${hydra.job.num}: cannot be resolved"),
    ],
)
def test_an_interpolation_that_does_not_resolve_is_one_line(tmp_path, args, message):
    with pytest.raises(ConfigError) as error:
        check_command(args.replace("{tmp}", str(tmp_path)).split(), whole_sweep=True)
    assert message.replace("{tmp}", str(tmp_path)) in str(error.value) and "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args",
    [
        "-m seq_len=5,6 hydra.sweep.dir={tmp}/${name}_${now:%Y} hydra.sweep.subdir=${hydra.job.num}_${cell.name}",
        "seq_len=5 hydra.run.dir={tmp}/${name}/${now:%H-%M}",
        "seq_len=5 name=${oc.env:HARNESS_TEST_NAME,fallback} hydra.run.dir={tmp}/x",
        "-m hydra/launcher=joblib hydra.launcher.n_jobs=-2 hydra.sweeper.torch_threads=2 hydra.sweeper.chunks=3 "
        "seq_len=5 hydra.sweep.dir={tmp}/s",
    ],
)
def test_interpolations_resolved_at_runtime_are_let_through(tmp_path, args):
    """Hydra's runtime values (${now:...}, ${hydra.job.num}) stood in for, not refused."""
    check_command(args.replace("{tmp}", str(tmp_path)).split())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args,message",
    [
        (f"name={LONG_NAME}", "(300 characters): expected a folder name of 1 to 100 characters"),
        ("-m name=${x}", "name=${x}: cannot be resolved (Interpolation key 'x' not found)"),
        ("name=${oc.env:NOPE_X}", "name=${oc.env:NOPE_X}: cannot be resolved"),
        ("-m hydra.sweeper.torch_threads=-1 seq_len=5", "hydra.sweeper.torch_threads=-1: expected an integer >= 1"),
        ("-m hydra/launcher=joblib hydra.launcher.n_jobs=0 seq_len=5", "hydra.launcher.n_jobs=0: expected a nonzero"),
    ],
)
def test_bad_settings_refused_by_the_command_in_one_line(tmp_path, args, message):
    result = run_cli(*args.split(), cwd=tmp_path, check=False)  # the default folders: results/${name}/...
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert not result.stdout and not list(tmp_path.iterdir())


def yaml_bomb(levels: int) -> str:
    """`levels` lists of 9 aliases each to the one before: 9^levels nodes once expanded."""
    lines = ["# @package _global_", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_yaml_bomb_is_refused_in_linear_time(tmp_path):
    from harness.cli.yaml_guard import check_expansion, expanded_nodes

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(yaml_bomb(9))
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        check_expansion(bomb)
    assert time.perf_counter() - started < 1
    assert str(error.value) == (
        f"{bomb}: expands to more than 1000000 YAML nodes (anchors and aliases); expected a plain config file"
    )
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: &a [1, *a]\n")  # an alias to itself: without end
    with pytest.raises(ConfigError, match="expands to more than"):
        check_expansion(loop)
    small = tmp_path / "small.yaml"
    small.write_text(yaml_bomb(3))  # anchors used plainly: 9^3 leaves, let through
    check_expansion(small)
    assert expanded_nodes(small) == 1 + 3 + 10 + (1 + 9 * 10) + (1 + 9 * 91)  # the mapping, its keys, a0, a1, a2
    broken = tmp_path / "broken.yaml"
    broken.write_text("scale: [2\n")  # not YAML: left to Hydra, which names the file and the line
    check_expansion(broken)


@pytest.mark.parametrize("args", [["-m", "experiment=bomb"], ["cell=bomb", "seq_len=5"], ["-m", "experiment=plain"]])
def test_the_command_refuses_a_yaml_bomb_in_the_users_folder(tmp_path, monkeypatch, args):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "conf" / "cell").mkdir(parents=True)
    (tmp_path / "experiments" / "bomb.yaml").write_text(yaml_bomb(9))
    (tmp_path / "conf" / "cell" / "bomb.yaml").write_text(yaml_bomb(9).replace("_global_", "cell"))
    (tmp_path / "experiments" / "plain.yaml").write_text(  # the bomb only as a sweep's option
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      cell: rnn,bomb\n"
    )
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        check_command(args)
    assert time.perf_counter() - started < 10
    group = "experiments" if args[-1] == "experiment=bomb" else "conf/cell"
    assert str(error.value) == (
        f"{group}/bomb.yaml: expands to more than 1000000 YAML nodes (anchors and aliases); "
        "expected a plain config file"
    )
    assert not (tmp_path / "results").exists()


def test_the_command_refuses_a_yaml_bomb_in_one_line(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "bomb.yaml").write_text(yaml_bomb(9))
    result = run_cli("-m", "experiment=bomb", cwd=tmp_path, check=False, env=None)
    assert result.returncode == 2
    assert result.stderr == (
        "error: experiments/bomb.yaml: expands to more than 1000000 YAML nodes (anchors and "
        "aliases); expected a plain config file\n"
    )
    assert not (tmp_path / "results").exists()


def test_quoted_elements_of_a_sweep_are_checked_as_their_text(tmp_path):
    """cell.kwargs.mode='tanh','identity' was refused as {'cell.kwargs.mode': QuotedString(text='tanh',
    ...)}: Hydra's parser keeps a sweep's quoted elements as objects; each job gets the text."""
    check_overrides(["cell.kwargs.mode='tanh','identity'", "cell.kwargs.k=2,'3'"])
    check_command(["-m", "name='first','second'", "seq_len=5", f"hydra.sweep.dir={tmp_path}/s"], whole_sweep=True)
    with pytest.raises(ConfigError, match="^seq_len=abc: expected an integer"):
        check_overrides(["seq_len='abc',20"])
