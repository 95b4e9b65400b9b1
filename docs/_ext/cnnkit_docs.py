"""Sphinx extension of cnnkit's docs: the API reference's pages and the speed suite's table.

The API reference has a page for every public module of cnnkit (a top-level module whose name
does not start with an underscore), listing the names of its ``__all__`` (or, without one, the
public names it defines), so a module or a name added to the package appears without editing
the docs; `api/index.rst` is written from the package before Sphinx reads the sources. Each
object is documented once, on the page of the module that defines it (or of the nearest
documented package above it); other pages that re-export it link there.

Docstrings are written as plain text with reST markup in backticks: a ``|x|`` (absolute value)
or ``*args`` outside backticks is quoted before numpydoc and docutils read it.

The speed suite's table is shown from `performance/suite.csv` when that file exists (it is
written by `cnnkit bench --suite --rounds 3 --csv docs/performance/suite.csv`).
"""
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst.directives.tables import CSVTable

import cnnkit

COMMAND_LINE = {"cli", "commands"}  # the `cnnkit` command: its user-guide pages document it
SUITE_COMMAND = "cnnkit bench --suite --rounds 3 --csv docs/performance/suite.csv"

API_INDEX = """\
API reference
=============

Every public name of cnnkit, module by module. The pages are generated from the docstrings
(numpydoc format); the names listed for each module are those of its ``__all__``.

.. autosummary::
   :toctree: generated

{modules}
"""


def public_modules():
    """cnnkit and its top-level public modules, in alphabetical order."""
    names = [info.name for info in pkgutil.iter_modules(cnnkit.__path__)
             if not info.name.startswith("_") and info.name not in COMMAND_LINE]
    return ["cnnkit"] + [f"cnnkit.{name}" for name in sorted(names)]


def public_names(module):
    """The names `module` offers: its __all__, else the public names it defines (modules excluded)."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, value in vars(module).items()
                 if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__]
    return [name for name in names if not inspect.ismodule(getattr(module, name))]


def home(obj, documented):
    """The documented module whose page documents obj: the longest one that obj.__module__ starts with."""
    defined_in = getattr(obj, "__module__", None) or ""
    prefixes = [name for name in documented if defined_in == name or defined_in.startswith(name + ".")]
    return max(prefixes, key=len, default=None)


def api_pages(documented):
    """{module: {"classes", "exceptions", "functions": names documented on its page,
    "elsewhere": names documented on another page}}."""
    pages = {}
    for module_name in documented:
        module = importlib.import_module(module_name)
        page = pages[module_name] = {"classes": [], "exceptions": [], "functions": [], "elsewhere": []}
        for name in sorted(public_names(module), key=str.lower):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj)):
                continue  # constants are described in the module's docstring
            owner = home(obj, documented)
            if owner not in (None, module_name) and name in public_names(importlib.import_module(owner)):
                full = f"{owner}.{name}"  # relative to the page's module when inside it, as autosummary asks
                page["elsewhere"].append(full.removeprefix(module_name + "."))
            elif inspect.isclass(obj):
                page["exceptions" if issubclass(obj, BaseException) else "classes"].append(name)
            else:
                page["functions"].append(name)
    return pages


def configure_api(app, config):
    """Write api/index.rst and give the module template its lists."""
    documented = public_modules()
    config.autosummary_context = {**config.autosummary_context, "api": api_pages(documented)}
    write_api_index(app, documented)


SUBSTITUTION = re.compile(r"(?<![`|\\])\|([^|`\n]+)\|(?![`|_])")   # |a - b|, outside backticks
STARRED = re.compile(r"(?<=[(\[,\s])(\*{1,2})(?=[A-Za-z_])(?![A-Za-z_]\w*\*)")  # *shape, **kwargs


def quote_plain_text(app, what, name, obj, options, lines):
    """Quote absolute values and starred names in docstrings, so that docutils reads them as text."""
    for index, line in enumerate(lines):
        if "`" in line:
            continue
        line = SUBSTITUTION.sub(r"``|\1|``", line)
        lines[index] = STARRED.sub(lambda match: "\\" + "\\".join(match.group(1)), line)


def write_api_index(app, documented):
    """Write api/index.rst (only when its text changes, so that Sphinx rebuilds no more than it must)."""
    path = Path(app.srcdir) / "api" / "index.rst"
    text = API_INDEX.format(modules="\n".join(f"   {name}" for name in documented))
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)


class SuiteTable(CSVTable):
    """``.. suite-table:: suite.csv``: the CSV as a table with a header row, or a note saying how to make it."""

    required_arguments = 1
    has_content = False

    def run(self):
        source = Path(self.state.document.current_source).parent / self.arguments[0]
        self.state.document.settings.record_dependencies.add(str(source))
        if not source.is_file():
            command = nodes.literal(text=SUITE_COMMAND)
            return [nodes.paragraph("", "The suite's table is not yet generated; run ", command, nodes.Text("."))]
        self.options.update({"file": self.arguments[0], "header-rows": 1})
        self.arguments = [source.stem.replace("_", " ").capitalize()]
        return super().run()


def setup(app):
    app.connect("config-inited", configure_api)
    app.connect("autodoc-process-docstring", quote_plain_text, priority=100)  # before numpydoc's
    app.add_directive("suite-table", SuiteTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
