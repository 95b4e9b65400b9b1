"""Affine (fully connected) layer on the BLAS kernels of cnnkit._ext.affine; same contract as
cnnkit.reference.affine.

The kernel threads each take a block of rows (of columns in a forward of fewer rows than threads)
and call BLAS single-threaded without the GIL while BLAS's own pool is held at one thread
(cnnkit/_runtime.py). The cache is (x as (N, D), w, x's shape): the caller's own arrays when
C-contiguous.
"""
import math

import numpy as np

from cnnkit._ext import affine as _kernels
from cnnkit._runtime import single_threaded_blas
from cnnkit.fast._checks import checked_float_arrays, checked_gradient
from cnnkit.fast._threads import product_threads


def affine_forward(x, w, b):
    """cnnkit.reference.affine_forward: x (N, d1, ..., dk), w (D, M), b (M,) -> out (N, M), cache."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must be at least 2-D (N, d1, ..., dk), got shape {x.shape}")
    rows, w, b = checked_float_arrays([x.reshape(len(x), math.prod(x.shape[1:])), w, b], ["x", "w", "b"],
                              ["(N, D)", "(D, M)", "(M,)"])
    out = np.empty((len(rows), w.shape[1]), dtype=rows.dtype)
    with single_threaded_blas():
        _kernels.affine_forward(rows, w, b, out, forward_threads(*rows.shape, w.shape[1]))
    return out, (rows, w, x.shape)


def affine_backward(dout, cache, input_grad=True):
    """Gradients of affine_forward: dout (N, M) -> dx (N, d1, ..., dk), dw (D, M), db (M,); dx None, not
    computed, when input_grad is False.
    """
    rows, w, x_shape = cache
    dout = checked_gradient(dout, rows.dtype, (len(rows), w.shape[1]))
    dx = np.empty_like(rows) if input_grad else None
    dw, db = np.empty_like(w), np.empty(w.shape[1], dtype=w.dtype)
    with single_threaded_blas():
        _kernels.affine_backward(dout, rows, w, dx, dw, db,
                                 _threads(max(len(rows), len(w)), (1 + input_grad) * rows.size * len(db)))
    return None if dx is None else dx.reshape(x_shape), dw, db


def forward_threads(n, features, units):
    """Kernel threads of the forward product (n, features) @ (features, units): blocks of rows, or of columns
    with fewer rows than threads (cnnkit/_ext/affine.pyx, 2.)."""
    return _threads(max(n, units), n * features * units)


def _threads(blocks, multiply_adds):
    """Kernel threads for a product of `multiply_adds` split into at most `blocks` row (or column) blocks."""
    return min(product_threads(multiply_adds), max(1, blocks))
