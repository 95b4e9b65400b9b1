"""2-D convolution on the compiled drivers of cnnkit._ext.conv; same contract as cnnkit.reference.conv.

The kernel threads (``cnnkit.set_num_threads``, fewer for small work) take bands of
output rows: im2col into a private buffer that stays in cache, the band's GEMMs as direct
single-threaded BLAS calls without the GIL, col2im (see cnnkit/_ext/conv.pyx). BLAS's
own pool is held at one thread meanwhile (cnnkit/fast/_threads.py).
The cache holds x, w, b and the window, not the im2col columns: x, w and b are the
caller's own arrays when C-contiguous, so the cache costs no memory then.
"""
import math

import numpy as np

from cnnkit._ext import conv as _kernels
from cnnkit.fast._checks import float_arrays, gradient, window
from cnnkit.fast._threads import CONV_GRAIN, kernel_threads, single_threaded_blas


def conv2d_forward(x, w, b, stride, padding):
    """cnnkit.reference.conv2d_forward on the compiled drivers: x (N, C, H, W), w (F, C, KH, KW),
    b (F,) -> out (N, F, OH, OW), cache (x, w, b, (kernel, stride, padding)).
    """
    x, w, b = float_arrays([x, w, b], ["x", "w", "b"], ["(N, C, H, W)", "(F, C, KH, KW)", "(F,)"])
    if x.shape[1] != w.shape[1] or b.shape[0] != w.shape[0]:
        raise ValueError(f"x {x.shape}, w {w.shape} and b {b.shape} do not match: expected x (N, C, H, W), "
                         f"w (F, C, KH, KW), b (F,)")
    kernel, stride, padding, out_hw = window(x.shape, w.shape[2:], stride, padding)
    out = np.empty(x.shape[:1] + w.shape[:1] + out_hw, dtype=x.dtype)
    with single_threaded_blas():
        _kernels.conv_forward(x, _wb(w, b), _flat_hw(out), *kernel, *stride, *padding,
                              kernel_threads(_multiply_adds(out, w), CONV_GRAIN))
    return out, (x, w, b, (kernel, stride, padding))


def conv2d_backward(dout, cache):
    """cnnkit.reference.conv2d_backward: dout (N, F, OH, OW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,)."""
    x, w, b, (kernel, stride, padding) = cache
    out_hw = window(x.shape, kernel, stride, padding)[3]
    dout = gradient(dout, x.dtype, x.shape[:1] + w.shape[:1] + out_hw)
    dx, dwb = np.empty_like(x), np.empty((len(w), math.prod(w.shape[1:]) + 1), dtype=x.dtype)
    with single_threaded_blas():
        _kernels.conv_backward(x, _wb(w, b), _flat_hw(dout), dx, dwb, *kernel, *stride, *padding,
                               kernel_threads(2 * _multiply_adds(dout, w), CONV_GRAIN))
    return dx, dwb[:, :-1].reshape(w.shape), dwb[:, -1].copy()


def _flat_hw(a):
    """(N, F, OH, OW) -> (N, F, OH*OW) view, N = 0 included."""
    return a.reshape(a.shape[:2] + (a.shape[2] * a.shape[3],))


def _wb(w, b):
    """[w.reshape(F, C*KH*KW) | b], shape (F, C*KH*KW + 1): the drivers' weight matrix."""
    return np.concatenate([w.reshape(len(w), -1), b[:, None]], axis=1)


def _multiply_adds(out, w):
    """Multiply-adds of one GEMM pass: N*F*OH*OW outputs times C*KH*KW."""
    return out.size * (w.size // max(1, len(w)))
