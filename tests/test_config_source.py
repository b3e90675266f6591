"""Configuration is written once: every run key, its default and its meaning in the run specification
(harness.core.spec.RunSpec), the cell, init and task options in their Python registries. Nothing in
conf/ or the docs may repeat them in a way that can drift."""

from __future__ import annotations

import re

import yaml
from hydra.core.config_store import ConfigStore

from harness.cli import configs
from harness.core.init import INITS
from harness.core.networks import NETWORKS
from harness.core.spec import FIELDS, GROUPS, describe
from harness.core.tasks import TASKS
from tests.conftest import ROOT

CONF = ROOT / "conf"


def test_config_yaml_sets_no_run_key():
    """conf/config.yaml holds the defaults list and Hydra's settings; every key's default is RunSpec's."""
    config = yaml.safe_load((CONF / "config.yaml").read_text())
    assert set(config) == {"defaults", "hydra"}, f"conf/config.yaml sets {sorted(set(config) - {'defaults', 'hydra'})}"


def test_registered_groups_have_no_yaml_copies():
    registries = {"cell": NETWORKS, "init": INITS, "task": TASKS}
    assert set(registries) == set(GROUPS)  # the groups chosen by name
    for group, registry in registries.items():
        assert not (CONF / group).exists(), f"conf/{group}/ repeats the {group} registry"
        registered = {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
        assert registered == set(registry), group


def test_help_and_docs_list_every_key_with_its_default():
    template = configs._help()["template"]
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for key, default, _ in describe():
        assert re.search(rf"^  {re.escape(key)} +{re.escape(configs._shown(default))} ", template, re.M), key
        named = (f"`{key}`", f"`{key}.", f"`{key.rsplit('.', 1)[-1]}`")  # cell.kwargs.*, a group's table
        assert any(name in docs for name in named), f"docs/configuration.md does not name {key}"
    assert len(describe()) == len(FIELDS)
