"""A sweep's jobs: every configuration of the grid composed as Hydra composes it (at ~0.5 ms a job),
checked whole before anything runs, and what state its run folder is in."""

from __future__ import annotations

import copy
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.cli.hydra_internals import apply_overrides, caching_repo, overrides_dirname
from harness.core.errors import ConfigError
from harness.core.folders import is_ours, stays_inside, too_long
from harness.core.memory import available_memory, check_fits
from harness.core.provenance import code_identity, same_code
from harness.core.runfolder import DONE, META, check_done
from harness.core.spec import RunSpec, config_columns, run_id


@dataclass
class Job:
    """One configuration of a sweep, composed and ready to run."""

    num: int  # Hydra's hydra.job.num: the position in the grid
    overrides: list[str]  # as .hydra/overrides.yaml lists them
    run_id: str
    subdir: str  # the run folder, relative to the sweep folder
    config: dict[str, Any]  # the run's config without hydra, unresolved, as .hydra/config.yaml (plain:
    # parts no override changed are shared with the other jobs of its base, so never written to)
    hydra: dict[str, Any]  # the run's hydra node, as .hydra/hydra.yaml
    code: dict[str, Any] | None = None  # the code that computes it (harness.core.provenance); None: not compared

    def state(self, sweep_dir: Path) -> str:
        """ "todo", "ok" (finished), "failed" (finished, failed: run again), "changed" (finished by other
        code), "foreign" (the folder holds another configuration's finished run: never overwritten) or
        "link" (the run folder is a symbolic link: never written through). A damaged folder (DONE
        without a readable meta.json, or a file changed since DONE vouched for it) is "todo": run again."""
        out = sweep_dir / self.subdir
        if out.is_symlink():
            return "link"
        if not (out / DONE).is_file():
            return "todo"
        try:
            meta = json.loads((out / META).read_text())
            finished, status = meta["run_id"], meta["status"]
        except (OSError, ValueError, KeyError, TypeError):
            return "todo"
        if finished != self.run_id:
            return "foreign"
        if check_done(out) is not None:
            return "todo"
        if self.code is not None and not same_code(meta.get("code"), self.code):
            return "changed"
        return "failed" if status == "failed" else "ok"


