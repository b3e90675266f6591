"""The command line: Hydra entry points (`python -m harness`), the fast sweeper's work, and the
collect / plot commands. The only layer that imports Hydra.

Importing it registers the run specification (harness.core.spec.RunSpec) as the structured config
`run_spec` that conf/config.yaml composes into, so Hydra types every key as the specification does.
"""
from hydra.core.config_store import ConfigStore

from harness.core.spec import RunSpec

ConfigStore.instance().store(name="run_spec", node=RunSpec, provider="harness")
