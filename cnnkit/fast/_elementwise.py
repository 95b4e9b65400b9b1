"""What the elementwise fast ops share: a C-contiguous float input and their thread count."""
import numpy as np

from cnnkit._validation import check_float
from cnnkit.fast._threads import kernel_threads

ELEMENT_GRAIN = 1 << 17  # elements per thread for one elementwise pass (~20 us of one core's work)


def contiguous_float(x, name="x"):
    """C-contiguous float32/float64 x (TypeError naming the dtype otherwise)."""
    x = np.asarray(x)
    check_float(x, names=[name])
    return np.asarray(x, order="C")  # unlike ascontiguousarray, keeps a 0-d array 0-d


def element_threads(size):
    """Threads for an elementwise pass over `size` elements."""
    return kernel_threads(size, ELEMENT_GRAIN)
