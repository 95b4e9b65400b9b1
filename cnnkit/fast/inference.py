"""Forward-only steps for an inference plan (cnnkit.models.inference) on the kernels of cnnkit._ext.

A step is made for one input shape and dtype, checked once then by the plan: it owns its
output buffer (the same array on every call), keeps no cache for a backward, and calls its
kernel with the algorithm (cnnkit.fast.conv's choice) and thread count the op of cnnkit.fast
would take for that shape, so that its output is that op's bit for bit (2x2 max pooling's
but for which of two equal zeros or NaNs it keeps). The caller holds BLAS at one thread
around a run (cnnkit.fast._threads.single_threaded_blas) and passes C-contiguous arrays.
"""
import math

import numpy as np

from cnnkit._ext import activations as _activations
from cnnkit._ext import affine as _affine
from cnnkit._ext import inference as _inference
from cnnkit._ext import pool as _pool
from cnnkit._ext.activations import Activation
from cnnkit._runtime import single_threaded_blas
from cnnkit.fast._checks import checked_window
from cnnkit.fast._elementwise import element_threads
from cnnkit.fast._threads import pool_threads, product_threads
from cnnkit.fast.affine import forward_threads as affine_threads
from cnnkit.fast.conv import forward_algorithm, run_forward, takes_pooling

__all__ = ["affine", "avg_pool2d", "conv2d", "max_pool2d", "maxout", "relu", "single_threaded_blas"]


def conv2d(x_shape, w_shape, dtype, stride, padding, relu, pool=False):
    """Step(x, w, b) -> out (N, F, OH, OW): conv2d_forward of x (N, C, H, W), its ReLU when relu; with pool,
    the 2x2 max pooling at stride 2 of that (N, F, OH // 2, OW // 2), fused into the convolution's output
    pass where it runs on im2col (cnnkit/_ext/conv.pyx, 11.) or direct (cnnkit/_ext/direct_avx512.pyx, 3.), a
    step of its own after it elsewhere (Winograd, pointwise).

    w (F, C, KH, KW) and b (F,) are passed on each call (they may have changed in place).
    """
    kernel, stride, padding, out_hw = checked_window(x_shape, w_shape[2:], stride, padding)
    out_shape = (x_shape[0], w_shape[0], *out_hw)
    threads = product_threads(math.prod(out_shape) * math.prod(w_shape[1:]))  # as cnnkit.fast.conv counts
    algorithm = forward_algorithm(x_shape, w_shape, kernel, stride, padding, out_hw, dtype)
    if pool and not takes_pooling(algorithm, kernel, stride, padding):
        convolution, pooling = (conv2d(x_shape, w_shape, dtype, stride, padding, relu),
                                  _halving_max_pool(out_shape, dtype))
        return lambda x, w, b: pooling(convolution(x, w, b))
    out = np.empty(out_shape[:2] + tuple(size // 2 for size in out_hw) if pool else out_shape, dtype)

    def step(x, w, b):
        run_forward(algorithm, x, w, b, out, kernel, stride, padding, threads, relu, pool)
        return out
    return step


def affine(x_shape, w_shape, dtype, relu):
    """Step(x, w, b) -> out (N, M) = x.reshape(N, D) @ w.reshape(D, M) + b.reshape(M), its ReLU when relu.

    w of shape w_shape (D, M, ...) and b are passed on each call.
    """
    n, features, units = x_shape[0], math.prod(x_shape[1:]), math.prod(w_shape[1:])
    out = np.empty((n, units), dtype)
    threads = affine_threads(n, features, units)

    def step(x, w, b):
        _affine.affine_forward(x.reshape(n, features), w.reshape(features, units), b.reshape(units), out, threads, relu)
        return out
    return step


def maxout(x_shape, w_shape, dtype):
    """Step(x, w, b) -> out (N, M) = max over k of the affine pieces x @ w[:, :, k] + b[:, k], w (D, M, K)."""
    pieces = affine(x_shape, w_shape, dtype, relu=False)
    out = np.empty((x_shape[0], w_shape[1]), dtype)

    def step(x, w, b):
        return np.max(pieces(x, w, b).reshape(out.shape + w_shape[2:]), axis=2, out=out)
    return step


def max_pool2d(x_shape, dtype, kernel_size, stride, padding):
    """Step(x) -> out (N, C, OH, OW): max_pool2d_forward of x (N, C, H, W)."""
    out, args, threads = _pooled(x_shape, dtype, kernel_size, stride, padding)
    if args == [2, 2, 2, 2, 0, 0]:
        return _halving_max_pool(x_shape, dtype)
    argmax = np.empty(out.shape, np.intc)  # the kernel records it; nothing reads it here

    def step(x):
        _pool.max_pool_forward(x, out, argmax, *args, threads)
        return out
    return step


def _halving_max_pool(x_shape, dtype):
    """Step(x) -> out (N, C, H // 2, W // 2): max_pool2d_forward of x (N, C, H, W) over 2x2 windows at stride 2,
    on a kernel that records no argmax (cnnkit/_ext/inference.pyx)."""
    out, _, threads = _pooled(x_shape, dtype, 2, 2, 0)

    def step(x):
        _inference.max_pool_2x2(x, out, threads)
        return out
    return step


def avg_pool2d(x_shape, dtype, kernel_size, stride, padding):
    """Step(x) -> out (N, C, OH, OW): avg_pool2d_forward of x (N, C, H, W)."""
    out, args, threads = _pooled(x_shape, dtype, kernel_size, stride, padding)

    def step(x):
        _pool.avg_pool_forward(x, out, *args, threads)
        return out
    return step


def _pooled(x_shape, dtype, kernel_size, stride, padding):
    """(output buffer, the six window ints, threads) of a pooling step."""
    kernel, stride, padding, out_hw = checked_window(x_shape, kernel_size, stride, padding)
    args = [v for pair in (kernel, stride, padding) for v in pair]
    return np.empty((*x_shape[:2], *out_hw), dtype), args, pool_threads(math.prod(x_shape))


def relu(x_shape, dtype):
    """Step(x) -> out of x's shape: relu_forward of x."""
    out = np.empty(x_shape, dtype)
    flat_out, threads = out.reshape(-1), element_threads(out.size)

    def step(x):
        _activations.activation_forward(Activation.RELU, x.reshape(-1), flat_out, 0.0, threads)
        return out
    return step
