"""Max and average pooling on the direct kernels of cnnkit._ext.pool; same contract as cnnkit.reference.pool.

Max pooling keeps, for backward, the int32 flat index (h*W + w) of each window's first
maximum, shaped like the output; backward scatters dout through it. Average pooling
keeps only the window.
"""
import numpy as np

from cnnkit._ext import pool as _kernels
from cnnkit.fast import _threads
from cnnkit.fast._checks import checked_float_arrays, checked_gradient, checked_window


def _pooled(x, kernel_size, stride, padding):
    """(contiguous x, empty output (N, C, OH, OW), (kernel, stride, padding)) after checking x."""
    (x,) = checked_float_arrays([x], ["x"], ["(N, C, H, W)"])
    kernel, stride, padding, (oh, ow) = checked_window(x.shape, kernel_size, stride, padding)
    return x, np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype), (kernel, stride, padding)


def _flat(args):
    """kernel, stride, padding pairs as the six ints the kernels take."""
    return [v for pair in args for v in pair]


def max_pool2d_forward(x, kernel_size, stride, padding):
    """cnnkit.reference.max_pool2d_forward: x (N, C, H, W) -> out (N, C, OH, OW),
    cache (x shape, dtype, argmax (N, C, OH, OW)).
    """
    x, out, args = _pooled(x, kernel_size, stride, padding)
    argmax = np.empty(out.shape, dtype=np.intc)
    _kernels.max_pool_forward(x, out, argmax, *_flat(args), _threads.pool_threads(x.size))
    return out, (x.shape, x.dtype, argmax)


def max_pool2d_backward(dout, cache):
    """Gradient of max_pool2d_forward: dout (N, C, OH, OW) -> dx (N, C, H, W), to each first maximum."""
    x_shape, dtype, argmax = cache
    dout = checked_gradient(dout, dtype, argmax.shape)
    dx = np.empty(x_shape, dtype=dtype)
    _kernels.max_pool_backward(dout, argmax, dx, _threads.pool_threads(dx.size))
    return dx


def avg_pool2d_forward(x, kernel_size, stride, padding):
    """cnnkit.reference.avg_pool2d_forward: x (N, C, H, W) -> out (N, C, OH, OW),
    cache (x shape, dtype, output shape, window).
    """
    x, out, args = _pooled(x, kernel_size, stride, padding)
    _kernels.avg_pool_forward(x, out, *_flat(args), _threads.pool_threads(x.size))
    return out, (x.shape, x.dtype, out.shape, args)


def avg_pool2d_backward(dout, cache):
    """Gradient of avg_pool2d_forward: dout (N, C, OH, OW) -> dx (N, C, H, W)."""
    x_shape, dtype, out_shape, args = cache
    dout = checked_gradient(dout, dtype, out_shape)
    dx = np.empty(x_shape, dtype=dtype)
    _kernels.avg_pool_backward(dout, dx, *_flat(args), _threads.pool_threads(dx.size))
    return dx
