"""Where configs come from: the packaged conf/ (experiments included), then the user's own folders.

In a clone, harness/conf is a link to the top-level conf/ (whose experiment/ links to experiments/);
a built wheel holds a copy of both (pyproject.toml's package data). From any folder, the user's
./conf/<group>/*.yaml and ./experiments/*.yaml come first: they add options and override packaged ones
of the same name (hydra_plugins/harness_user_configs puts them on Hydra's search path).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.lab.results import YAML_LOADER

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def user_dirs(cwd: Path | None = None) -> dict[str, Path]:
    """The user's config folders that exist in cwd, and are not the packaged ones (a clone's root)."""
    cwd = Path.cwd() if cwd is None else cwd
    found = {"conf": cwd / "conf", "experiments": cwd / "experiments"}
    packaged = {CONF_DIR.resolve(), (CONF_DIR / "experiment").resolve()}
    return {name: path for name, path in found.items() if path.is_dir() and path.resolve() not in packaged}


def options(group: str) -> list[str]:
    """The options of a config group (cell, remedy, experiment, ...): registered from Python
    (harness.cli), packaged and the user's."""
    # Imported here: harness.plot and harness.collect read sweep_origin only, and Hydra and OmegaConf
    # were ~0.13 s of their start-up.
    from hydra.core.config_store import ConfigStore  # noqa: PLC0415

    folders = [CONF_DIR / group]
    user = user_dirs()
    if "conf" in user:
        folders.append(user["conf"] / group)
    if group == "experiment" and "experiments" in user:
        folders.append(user["experiments"])
    try:
        registered = ConfigStore.instance().list(group)  # harness.cli registers cell, init and task
    except OSError:  # a group only YAML files make (remedy, experiment)
        registered = []
    return sorted(
        {p.stem for folder in folders for p in folder.glob("*.yaml")}
        | {name.removesuffix(".yaml") for name in registered}
    )


def config_file(group: str, name: str, searchpath: list[str] = ()) -> Path | None:
    """The file Hydra reads for group/name (experiment/quickstart): the user's folders, then any
    hydra.searchpath folder (file:// entries), then the packaged conf/; None if not found."""
    user = user_dirs()
    folders = [user["experiments"]] if group == "experiment" and "experiments" in user else []
    folders += [user["conf"] / group] if "conf" in user else []
    folders += [Path(entry.removeprefix("file://")) / group for entry in searchpath if entry.startswith("file://")]
    folders.append(CONF_DIR / group)
    return next((folder / f"{name}.yaml" for folder in folders if (folder / f"{name}.yaml").is_file()), None)


def sweep_origin(source: Path | None) -> tuple[str | None, str | None]:
    """(the command that made the sweep, the question its experiment file's opening comment asks), from
    the sweep's multirun.yaml; (None, None) where there is none (a single run, rebuilt tables)."""
    file = source / "multirun.yaml" if source else None
    if file is None or not file.is_file():
        return None, None
    try:
        overrides = yaml.load(file.read_text(), Loader=YAML_LOADER)["hydra"]["overrides"]["task"]
        command = "python -m harness -m " + " ".join(overrides)
    except Exception:  # noqa: BLE001  an unreadable record only costs the report its command line
        return None, None
    experiment = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "experiment"), None)
    return command, experiment_question(experiment) if experiment else None


def experiment_question(name: str) -> str | None:
    """An experiment file's opening comment up to its Figures:/Run: lines (the question it asks)."""
    path = config_file("experiment", name)
    if path is None:
        return None
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith(("Figures:", "Run:", "python")):
            break
        if not text.startswith("@package"):
            lines.append(text)
    return " ".join(lines).removeprefix("Question:").strip() or None
