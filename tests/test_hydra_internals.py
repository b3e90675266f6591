"""Hydra's private APIs are fenced in harness/cli/hydra_internals.py behind a version check."""

import ast

import pytest

from harness.cli import hydra_internals, sweep
from harness.core.errors import ConfigError
from tests.conftest import ROOT


def test_only_the_fence_imports_hydra_internals():
    for path in sorted([*(ROOT / "harness").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]):
        if path.name == "hydra_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            assert not any(name.startswith("hydra._internal") for name in names), path
            if isinstance(node, ast.Attribute):
                assert not node.attr.startswith("_parse_overrides") and node.attr != "_apply_overrides_to_config", path


@pytest.mark.parametrize("version", ["1.3.2", "1.3.8", "1.3.99"])
def test_tested_versions_pass(version):
    hydra_internals.check_version(version)


@pytest.mark.parametrize("version", ["1.2.0", "1.3.1", "1.4.0", "2.0.0"])
def test_an_untested_hydra_is_refused_in_one_line_with_the_way_out(version):
    with pytest.raises(ConfigError) as error:
        hydra_internals.check_version(version)
    assert str(error.value) == (
        f"hydra-core {version}: the fast sweeper is tested with hydra-core >=1.3.2,<1.4; "
        "install one of those, or run with hydra/sweeper=basic hydra/launcher=basic"
    )


def test_the_sweeper_checks_before_it_expands_a_grid(monkeypatch):
    monkeypatch.setattr(hydra_internals.hydra, "__version__", "1.4.1")
    with pytest.raises(ConfigError, match="hydra-core 1.4.1"):
        sweep.expand({"scale": "1,2"}, [], config_loader=None)
