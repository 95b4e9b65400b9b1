"""The docs' machinery: the API reference documents every public name once, docstrings are quoted
for docutils, and a gallery example runs as a notebook in a real Jupyter kernel (figures inline,
the Trainer's progress bar as a widget)."""
import importlib
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

EXAMPLES, DOCS_EXT = ROOT / "examples", ROOT / "docs" / "_ext"

pytestmark = pytest.mark.docs

EXECUTE = """
import sys
import nbclient, nbformat
notebook = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", startup_timeout=300).execute()
nbformat.write(notebook, sys.argv[1])
"""


@pytest.fixture(scope="module")
def cnnkit_docs():
    """The docs' Sphinx extension (needs docutils, which Sphinx brings)."""
    pytest.importorskip("docutils")
    sys.path.insert(0, str(DOCS_EXT))
    try:
        yield importlib.import_module("cnnkit_docs")
    finally:
        sys.path.remove(str(DOCS_EXT))


def test_api_pages_document_every_public_name_once(cnnkit_docs):
    modules = cnnkit_docs.public_modules()
    assert {"cnnkit", "cnnkit.layers", "cnnkit.models", "cnnkit.functional", "cnnkit.datasets"} <= set(modules)
    assert not any(name.startswith("cnnkit._") or name in ("cnnkit.cli", "cnnkit.commands") for name in modules)
    pages = cnnkit_docs.api_pages(modules)
    documented = {f"{module}.{name}" for module, page in pages.items()
                  for kind in ("classes", "exceptions", "functions") for name in page[kind]}
    for module, page in pages.items():
        for name in page["elsewhere"]:
            full = name if name.startswith("cnnkit.") else f"{module}.{name}"
            assert full in documented, f"{module} links to {full}, which no page documents"
    pages_of = {}  # id of each documented object -> the modules whose pages document it
    for name in documented:
        module, _, attribute = name.rpartition(".")
        pages_of.setdefault(id(getattr(importlib.import_module(module), attribute)), set()).add(module)
    assert all(len(modules) == 1 for modules in pages_of.values()), "an object is documented on two pages"
    layers = importlib.import_module("cnnkit.layers")
    assert {f"cnnkit.layers.{name}" for name in layers.__all__} <= documented
    assert "cnnkit.trainer.Trainer" in documented and "trainer.Trainer" in pages["cnnkit"]["elsewhere"]


def test_docstrings_are_quoted_for_docutils(cnnkit_docs):
    lines = ["rel_error: max |a - b| / max(|a|, |b|)", "input of shape (N, *input_shape)",
             "forward(**inputs) -> out", "an *emphasised* word", "`|x|` in backticks"]
    cnnkit_docs.quote_plain_text(None, "function", "f", None, {}, lines)
    assert lines == ["rel_error: max ``|a - b|`` / max(``|a|``, ``|b|``)", r"input of shape (N, \*input_shape)",
                     r"forward(\*\*inputs) -> out", "an *emphasised* word", "`|x|` in backticks"]


@pytest.mark.slow
def test_gallery_example_runs_as_a_notebook(tmp_path):
    """sphinx-gallery's converter makes the notebook a reader downloads; a python3 kernel runs it."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    notebook_module = pytest.importorskip("sphinx_gallery.notebook")
    pytest.importorskip("ipykernel")
    script = tmp_path / "plot_06_first_layer.py"
    shutil.copy(EXAMPLES / script.name, script)
    notebook_module.python_to_jupyter_cli([str(script)])
    notebook = script.with_suffix(".ipynb")
    # in a process of its own, as Jupyter runs it: the kernel's inline backend, no state of this one's
    environment = {name: value for name, value in os.environ.items() if name != "MPLBACKEND"}
    subprocess.run([sys.executable, "-c", EXECUTE, str(notebook)], check=True, timeout=900, env=environment,
                   cwd=tmp_path)
    notebook = nbformat.read(notebook, as_version=4)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    data = [output.get("data", {}) for output in outputs]
    assert sum("image/png" in item for item in data) >= 2  # the filters and the feature maps, inline
    assert any("application/vnd.jupyter.widget-view+json" in item for item in data)  # tqdm.auto's bar
    assert any("validation accuracy" in output.get("text", "") for output in outputs)


def test_performance_page_shows_the_suite_csv_once_it_exists(tmp_path, cnnkit_docs):
    """The suite-table directive says how to make the CSV, then shows it as a table (Sphinx, warnings as errors)."""
    source = tmp_path / "src"
    (source / "performance").mkdir(parents=True)
    (source / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(DOCS_EXT)!r})\n"
                                    "extensions = ['sphinx.ext.autosummary', 'cnnkit_docs']\n"
                                    "exclude_patterns = ['api']\n")
    (source / "index.rst").write_text("Speed\n=====\n\n.. suite-table:: performance/suite.csv\n")

    def build():
        subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "-b", "html", str(source), str(tmp_path / "out")],
                       check=True, timeout=300, capture_output=True, cwd=tmp_path)  # the installed cnnkit
        return (tmp_path / "out" / "index.html").read_text()

    page = build()
    assert "not yet generated" in page and cnnkit_docs.SUITE_COMMAND.split()[-1] in page
    (source / "performance" / "suite.csv").write_text(
        'layer,shape,dtype,threads,fast ms,torch ms,fast/torch\nconv,"x(8, 3, 32, 32)",float32,2,1.5,3.0,0.5\n')
    page = build()
    assert "not yet generated" not in page
    assert page.count('<th class="head"') == 7 and "x(8, 3, 32, 32)" in page and "0.5" in page
