"""The package as a user installs it: a wheel built from this checkout, installed into a fresh virtual
environment, run from a folder that holds nothing but the user's own experiment files.

The checkout is not on that environment's path, so what runs is the wheel alone: its configs (copied
through the harness/conf -> conf and conf/experiment -> experiments links), its Hydra plugins (found by
Hydra's scan of the hydra_plugins namespace), its console script. The heavy dependencies (torch, Hydra,
pandas, ...) come from this interpreter's environment through a .pth file: nothing is downloaded.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.slow  # a wheel built and installed into a new virtual environment

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300

# Tiny sizes: each run takes milliseconds; the time goes into starting Python and drawing figures.
TINY = ["seq_len=6", "hidden_size=4", "input_size=3", "batch_size=2"]

MINE = """\
# @package _global_
# A user's own experiment: two runs of a tiny rnn.
name: mine
seq_len: 6
hidden_size: 4
input_size: 3
batch_size: 2

hydra:
  sweeper:
    params:
      scale: 0.5,2
"""

# Same option name as the packaged experiments/quickstart.yaml: the user's file must win.
USER_QUICKSTART = """\
# @package _global_
name: users_own_quickstart
seq_len: 7
hidden_size: 4
input_size: 3
batch_size: 2

hydra:
  sweeper:
    params:
      cell: rnn,gru
"""


def _env() -> dict[str, str]:
    """As a user's shell: no Hydra full tracebacks, nothing of the checkout put on the path."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    for name in ("HYDRA_FULL_ERROR", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))}\n(in {cwd}) exit {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def _ignored(folder: str, names: list[str]) -> set[str]:
    """Left out of the copy of the checkout that the wheel is built from: build products, results."""
    top = Path(folder).resolve() == ROOT
    skip = {n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")}
    if top:
        skip |= {n for n in names if n in (".git", ".venv", "build", "dist", "results")}
    return skip


def _new_venv(venv: Path) -> tuple[Path, Path, Path]:
    """A fresh venv (its folder, python, site-packages) that borrows this environment's dependencies."""
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv.parent
        ).stdout.strip()
    )
    # This environment's site-packages, after the venv's own. Its .pth files are not read from there
    # (only those in site's own folders are), so the editable install's link to the checkout is not.
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "borrowed_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return venv, python, site


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> SimpleNamespace:
    """The wheel, built once, installed into a fresh venv that borrows this environment's dependencies."""
    pytest.importorskip("pip")
    tmp = tmp_path_factory.mktemp("install")

    # Built from a copy (links kept as links): setuptools writes build/ next to pyproject.toml, and a
    # build/lib left from an earlier layout would put stale modules into the wheel.
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_ignored)
    wheels = tmp / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            wheels,
            ".",
        ],
        cwd=source,
    )
    (wheel,) = wheels.glob("harness-*.whl")

    venv, python, site = _new_venv(tmp / "venv")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], cwd=tmp)
    scripts = python.parent
    return SimpleNamespace(
        wheel=wheel,
        venv=venv,
        python=python,
        site=site,
        script=scripts / ("harness.exe" if os.name == "nt" else "harness"),
    )


