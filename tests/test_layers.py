"""The package's layers: core (torch, numpy) <- lab (pandas, matplotlib, ...) <- cli (Hydra). Imports only
point down, each layer imports only its own third-party packages, and importing the package changes
nothing global."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = ["core", "lab", "cli"]  # bottom first
# The third-party packages each layer adds to the ones below it.
THIRD_PARTY = {
    "core": {"torch", "numpy"},
    "lab": {"pandas", "pyarrow", "matplotlib", "tqdm", "yaml"},
    "cli": {"hydra", "omegaconf", "packaging"},
}
# Optional extras, each in the one module that needs it (imported only when a user asks for it).
EXTRAS = {
    "lab/loggers.py": {"tensorboard", "wandb"},
    "lab/lightning.py": {"lightning"},
}


def harness_imports(path: Path) -> set[str]:
    """The harness modules a file imports, at any depth (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("harness"))
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_only_point_down(layer):
    allowed = {f"harness.{name}" for name in LAYERS[: LAYERS.index(layer) + 1]}
    for path in sorted((ROOT / "harness" / layer).rglob("*.py")):  # subpackages too (core.zoo)
        for module in harness_imports(path):
            assert any(module == a or module.startswith(a + ".") for a in allowed), (
                f"{path.relative_to(ROOT)} imports {module}: {layer} may import only {sorted(allowed)}"
            )


def third_party_imports(path: Path) -> set[str]:
    """The top-level packages outside the standard library and harness a file imports, at any depth
    (lazy imports and TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"harness", "__future__"}


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_its_own_third_party_packages(layer):
    allowed = set().union(*(THIRD_PARTY[name] for name in LAYERS[: LAYERS.index(layer) + 1]))
    for path in sorted((ROOT / "harness" / layer).rglob("*.py")):
        extra = third_party_imports(path) - allowed - EXTRAS.get(str(path.relative_to(ROOT / "harness")), set())
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}: {layer} may import only {sorted(allowed)}"


BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"hydra", "omegaconf", "matplotlib", "pandas"}:
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
import os, torch
before = (os.umask(0o022), torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads())
os.umask(before[0])
import harness, harness.lab.api, harness.core.spec, harness.core.theory, harness.core.runfolder
after = (os.umask(0o022), torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads())
print(harness.__all__)
print(before == after, sorted(m for m in ("hydra", "matplotlib", "pandas") if m in sys.modules))
"""


def test_package_and_core_import_without_hydra_matplotlib_or_pandas():
    out = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    api, state = out.stdout.strip().splitlines()
    assert "record" in api and "GradientProfile" in api and "from_torch" in api
    assert state == "True []"
