"""The command line: Hydra entry points (`python -m harness`), the fast sweeper's work, and the
collect / plot commands. The only layer that imports Hydra.

Importing it registers the run specification (harness.core.spec.RunSpec) as the structured config
`run_spec` that conf/config.yaml composes into, so Hydra types every key as the specification does.
The specification's dataclasses are frozen (a run reads them, never writes them); the schema Hydra
merges overrides into is the same tree with its read-only flags lifted.
"""
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from harness.core.spec import RunSpec


def _writable(node: DictConfig) -> DictConfig:
    OmegaConf.set_readonly(node, None)  # a frozen dataclass marks every node read-only; inherit instead
    for child in node.values():
        if isinstance(child, DictConfig):
            _writable(child)
    return node


ConfigStore.instance().store(name="run_spec", node=_writable(OmegaConf.structured(RunSpec)), provider="harness")
