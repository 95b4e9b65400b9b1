"""Which implementation cnnkit.functional dispatches to, and how many kernel threads run.

The active backend is "fast" (Cython kernels in cnnkit._ext plus BLAS) or "reference"
(pure numpy). "auto", the default, takes fast when its extension imports and otherwise
falls back to reference with one warning.

Per thread and per process:

- The backend and the kernel thread count are settings of the calling thread (its
  context, as for the decimal module): ``use_backend`` scopes the backend to a block of
  the calling thread or asyncio task, and ``set_backend`` / ``set_num_threads`` called
  from any thread but the main one change that thread only.
- Called from the main thread, ``set_backend`` / ``set_num_threads`` also set the
  process-wide default, which every thread that has not chosen its own setting uses,
  threads started later included. CNNKIT_BACKEND sets the initial default backend.
- Kernel threads add up across Python threads: two trainers in two threads on a 2-core
  machine should each run ``set_num_threads(1)``.
- BLAS's own thread pool is per process (threadpoolctl sets it for every thread). The
  fast kernels hold it at one thread while any of them runs, in whatever thread, and
  restore it when the last one ends (cnnkit.fast._threads). OpenBLAS may add up a large
  product in another order on more threads, so a numpy product run outside the kernels
  can differ in its last bits depending on whether another thread is inside a kernel:
  for bit-for-bit results in several threads, hold BLAS at one thread for the whole
  process (``threadpoolctl.threadpool_limits(1)`` in the main thread).
"""
import contextlib
import contextvars
import importlib
import os
import threading
import warnings

from cnnkit._memory import retain_freed_memory

BACKENDS = ("fast", "reference")
CHOICES = ("auto",) + BACKENDS
REBUILD_HINT = (
    "the compiled extension cnnkit._ext did not import ({error}); rebuild it with "
    "`pip install --force-reinstall --no-binary cnnkit cnnkit`, or `pip install -e .` "
    "in a source checkout (needs a C compiler)"
)

_default_backend = None  # process default, resolved from CNNKIT_BACKEND on first use
_num_threads = None  # process default kernel thread count; None: OpenMP's default
_fallback_warned = False
_backend_choice = contextvars.ContextVar("cnnkit_backend", default=None)  # None: the default
_threads_choice = contextvars.ContextVar("cnnkit_num_threads", default=None)  # None: the default


WAIT_CHOICE_MARK = "CNNKIT_CHOSE_OMP_WAIT"  # set when cnnkit, not the user, chose how OpenMP threads wait
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # what the user may have chosen
SHORT_SPIN = {"GOMP_SPINCOUNT": "100000", "KMP_BLOCKTIME": "1"}  # about 1 ms (GNU's spins, LLVM's ms)


def prefer_short_spin():
    """Make idle OpenMP threads spin about a millisecond, then sleep, unless the user chose how they wait.

    A training step runs dozens of parallel regions with short gaps between: threads that
    sleep at once (the passive policy) pay a wake-up on each, 1.5 ms of a 9 ms MNIST step on
    2 cores. Threads that spin OpenMP's default time (about 4 ms of CPU after every region
    here) starve other threads on a small machine (BLAS's, another process's). OpenMP reads
    the variables once, when it loads: call this before the extension is imported (the
    `cnnkit` command does).
    """
    if not any(key in os.environ for key in WAIT_SETTINGS):
        os.environ.update(SHORT_SPIN, **{WAIT_CHOICE_MARK: "1"})


def user_environment(env):
    """env without the OpenMP waiting that prefer_short_spin chose: what other libraries run under."""
    if WAIT_CHOICE_MARK not in env:
        return dict(env)
    return {key: value for key, value in env.items() if key not in (*SHORT_SPIN, WAIT_CHOICE_MARK)}


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


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def kernel_runtime():
    """Context for a loop of ops, such as training: on the fast backend BLAS stays at one
    thread throughout, so only the kernels' threads run (cnnkit.fast._threads, policy 2),
    and malloc keeps the memory one step frees for the next (cnnkit._memory; from then on,
    for the process). On the reference backend it does nothing: numpy's products use
    BLAS's threads.
    """
    if get_backend() != "fast":
        return contextlib.nullcontext()
    retain_freed_memory()
    return importlib.import_module("cnnkit.fast._threads").single_threaded_blas()


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
    if _in_main_thread():
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
    """Set the calling thread's kernel thread count (an int >= 1, or None for OpenMP's default).

    From the main thread it also becomes the process default that other threads use.
    """
    global _num_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads expects an int >= 1 or None, got {n!r}")
    if _in_main_thread():
        _num_threads = n
    _threads_choice.set(n)


def get_num_threads():
    """Threads the calling thread's kernels use: 1 without OpenMP, else the set count or OpenMP's default."""
    if not openmp_enabled():
        return 1
    chosen = _threads_choice.get()
    if chosen is None:
        chosen = _num_threads
    if chosen is not None:
        return chosen
    from cnnkit._ext import _openmp
    return _openmp.max_threads()
