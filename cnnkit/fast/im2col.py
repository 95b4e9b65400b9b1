"""im2col / col2im on the compiled kernels."""
import numpy as np

from cnnkit._backend import get_num_threads
from cnnkit._ext import im2col as _kernels


def im2col(x, kernel_size, stride, padding):
    """Patches of x (N, C, H, W) as columns (N, C*KH*KW, OH*OW); see cnnkit.reference.im2col."""
    return _kernels.im2col(np.ascontiguousarray(x), *kernel_size, *stride, *padding, get_num_threads())


def col2im(cols, x_shape, kernel_size, stride, padding):
    """Adjoint of im2col: scatter-add cols (N, C*KH*KW, OH*OW) into (N, C, H, W)."""
    _, c, h, w = x_shape
    return _kernels.col2im(np.ascontiguousarray(cols), c, h, w, *kernel_size, *stride, *padding,
                           get_num_threads())
