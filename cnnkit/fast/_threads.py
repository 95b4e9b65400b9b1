"""One thread runtime: how many OpenMP threads an op runs on, and BLAS kept at one thread.

Policy (DESIGN.md, "one thread runtime"):

1. Only the kernels' OpenMP threads run. A kernel that multiplies matrices calls BLAS
   (scipy.linalg.cython_blas, cnnkit/_ext/_blas.pxd) from inside its parallel region,
   one single-threaded product per kernel thread, so BLAS's own worker pool has nothing
   to do. Threads left without an item stay idle (the conv forward cuts images into bands
   so that one image still feeds every thread); BLAS never gets them.
2. ``single_threaded_blas()`` holds every BLAS library loaded (numpy's and scipy's
   OpenBLAS are two libraries, each with its own pool) at one thread while it is open and
   gives back the previous counts when the outermost scope closes. Every fast op that
   calls BLAS opens one around its kernel. A training loop should open one around the
   whole loop: numpy products between kernels then run single-threaded too, so no BLAS
   worker spins against the kernels' threads (on 2 cores the two pools starve each
   other), and the per-op scopes inside only count their depth.
3. threadpoolctl finds the libraries once (a cached controller); an outermost scope then
   reads and sets their counts through its direct handles. Measured on the shared 2-core
   machine under load: ~10 us for an outermost scope over two libraries, ~2 us for a
   nested one, against ~25-40 us for ``ThreadpoolController.limit`` and ~1.8 ms for
   ``threadpool_limits``, which rescans the loaded libraries on every call.
4. A thread must have at least a grain of work (as in PyTorch's parallel_for): waking a
   second thread costs microseconds on an idle machine but whole scheduler slices (~10 ms
   measured) when other processes keep the cores busy, and a small op is not worth that.
"""
import functools
import threading

from threadpoolctl import ThreadpoolController

from cnnkit._backend import get_num_threads

POOL_GRAIN = 1 << 17  # input elements per thread for pooling and im2col/col2im (~0.2 ms)
CONV_GRAIN = 1 << 23  # multiply-adds per thread for a convolution pass (~0.3 ms)


def kernel_threads(work, grain):
    """Threads for `work` units: at most get_num_threads(), at least one, one per `grain` units."""
    return max(1, min(get_num_threads(), work // grain))


def pool_threads(elements):
    """Threads for a pooling or im2col/col2im kernel over `elements` input (or column) entries."""
    return kernel_threads(elements, POOL_GRAIN)


class _SingleThreadedBlas:
    """Re-entrant, thread-safe scope holding every loaded BLAS library at one thread (policy 2-3)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._restore = []  # (library, previous count) to set back when the outermost scope closes

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                self._restore = [(lib, lib.get_num_threads()) for lib in _blas_libraries()]
                for lib, count in self._restore:
                    if count != 1:
                        lib.set_num_threads(1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, count in self._restore:
                    if count != 1:
                        lib.set_num_threads(count)


_SCOPE = _SingleThreadedBlas()


def single_threaded_blas():
    """Context manager: BLAS at one thread until the outermost such scope closes (see policy 2)."""
    return _SCOPE


@functools.cache
def _blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries loaded (numpy's and scipy's)."""
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
