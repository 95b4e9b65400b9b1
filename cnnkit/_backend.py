"""Which implementation cnnkit.functional dispatches to.

The active backend is "fast" (Cython kernels in cnnkit._ext plus BLAS) or "reference"
(pure numpy). "auto", the default, takes fast when its extension imports and otherwise
falls back to reference with one warning.

The backend is a setting of the calling thread (its context, as for the decimal module):
``use_backend`` scopes it to a block of the calling thread or asyncio task, and
``set_backend`` called from any thread but the main one changes that thread only. Called
from the main thread, ``set_backend`` also sets the process-wide default, which every
thread that has not chosen its own backend uses, threads started later included.
CNNKIT_BACKEND sets the initial default. Kernel thread counts and BLAS's threads follow
the same rules and live in cnnkit._runtime.
"""
import contextlib
import contextvars
import os
import warnings

from cnnkit import reference
from cnnkit._memory import retain_freed_memory
from cnnkit._runtime import in_main_thread, single_threaded_blas

BACKENDS = ("fast", "reference")
CHOICES = ("auto",) + BACKENDS
REBUILD_HINT = (
    "the compiled extension cnnkit._ext did not import ({error}); rebuild it with "
    "`pip install --force-reinstall --no-binary cnnkit cnnkit`, or `pip install -e .` "
    "in a source checkout (needs a C compiler)"
)

_default_backend = None  # process default, resolved from CNNKIT_BACKEND on first use
_fallback_warned = False
_backend_choice = contextvars.ContextVar("cnnkit_backend", default=None)  # None: the default


def _import_fast():
    """Return the cnnkit.fast module or raise ImportError with a rebuild hint.

    Imported on first use, not with cnnkit: the compiled extension is optional, and loading
    it loads OpenMP, which must come after cnnkit._runtime.prefer_short_spin.
    """
    try:
        import cnnkit.fast as fast
    except ImportError as error:
        raise ImportError(REBUILD_HINT.format(error=error)) from error
    return fast


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


def kernel_runtime():
    """Context for a loop of ops, such as training: on the fast backend BLAS stays at one
    thread throughout, so only the kernels' threads run (cnnkit._runtime.single_threaded_blas),
    and malloc keeps the memory one step frees for the next (cnnkit._memory; from then on,
    for the process). On the reference backend it does nothing: numpy's products use
    BLAS's threads.
    """
    if get_backend() != "fast":
        return contextlib.nullcontext()
    retain_freed_memory()
    return single_threaded_blas()


def available_backends():
    """Names of the backends that work here, e.g. ("fast", "reference")."""
    try:
        _import_fast()
    except ImportError:
        return ("reference",)
    return BACKENDS


def get_backend():
    """Name of the calling thread's backend: "fast" or "reference"."""
    global _default_backend
    chosen = _backend_choice.get()
    if chosen is not None:
        return chosen
    if _default_backend is None:
        _default_backend = _resolve(os.environ.get("CNNKIT_BACKEND", "auto"), source="CNNKIT_BACKEND value")
    return _default_backend


def set_backend(name):
    """Make `name` ("auto", "fast" or "reference") the calling thread's backend.

    From the main thread it also becomes the process default that other threads use.
    """
    global _default_backend
    resolved = _resolve(name)
    if in_main_thread():
        _default_backend = resolved
    _backend_choice.set(resolved)


@contextlib.contextmanager
def use_backend(name):
    """Context manager: run the block on backend `name` in this thread (or task) only, then restore."""
    token = _backend_choice.set(_resolve(name))
    try:
        yield get_backend()
    finally:
        _backend_choice.reset(token)


def backend_module(name=None):
    """The module implementing backend `name` (default: the active one)."""
    name = name or get_backend()
    return _import_fast() if name == "fast" else reference


def resolve_op(op_name):
    """The active backend's function `op_name`, or the reference one where fast has none."""
    op = getattr(backend_module(), op_name, None)
    return op if op is not None else getattr(backend_module("reference"), op_name)

