"""The package's layering: import-linter's contract in pyproject.toml holds, and names every module."""
import subprocess
import sys

import pytest
from helpers import ROOT

api = pytest.importorskip("importlinter.api")
PYPROJECT = ROOT / "pyproject.toml"
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def contract():
    if not PYPROJECT.is_file():
        pytest.skip("pyproject.toml not found beside tests/")
    (layers,) = api.read_configuration(str(PYPROJECT))["contracts_options"]
    return layers


@pytest.mark.subprocess
def test_no_module_imports_from_a_higher_layer():
    contract()
    lint = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_every_module_has_a_layer():
    layered = {name.strip() for layer in contract()["layers"] for name in layer.split("|")}
    modules = {path.stem if path.is_file() else path.name for path in (ROOT / "cnnkit").iterdir()
               if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()}
    assert modules - layered == set(), "add the new modules to a layer of [tool.importlinter] in pyproject.toml"
    assert layered - modules == set(), "remove the layers no module holds any more"
