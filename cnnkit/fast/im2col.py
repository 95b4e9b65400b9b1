"""im2col / col2im on the compiled kernels."""
import numpy as np

from cnnkit._ext import im2col as _kernels
from cnnkit.fast import _threads
from cnnkit.fast._checks import check_shape, checked_float_arrays, checked_window


def im2col(x, kernel_size, stride, padding):
    """Patches of x (N, C, H, W) as columns (N, C*KH*KW, OH*OW); see cnnkit.reference.im2col."""
    (x,) = checked_float_arrays([x], ["x"], ["(N, C, H, W)"])
    kernel, stride, padding, (oh, ow) = checked_window(x.shape, kernel_size, stride, padding)
    cols = np.empty((x.shape[0], x.shape[1] * kernel[0] * kernel[1], oh * ow), dtype=x.dtype)
    _kernels.im2col_into(x, cols, *kernel, *stride, *padding, _threads.pool_threads(cols.size))
    return cols


def col2im(cols, x_shape, kernel_size, stride, padding):
    """Adjoint of im2col: scatter-add cols (N, C*KH*KW, OH*OW) into (N, C, H, W)."""
    (cols,) = checked_float_arrays([cols], ["cols"], ["(N, C*KH*KW, OH*OW)"])
    n, c, h, w = x_shape
    kernel, stride, padding, (oh, ow) = checked_window(x_shape, kernel_size, stride, padding)
    check_shape(cols, (n, c * kernel[0] * kernel[1], oh * ow), "cols")
    x = np.empty((n, c, h, w), dtype=cols.dtype)
    _kernels.col2im_into(cols, x, *kernel, *stride, *padding, _threads.pool_threads(cols.size))
    return x