class Composer:
    """Every job's config as Hydra's load_sweep_config composes it, at well under 1 ms a job.

    Hydra composes a config from its defaults list (group choices such as cell=lstm), then applies
    the value overrides (scale=2) to the result. The first part is done here once per distinct set
    of group choices (a base). The second is done by the same Hydra function, once per distinct
    override line, on a scratch copy of the base: the value it leaves (typed by the schema: scale=2
    gives 2.0) is then set in each job's plain dict, which shares every untouched part with the base.
    That holds where the base holds no interpolation (no other key can read the value changed) and
    the override sets one scalar (key=value; not +, ++, ~ nor a mapping, which merges). Any other job
    is composed on a copy of the base, and a job that overrides a hydra.* value is composed whole (the
    slow, exact paths). Configs are plain dicts (~1 KB a job where a DictConfig is ~35 KB), and the
    memory estimate, which reads neither seed nor scale, is computed once per configuration without
    them (at 10^4 configurations over scale x seed: once).
    """

    def __init__(self, config_loader: Any, master: DictConfig):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader, self.master = config_loader, master
        self.parser = OverridesParser.create()
        # Hydra's own repository, search-path overrides included, tells group choices from values
        self.repo = caching_repo(config_loader, master.hydra.job.config_name, hydra_overrides(master))
        self.parsed: dict[str, Any] = {}
        self.bases: dict[tuple[str, ...], Base] = {}
        self.available = available_memory()  # read once: the estimate of every job is against the same memory
        self.fits: set[str] = set()  # estimates that fit (ESTIMATE_IGNORES left out of their key)

    def _parse(self, line: str) -> Any:
        if line not in self.parsed:
            self.parsed[line] = self.parser.parse_overrides([line])[0]
        return self.parsed[line]

    def _is_group(self, override: Any) -> bool:  # Hydra's rule (hydra._internal.defaults_list.Overrides)
        return self.repo.group_exists(override.key_or_group) and not isinstance(override.value(), dict)

    def _base(self, overrides: tuple[str, ...]) -> Base:
        if overrides not in self.bases:
            cfg = self.loader.load_sweep_config(self.master, list(overrides))
            hydra = OmegaConf.to_container(cfg.hydra, resolve=False, enum_to_str=True)
            with read_write(cfg), open_dict(cfg):
                del cfg["hydra"]
            self.bases[overrides] = Base(cfg, hydra)
        return self.bases[overrides]

    def _config(self, base: Base, values: list[Any], whole: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the job's config unresolved, as .hydra/config.yaml holds it; resolved, as the run reads it)."""
        if whole:
            return base.container, OmegaConf.to_container(base.cfg, resolve=True)
        set_values = [base.set_value(o) for o in values] if base.plain else None
        if set_values is None or any(value is SLOW for _, value in set_values):
            config = copy.deepcopy(base.cfg)
            apply_overrides(values, config)
            return OmegaConf.to_container(config), OmegaConf.to_container(config, resolve=True)
        config = base.container
        for path, value in set_values:
            config = replaced(config, path, value)
        return config, config  # nothing to resolve

    def _check_fits(self, columns: dict[str, Any]) -> None:
        key = json.dumps({k: v for k, v in columns.items() if k not in ESTIMATE_IGNORES}, sort_keys=True, default=str)
        if key not in self.fits:
            check_fits(RunSpec.from_columns(columns), self.available)
            self.fits.add(key)

    def job(self, num: int, overrides: list[str]) -> Job:
        """Compose job `num` of the grid; raise ConfigError if a value is not allowed."""
        parsed = [self._parse(line) for line in overrides]
        is_group = [self._is_group(o) for o in parsed]
        values = [o for o, group in zip(parsed, is_group) if not group]
        whole = any(o.is_hydra_override() for o in values)
        base = self._base(
            tuple(overrides) if whole else tuple(o.input_line for o, group in zip(parsed, is_group) if group)
        )
        config, resolved = self._config(base, values, whole)
        hydra = base.hydra
        task = [o for o in parsed if not o.is_hydra_override()]
        naming = hydra["job"]["config"]["override_dirname"]
        job_node = {
            **hydra["job"],
            "num": num,
            "id": str(num),  # id is typed str in HydraConf
            "override_dirname": overrides_dirname(task, naming["exclude_keys"], naming["item_sep"], naming["kv_sep"]),
        }
        hydra = {**hydra, "job": job_node, "overrides": {**hydra["overrides"], "task": [o.input_line for o in task]}}
        explicit = [o.key_or_group for o in values if not o.is_hydra_override()]
        columns = config_columns(resolved, explicit)
        self._check_fits(columns)
        return Job(
            num,
            hydra["overrides"]["task"],
            run_id(columns),
            self._subdir(config, hydra),
            config,
            hydra,
            code_identity(resolved),
        )

    def _subdir(self, config: dict[str, Any], hydra: dict[str, Any]) -> str:
        pattern = hydra["sweep"]["subdir"]
        if pattern == "${hydra.job.num}":  # ours and Hydra's default
            return str(hydra["job"]["num"])
        whole = OmegaConf.create({**config, "hydra": hydra})
        OmegaConf.copy_cache(from_config=self.master, to_config=whole)
        return str(OmegaConf.select(whole, "hydra.sweep.subdir"))


ESTIMATE_IGNORES = ("seed", "scale")  # harness.core.memory.estimate reads neither (shapes and sizes only)
SLOW = object()  # an override whose effect is not one scalar set in a plain dict (Base.set_value)


class Base:
    """A set of group choices composed once: its DictConfig (the exact paths start from a copy), its
    plain dict, and what each value override sets in it."""

    def __init__(self, cfg: DictConfig, hydra: dict[str, Any]):
        self.cfg, self.hydra = cfg, hydra
        self.container: dict[str, Any] = OmegaConf.to_container(cfg)
        self.plain = not interpolates(self.container)
        self.scratch: DictConfig | None = None  # a copy that Hydra applies override lines to
        self.set_values: dict[str, tuple[tuple[str, ...], Any]] = {}

    def set_value(self, override: Any) -> tuple[tuple[str, ...], Any]:
        """(the key path, the value) that override sets, as Hydra's own code sets it (typed by the
        schema), or (path, SLOW) where it does more than set a scalar. Raises what Hydra raises."""
        line = override.input_line
        if line not in self.set_values:
            path = tuple(override.key_or_group.split("."))
            simple = not (override.is_add() or override.is_force_add() or override.is_delete()) and (
                override.package is None and not isinstance(override.value(), (dict, list))
            )
            value: Any = SLOW
            if simple:
                if self.scratch is None:
                    self.scratch = copy.deepcopy(self.cfg)
                apply_overrides([override], self.scratch)
                node = OmegaConf.to_container(self.scratch)
                for part in path:
                    node = node[part]
                value = SLOW if isinstance(node, (dict, list)) or interpolates(node) else node
            self.set_values[line] = (path, value)
        return self.set_values[line]


def interpolates(value: Any) -> bool:
    """Whether a plain config value holds an interpolation (${...}) anywhere."""
    if isinstance(value, dict):
        return any(interpolates(v) for v in value.values())
    if isinstance(value, list):
        return any(interpolates(v) for v in value)
    return isinstance(value, str) and "${" in value


def replaced(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """config with path set to value: new dicts along the path, every other part shared."""
    head, *rest = path
    return {**config, head: replaced(config[head], tuple(rest), value) if rest else value}


def hydra_overrides(master: DictConfig) -> list[str]:
    """The command line's hydra.* overrides as typed: `hydra.sweep.subdir=${hydra.job.num}_x` holds an
    interpolation that only a job can resolve."""
    return OmegaConf.to_container(master.hydra.overrides.hydra, resolve=False)


def compose(config_loader: Any, master: DictConfig, grid: list[list[str]]) -> list[Job]:
    """Every job of the grid; if any is not allowed, one ConfigError for the sweep, before anything
    runs: the first refused run's reason and overrides, and how many were refused. Grid points that
    are one configuration (scale=1,1.0) are one job, said in one line on stderr."""
    composer = Composer(config_loader, master)
    jobs, refused = [], []
    for num, overrides in enumerate(grid):
        try:
            jobs.append(composer.job(num, overrides))
        except ConfigError as error:
            refused.append((num, overrides, error))
    if refused:
        num, overrides, error = refused[0]
        raise ConfigError(
            f"{error} [run {num}: {' '.join(overrides) or 'no overrides'}; "
            f"{len(refused)} of {len(grid)} runs refused, nothing ran]"
        )
    first: dict[str, Job] = {}
    for job in jobs:
        if first.setdefault(job.run_id, job) is not job:
            print(
                f"note: run {job.num} ({' '.join(job.overrides)}) is the configuration of run "
                f"{first[job.run_id].num} ({' '.join(first[job.run_id].overrides)}): it runs once",
                file=sys.stderr,
            )
    jobs = [job for job in jobs if first[job.run_id] is job]
    check_subdirs(jobs)
    return jobs


def check_subdirs(jobs: list[Job]) -> None:
    """Refuse (ConfigError) run folders that are not inside the sweep folder, or that two runs share
    (one inside another included): runs would overwrite each other or write elsewhere."""
    pattern = jobs[0].hydra["sweep"]["subdir"] if jobs else ""  # as written, before interpolation
    folders: dict[str, Job] = {}
    for job in jobs:
        path = os.path.normpath(job.subdir)
        if not stays_inside(path):
            raise ConfigError(
                f"hydra.sweep.subdir={pattern}: run {job.num}'s folder {job.subdir!r} is not inside "
                "the sweep folder; expected a relative path below it, e.g. ${hydra.job.num}"
            )
        first = path.split(os.sep)[0]
        if is_ours(first) or too_long(path):
            raise ConfigError(
                f"hydra.sweep.subdir={pattern}: run {job.num}'s folder {job.subdir[:60]!r} "
                + (
                    "is a name the harness writes in the sweep folder"
                    if is_ours(first)
                    else "has a name over 255 bytes"
                )
                + "; expected e.g. ${hydra.job.num}"
            )
        other = folders.setdefault(path, job)
        if other is not job:
            raise ConfigError(
                f"hydra.sweep.subdir={pattern}: runs {other.num} and {job.num} share the folder "
                f"{job.subdir!r}; expected a folder per run, e.g. ${{hydra.job.num}}"
            )
    for path, job in folders.items():
        parts = path.split(os.sep)
        outer = next(
            (folders[p] for p in (os.path.join(*parts[:k]) for k in range(1, len(parts))) if p in folders), None
        )
        if outer is not None:
            raise ConfigError(
                f"hydra.sweep.subdir={pattern}: run {job.num}'s folder {job.subdir!r} is inside run "
                f"{outer.num}'s {outer.subdir!r}; expected a folder per run, e.g. ${{hydra.job.num}}"
            )
