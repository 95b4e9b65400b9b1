"""Which implementation cnnkit.functional dispatches to, and how many kernel threads run.

The active backend is "fast" (Cython kernels in cnnkit._ext plus BLAS) or "reference"
(pure numpy). "auto", the default, takes fast when its extension imports and otherwise
falls back to reference with one warning. CNNKIT_BACKEND sets the default.
"""
import contextlib
import importlib
import os
import warnings

BACKENDS = ("fast", "reference")
CHOICES = ("auto",) + BACKENDS
REBUILD_HINT = (
    "the compiled extension cnnkit._ext did not import ({error}); rebuild it with "
    "`pip install --force-reinstall --no-binary cnnkit cnnkit`, or `pip install -e .` "
    "in a source checkout (needs a C compiler)"
)

_active = None  # resolved backend name; None until first use
_fallback_warned = False
_num_threads = None  # None: OpenMP's default


def _import_fast():
    """Return the cnnkit.fast module or raise ImportError with a rebuild hint."""
    try:
        return importlib.import_module("cnnkit.fast")
    except ImportError as error:
        raise ImportError(REBUILD_HINT.format(error=error)) from error


def _resolve(name, source="backend"):
    """Turn a choice ("auto", "fast", "reference") into the backend name to use."""
    if name not in CHOICES:
        raise ValueError(f"unknown {source} {name!r}; expected one of {', '.join(map(repr, CHOICES))}")
    if name == "fast":
        _import_fast()
    if name != "auto":
        return name
    try:
        _import_fast()
        return "fast"
    except ImportError as error:
        global _fallback_warned
        if not _fallback_warned:
            _fallback_warned = True
            warnings.warn(f"cnnkit falls back to the reference backend: {error}", RuntimeWarning, stacklevel=4)
        return "reference"


def available_backends():
    """Names of the backends that work here, e.g. ("fast", "reference")."""
    try:
        _import_fast()
    except ImportError:
        return ("reference",)
    return BACKENDS


def get_backend():
    """Name of the active backend: "fast" or "reference"."""
    global _active
    if _active is None:
        _active = _resolve(os.environ.get("CNNKIT_BACKEND", "auto"), source="CNNKIT_BACKEND value")
    return _active


def set_backend(name):
    """Make `name` ("auto", "fast" or "reference") the active backend."""
    global _active
    _active = _resolve(name)


@contextlib.contextmanager
def use_backend(name):
    """Context manager: run the block on backend `name`, then restore the previous one."""
    global _active
    previous = get_backend()
    set_backend(name)
    try:
        yield get_backend()
    finally:
        _active = previous


def backend_module(name=None):
    """The module implementing backend `name` (default: the active one)."""
    name = name or get_backend()
    return _import_fast() if name == "fast" else importlib.import_module("cnnkit.reference")


def resolve_op(op_name):
    """The active backend's function `op_name`, or the reference one where fast has none."""
    op = getattr(backend_module(), op_name, None)
    return op if op is not None else getattr(backend_module("reference"), op_name)


def openmp_enabled():
    """True when the fast kernels were compiled with OpenMP."""
    try:
        from cnnkit._ext import _openmp
    except ImportError:
        return False
    return _openmp.openmp_enabled()


def set_num_threads(n):
    """Set the kernels' OpenMP thread count (an int >= 1, or None for OpenMP's default)."""
    global _num_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads expects an int >= 1 or None, got {n!r}")
    _num_threads = n


def get_num_threads():
    """Threads the kernels use: 1 without OpenMP, else the set count or OpenMP's default."""
    if not openmp_enabled():
        return 1
    if _num_threads is not None:
        return _num_threads
    from cnnkit._ext import _openmp
    return _openmp.max_threads()
