"""Sphinx configuration of cnnkit's documentation: pydata-sphinx-theme, numpydoc, sphinx-gallery."""
import importlib.util
import os
import sys
from pathlib import Path

import cnnkit

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("MPLBACKEND", "agg")  # the gallery's figures are written to files, never shown

project = "cnnkit"
author = "cnnkit developers"
copyright = "the cnnkit developers"
version = release = cnnkit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "cnnkit_docs",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.md5", "auto_examples/*.py",
                    "auto_examples/*.ipynb", "auto_examples/*.zip"]
templates_path = ["_templates"]

html_theme = "pydata_sphinx_theme"
html_title = f"cnnkit {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path = []

# API reference: one page per public module, listing the names in its __all__ (autosummary
# reads __all__), so a name added to __all__ appears without editing these pages.
autosummary_generate = True
autosummary_ignore_module_all = False
autosummary_imported_members = False
# Optional dependencies that are not installed are mocked, so their modules are still documented;
# installed ones are imported for real (the gallery runs them).
autodoc_mock_imports = [name for name in ("mpi4py", "dask", "distributed", "optuna", "onnx", "onnxruntime")
                        if importlib.util.find_spec(name) is None]

numpydoc_show_class_members = False   # autosummary lists them
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()    # the docstrings' content is reviewed, not linted here
numpydoc_xref_param_type = False

intersphinx_mapping = {}  # the build reads nothing from the network

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "capture_repr": (),  # print what an example prints, not the value of a block's last line
}
