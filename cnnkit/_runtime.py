"""The thread runtime every layer shares: kernel thread counts, BLAS held at one thread, OpenMP's waiting.

The bottom of the package's layers: cnnkit._backend and cnnkit.fast both import it, and it
imports no other cnnkit module (the compiled OpenMP probe only, when first asked).

- The kernel thread count is a setting of the calling thread (its context, as for the
  decimal module). ``set_num_threads`` called from any thread but the main one changes that
  thread only; called from the main thread it also sets the process-wide default, which
  every thread that has not chosen its own count uses, threads started later included.
  Kernel threads add up across Python threads: two trainers in two threads on a 2-core
  machine should each run ``set_num_threads(1)``.
- BLAS's own thread pool is per process. ``single_threaded_blas()`` holds every loaded BLAS
  library (numpy's and scipy's OpenBLAS are two, each with its own pool) at one thread
  while any scope is open, in whatever thread, and gives back the previous counts when the
  outermost scope closes, so only the kernels' OpenMP threads run. OpenBLAS may add up a
  large product in another order on more threads, so a numpy product run outside the
  kernels can differ in its last bits depending on whether another thread is inside a
  kernel: for bit-for-bit results in several threads, hold BLAS at one thread for the whole
  process (``threadpoolctl.threadpool_limits(1)`` in the main thread).
- OpenMP reads how idle threads wait once, when it loads: ``prefer_short_spin()`` must run
  before the compiled extension is imported, and ``user_environment`` gives other libraries
  the environment without that choice.
"""
import contextvars
import functools
import os
import threading

from threadpoolctl import ThreadpoolController

_num_threads = None  # process default kernel thread count; None: OpenMP's default
_threads_choice = contextvars.ContextVar("cnnkit_num_threads", default=None)  # None: the default

WAIT_CHOICE_MARK = "CNNKIT_CHOSE_OMP_WAIT"  # set when cnnkit, not the user, chose how OpenMP threads wait
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # what the user may have chosen
SHORT_SPIN = {"GOMP_SPINCOUNT": "100000", "KMP_BLOCKTIME": "1"}  # about 1 ms (GNU's spins, LLVM's ms)


def prefer_short_spin():
    """Make idle OpenMP threads spin about a millisecond, then sleep, unless the user chose how they wait.

    A training step runs dozens of parallel regions with short gaps between: threads that
    sleep at once pay a wake-up on each, and threads that spin OpenMP's default time starve
    other threads on a small machine (BLAS's, another process's). Call this before the
    extension is imported (the `cnnkit` command does).
    """
    if not any(key in os.environ for key in WAIT_SETTINGS):
        os.environ.update(SHORT_SPIN, **{WAIT_CHOICE_MARK: "1"})


def user_environment(env):
    """env without the OpenMP waiting that prefer_short_spin chose: what other libraries run under."""
    if WAIT_CHOICE_MARK not in env:
        return dict(env)
    return {key: value for key, value in env.items() if key not in (*SHORT_SPIN, WAIT_CHOICE_MARK)}


@functools.cache
def _openmp():
    """The compiled OpenMP probe (cnnkit._ext._openmp), or None where the extension is not built.

    Imported on first use, not with cnnkit: loading it loads OpenMP, which must come after
    prefer_short_spin.
    """
    try:
        from cnnkit._ext import _openmp
    except ImportError:
        return None
    return _openmp


def openmp_enabled():
    """True when the fast kernels were compiled with OpenMP."""
    openmp = _openmp()
    return openmp is not None and openmp.openmp_enabled()


def in_main_thread():
    """True in the main thread, whose settings are also the process defaults."""
    return threading.current_thread() is threading.main_thread()


def set_num_threads(n):
    """Set the calling thread's kernel thread count (an int >= 1, or None for OpenMP's default).

    From the main thread it also becomes the process default that other threads use.
    """
    global _num_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads expects an int >= 1 or None, got {n!r}")
    if in_main_thread():
        _num_threads = n
    _threads_choice.set(n)


def get_num_threads():
    """Threads the calling thread's kernels use: 1 without OpenMP, else the set count or OpenMP's default."""
    if not openmp_enabled():
        return 1
    chosen = _threads_choice.get()
    if chosen is None:
        chosen = _num_threads
    return chosen if chosen is not None else _openmp().max_threads()


class _SingleThreadedBlas:
    """Re-entrant, thread-safe scope holding every loaded BLAS library at one thread.

    Only the outermost scope reads and sets the libraries' counts, through threadpoolctl's
    cached controllers; nested scopes only count their depth, so a scope per op is cheap.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._restore = []  # (library, previous count) to set back when the outermost scope closes

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                self._restore = [(set_count, get_count()) for get_count, set_count in _blas_thread_counts()]
                for set_count, count in self._restore:
                    if count != 1:
                        set_count(1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for set_count, count in self._restore:
                    if count != 1:
                        set_count(count)


_SCOPE = _SingleThreadedBlas()


def single_threaded_blas():
    """Context manager: every loaded BLAS library at one thread until the outermost such scope closes."""
    return _SCOPE


@functools.cache
def _blas_thread_counts():
    """(get, set) of the thread count of each BLAS library loaded (numpy's and scipy's), found once:
    threadpoolctl.threadpool_limits would rescan the loaded libraries on every call."""
    return tuple(map(_thread_count_functions, ThreadpoolController().select(user_api="blas").lib_controllers))


def _thread_count_functions(lib):
    """(get, set) of the thread count of the BLAS library of threadpoolctl controller lib: for OpenBLAS on its own
    threads (the wheels'), its C functions themselves (a scope took 4.6 us through the controllers, a twentieth of
    a batch-1 inference, 2.0 with these); else the controller's methods."""
    symbol = getattr(lib, "_get_symbol", None)
    if lib.internal_api == "openblas" and lib.threading_layer == "pthreads" and symbol is not None:
        get_count, set_count = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        if get_count is not None and set_count is not None:
            return get_count, set_count
    return lib.get_num_threads, lib.set_num_threads
