"""How many threads an op runs on: those of ``cnnkit.set_num_threads``, fewer for small work.

A thread must have at least a grain of work (as in PyTorch's parallel_for): waking a
second thread costs microseconds on an idle machine but whole scheduler slices (~10 ms
measured) when other processes keep the cores busy, and a small op is not worth that.
"""
import contextlib
import functools

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


@contextlib.contextmanager
def split_over_images(n_images, work):
    """Yield the kernel thread count for a pass over n_images while BLAS is capped to match.

    The kernel threads take whole images; BLAS gets the threads left over when there are
    fewer images than threads, and runs single-threaded inside each kernel thread otherwise.
    """
    useful = kernel_threads(work, CONV_GRAIN)
    threads = min(useful, max(1, n_images))
    with _blas().limit(limits=max(1, useful // threads)):
        yield threads


@functools.cache
def _blas():
    """threadpoolctl's handle on the BLAS libraries loaded (numpy's among them)."""
    return ThreadpoolController().select(user_api="blas")
