"""Inverted dropout on the kernels of cnnkit._ext.dropout; same contract as cnnkit.reference.dropout.

The mask is the reference's: the same numpy draws (default_rng(seed).random, taken into a
buffer kept per thread; with "row", the reference's per-example draws), kept where draw >= p;
the kernels do the rest. The cache is the keep mask as bytes and the kept units' scale
1 / (1 - p), or None in test mode.
"""
import threading

import numpy as np

from cnnkit._ext import dropout as _kernels
from cnnkit._validation import check_param_dict, check_real, check_seed
from cnnkit.fast._checks import checked_gradient
from cnnkit.fast._elementwise import contiguous_float, element_threads
from cnnkit.reference.dropout import uniform_draws

_kept = threading.local()  # .draws: float64 buffer of the largest draw so far in this thread


def dropout_forward(x, dropout_param):
    """cnnkit.reference.dropout_forward: x of any shape -> out of its shape and dtype, cache."""
    x = contiguous_float(x)
    mode = check_param_dict(dropout_param, "dropout_param")
    if mode != "train":
        return x.copy(), None
    p = check_real(dropout_param.get("p"), "dropout_param['p']", "a probability in [0, 1)", lambda v: 0 <= v < 1)
    seed = dropout_param.get("seed")
    check_seed(seed, "dropout_param['seed']")
    keep, out = np.empty(x.shape, dtype=np.uint8), np.empty_like(x)
    scale = x.dtype.type(1) / x.dtype.type(1 - p)
    draws = _draws(seed, x.size) if dropout_param.get("row") is None else uniform_draws(x.shape, dropout_param)
    _kernels.dropout_forward(draws.reshape(-1), p, x.reshape(-1), keep.reshape(-1), out.reshape(-1), scale,
                             element_threads(x.size))
    return out, (keep, scale)


def dropout_backward(dout, cache):
    """Gradient of dropout_forward: dout through the forward's mask."""
    if cache is None:
        return np.array(dout, copy=True)
    keep, scale = cache
    dout = checked_gradient(dout, np.dtype(type(scale)), keep.shape)
    dx = np.empty(keep.shape, dtype=dout.dtype)
    _kernels.dropout_backward(dout.reshape(-1), keep.reshape(-1), dx.reshape(-1), scale, element_threads(dx.size))
    return dx


def _draws(seed, size):
    """default_rng(seed).random(size), the reference's draws, in this thread's kept buffer."""
    if getattr(_kept, "draws", np.empty(0)).size < size:
        _kept.draws = np.empty(size)
    return np.random.default_rng(seed).random(out=_kept.draws[:size])
