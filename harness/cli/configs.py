"""What conf/ would otherwise repeat from Python, registered in Hydra's ConfigStore by register():

  run_spec        the run specification (harness.core.spec.RunSpec): every key, its type and default;
                  conf/config.yaml composes into it. Its dataclasses are frozen (a run reads them, never
                  writes them); the schema Hydra merges overrides into is the same tree, made writable.
  cell, init, task
                  one option per built-in cell, init scheme and task, from their registries, so a new
                  one needs no YAML (a user's ./conf/cell/mine.yaml still joins the group).
  hydra/help      `python -m harness --help`: every key with its default and meaning (spec.describe).

The Hydra entry point (harness.cli.main) registers them when it is imported, which is also how a
launcher's worker gets them; a test that composes configs calls register() itself.
"""

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from harness.core.init import INITS
from harness.core.networks import NETWORKS
from harness.core.spec import RunSpec, describe
from harness.core.tasks import TASKS


def _writable(node: DictConfig) -> DictConfig:
    OmegaConf.set_readonly(node, None)  # a frozen dataclass marks every node read-only; inherit instead
    for child in node.values():
        if isinstance(child, DictConfig):
            _writable(child)
    return node


def _shown(value: object) -> str:
    """A default as it is typed on the command line."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _help() -> dict[str, str]:
    """Hydra's help config: the commands, then every key (its default and meaning), then the groups."""
    width = max(len(key) for key, _, _ in describe())
    keys = "\n".join(f"  {key:<{width}}  {_shown(default):<8}  {doc}" for key, default, doc in describe())
    template = (
        "${hydra.help.header}\n== Keys (key=value on the command line; -m key=a,b,c sweeps) ==\n"
        + keys
        + "\n\n== Configuration groups (group=option) ==\n$APP_CONFIG_GROUPS\n\n${hydra.help.footer}"
    )
    return {
        "app_name": "harness",
        "header": "harness: gradient norms through time in recurrent networks, swept with Hydra.\n"
        "  python -m harness key=value ...          one run\n"
        "  python -m harness -m experiment=quickstart  a sweep (experiments/*.yaml)\n",
        "footer": "Docs: docs/ (mkdocs serve). Hydra's own flags: --hydra-help.",
        "template": template,
    }


def register() -> None:
    """Store the run specification, the built-in options and the help in Hydra's ConfigStore (again: the
    same nodes, so calling it twice changes nothing)."""
    store = ConfigStore.instance()
    store.store(name="run_spec", node=_writable(OmegaConf.structured(RunSpec)), provider="harness")
    for group, options in (("cell", NETWORKS), ("init", INITS), ("task", TASKS)):
        for option in options:
            store.store(group=group, name=option, node={"name": option}, provider="harness")
    store.store(group="hydra/help", name="harness", node=_help(), provider="harness")
