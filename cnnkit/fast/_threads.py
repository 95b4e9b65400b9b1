"""How many OpenMP threads a fast op runs on.

- Only the kernels' OpenMP threads run. A kernel that multiplies matrices calls BLAS
  (scipy.linalg.cython_blas, cnnkit/_ext/_blas.pxd) from inside its parallel region, one
  single-threaded product per kernel thread, while cnnkit._runtime.single_threaded_blas holds
  BLAS's own pool at one thread. Threads left without an item stay idle (the conv forward
  cuts images into bands so that one image still feeds every thread); BLAS never gets them.
- An op runs on at most the calling thread's ``cnnkit.get_num_threads()`` threads, and on
  fewer when it has less than a grain of work per thread (as in PyTorch's parallel_for):
  waking a thread costs little on an idle machine but a whole scheduler slice when other
  processes keep the cores busy, which a small op is not worth.
"""
from cnnkit._runtime import get_num_threads

POOL_GRAIN = 1 << 17  # input elements per thread for pooling and im2col/col2im
CONV_GRAIN = 1 << 17  # multiply-adds per thread for a convolution pass or a product: a few microseconds


def kernel_threads(work, grain):
    """Threads for `work` units: at most get_num_threads(), at least one, one per `grain` units."""
    return max(1, min(get_num_threads(), work // grain))


def product_threads(multiply_adds):
    """Threads for a convolution pass or matrix product of `multiply_adds`."""
    return kernel_threads(multiply_adds, CONV_GRAIN)


def pool_threads(elements):
    """Threads for a pooling or im2col/col2im kernel over `elements` input (or column) entries."""
    return kernel_threads(elements, POOL_GRAIN)
