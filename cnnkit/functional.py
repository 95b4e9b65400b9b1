"""Public ops: validate the arguments once, then dispatch to the active backend.

Every op has the same signature here, in cnnkit.reference and in cnnkit.fast.
Ops the fast backend does not implement are served by the reference.
"""
import numpy as np

from cnnkit._backend import resolve_op
from cnnkit._validation import check_float, check_ndim, output_size, window_args


def im2col(x, kernel_size, stride=1, padding=0):
    """Patches of x as columns.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
    kernel_size, stride, padding : int or pair of ints

    Returns
    -------
    cols : ndarray of shape (N, C*KH*KW, OH*OW)
        Row (c*KH + i)*KW + j, column oh*OW + ow holds x[n, c, oh*SH - PH + i, ow*SW - PW + j]
        (zero in the padding).
    """
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_float(x, names=["x"])
    kernel, stride, padding = window_args(kernel_size, stride, padding)
    _output_hw(x.shape, kernel, stride, padding)
    return resolve_op("im2col")(x, kernel, stride, padding)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0):
    """Adjoint of im2col: scatter-add cols (N, C*KH*KW, OH*OW) into an array of shape x_shape."""
    check_ndim(cols, 3, "cols", "(N, C*KH*KW, OH*OW)")
    check_float(cols, names=["cols"])
    kernel, stride, padding = window_args(kernel_size, stride, padding)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {x_shape}")
    oh, ow = _output_hw(x_shape, kernel, stride, padding)
    expected = (x_shape[0], x_shape[1] * kernel[0] * kernel[1], oh * ow)
    if cols.shape != expected:
        raise ValueError(f"cols must have shape {expected} for x_shape {tuple(x_shape)}, got {cols.shape}")
    return resolve_op("col2im")(cols, tuple(x_shape), kernel, stride, padding)


def _output_hw(x_shape, kernel, stride, padding):
    """(OH, OW) for an (N, C, H, W) input, or ValueError naming the sizes."""
    return tuple(output_size(x_shape[2 + d], kernel[d], stride[d], padding[d]) for d in range(2))