def _user_folder(path: Path, **experiments: str) -> Path:
    """An otherwise empty folder holding only experiments/NAME.yaml files."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "experiments").mkdir()
    for name, text in experiments.items():
        (path / "experiments" / f"{name}.yaml").write_text(text)
    return path


def _sweep_dir(folder: Path, name: str) -> Path:
    found = [p for p in (folder / "results" / name).iterdir() if p.is_dir()]
    assert len(found) == 1, f"expected one sweep folder under results/{name}, found {found}"
    return found[0]


def _rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_sweep(result: subprocess.CompletedProcess, folder: Path, name: str, runs: int | None) -> Path:
    """A finished sweep: tables, figures, every run ok, and run by the harness sweeper (its progress line)."""
    sweep = _sweep_dir(folder, name)
    rows = _rows(sweep)
    if runs is not None:
        assert len(rows) == runs, rows
    assert rows and all(row["status"] == "ok" for row in rows), rows
    assert {row["name"] for row in rows} == {name}
    assert (sweep / "figures" / "profiles.png").is_file()
    # Hydra found hydra_plugins/harness_sweeper inside the wheel (conf/config.yaml asks for it by name).
    assert any(line.startswith("sweep:") for line in result.stderr.splitlines()), result.stderr
    return sweep


def test_wheel_holds_packages_configs_and_plugins(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    ours = [str(p.parent.relative_to(ROOT)).replace(os.sep, "/") for p in (ROOT / "harness").rglob("__init__.py")]
    for package in (*ours, "hydra_plugins/harness_sweeper", "hydra_plugins/harness_user_configs"):
        assert f"{package}/__init__.py" in names, package  # pyproject.toml lists packages by hand
    assert "hydra_plugins/__init__.py" not in names  # a namespace shared with other Hydra plugins

    configs = {
        str(Path(top, f).relative_to(ROOT / "conf")).replace(os.sep, "/")
        for top, _, files in os.walk(ROOT / "conf", followlinks=True)
        for f in files
        if f.endswith(".yaml")
    }
    assert {"config.yaml", "experiment/quickstart.yaml", "hydra/launcher/slurm.yaml"} <= configs
    missing = {f"harness/conf/{c}" for c in configs} - names
    assert not missing, f"configs missing from the wheel: {sorted(missing)}"
    entry_points = zipfile.ZipFile(installed.wheel).read("harness-0.1.0.dist-info/entry_points.txt").decode()
    assert "harness = harness.__main__:main" in entry_points


def test_installed_package_runs_from_the_venv_not_the_checkout(installed, tmp_path):
    code = (
        "import harness, harness.cli.paths as p, hydra_plugins.harness_sweeper as s, "
        "hydra_plugins.harness_user_configs as u; "
        "print(harness.__file__); print(s.__file__); print(u.__file__); print(p.CONF_DIR)"
    )
    out = _run([installed.python, "-c", code], cwd=tmp_path).stdout.split()
    site = installed.site.resolve()
    for path in out:
        assert Path(path).resolve().is_relative_to(site), f"{path} is not in the venv's {site}"
    assert (Path(out[-1]) / "experiment" / "quickstart.yaml").is_file()


def test_user_experiment_sweeps_through_the_harness_sweeper(installed, tmp_path):
    folder = _user_folder(tmp_path / "user", mine=MINE)
    result = _run([installed.python, "-m", "harness", "-m", "experiment=mine"], cwd=folder)
    sweep = _assert_sweep(result, folder, "mine", runs=2)
    assert sorted(float(row["scale"]) for row in _rows(sweep)) == [0.5, 2.0]


def test_packaged_experiment_runs_from_a_user_folder(installed, tmp_path):
    folder = _user_folder(tmp_path / "user", mine=MINE)
    # Its sweep cut to 2 x 2 on the command line (which wins over the file's hydra.sweeper.params); the
    # rnn is left out: with this experiment's gaussian init its theory predictions take seconds a run.
    result = _run(
        [installed.python, "-m", "harness", "-m", "experiment=quickstart", *TINY, "cell=lstm,gru", "scale=0.5,2"],
        cwd=folder,
    )
    sweep = _assert_sweep(result, folder, "quickstart", runs=4)
    rows = _rows(sweep)
    assert {row["init"] for row in rows} == {"gaussian"}  # from the packaged experiment file
    assert {row["seq_len"] for row in rows} == {"6"}


def test_console_script(installed, tmp_path):
    assert installed.script.is_file(), f"no console script at {installed.script}"
    folder = _user_folder(tmp_path / "user", mine=MINE)
    result = _run([installed.script, "-m", "experiment=mine"], cwd=folder)
    _assert_sweep(result, folder, "mine", runs=2)


def test_user_experiment_overrides_the_packaged_one(installed, tmp_path):
    folder = _user_folder(tmp_path / "user", quickstart=USER_QUICKSTART)
    result = _run([installed.python, "-m", "harness", "-m", "experiment=quickstart"], cwd=folder)
    sweep = _assert_sweep(result, folder, "users_own_quickstart", runs=2)
    assert not (folder / "results" / "quickstart").exists()
    rows = _rows(sweep)
    assert sorted(row["cell"] for row in rows) == ["gru", "rnn"]
    assert {row["seq_len"] for row in rows} == {"7"}


def test_plain_editable_install_sweeps_from_another_folder(tmp_path):
    """`pip install -e .` without config settings: Hydra's plugin scan must still find the sweeper."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_ignored)
    _, python, _ = _new_venv(tmp_path / "venv")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-e",
            source,
        ],
        cwd=tmp_path,
    )
    folder = _user_folder(tmp_path / "user", mine=MINE)
    result = _run([python, "-m", "harness", "-m", "experiment=mine"], cwd=folder)
    _assert_sweep(result, folder, "mine", runs=2)
    code = "import harness, hydra_plugins.harness_sweeper as s; print(harness.__file__); print(s.__file__)"
    for path in _run([python, "-c", code], cwd=folder).stdout.split():
        assert Path(path).resolve().is_relative_to(source), f"{path} is not in the editable checkout {source}"
