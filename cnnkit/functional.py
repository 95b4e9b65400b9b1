"""Public ops: validate the arguments once, then dispatch to the active backend.

Every op has the same signature here, in cnnkit.reference and in cnnkit.fast; ops the
fast backend does not implement are served by the reference. A forward returns
``(out, cache)`` and its backward takes ``(dout, cache)`` and returns the gradients in
input order. The cache remembers which backend ran the forward, so the backward runs
on the same one, and the output's shape and dtype, which dout must match.

Arrays are NCHW, a conv weight is (F, C, KH, KW), an affine weight is (D, M) and a
maxout weight is (D, M, K).
kernel_size, stride and padding are ints or pairs. Inputs must all be float32 or all
float64, and outputs keep that dtype.
"""
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from cnnkit import reference
from cnnkit._backend import resolve_op
from cnnkit._validation import (
    check_dims,
    check_float,
    check_labels,
    check_ndim,
    check_param_dict,
    check_real,
    check_seed,
    check_shape,
    check_state,
    output_size,
    pair,
    window_args,
)

__all__ = list(reference.__all__)  # the same ops, validated here and dispatched


class Cache(NamedTuple):
    """What a functional forward hands to its backward."""

    op: str  # e.g. "conv2d"
    backward: Callable  # the backend's backward, resolved with the forward
    out_shape: tuple
    dtype: np.dtype
    inner: Any  # the backend's own cache


def _forward(op, *args):
    """Run the active backend's `op`_forward and wrap its cache."""
    out, inner = resolve_op(f"{op}_forward")(*args)
    return out, Cache(op, resolve_op(f"{op}_backward"), out.shape, out.dtype, inner)


def _backward(op, grads, input_grad=False):
    """Public `op`_backward(dout, cache), documented as returning `grads`; with input_grad, it also takes
    input_grad=False to skip the input's gradient (returned as None), which the backends' own backward take.
    """
    def checked(dout, cache):
        if not isinstance(cache, Cache) or cache.op != op:
            got = f"the cache of {cache.op}_forward" if isinstance(cache, Cache) else f"a {type(cache).__name__}"
            raise TypeError(f"cache must be the one {op}_forward returned, got {got}")
        dout = np.asarray(dout)
        check_shape(dout, cache.out_shape, "dout", f"{cache.out_shape} (the output of {op}_forward)")
        if dout.dtype != cache.dtype:
            raise TypeError(f"dout must be {cache.dtype} like the output of {op}_forward, got {dout.dtype}")
        return dout

    if input_grad:
        def backward(dout, cache, input_grad=True):
            dout = checked(dout, cache)
            return cache.backward(dout, cache.inner, bool(input_grad))
        option = """
    input_grad : bool
        False: the input's gradient is not computed and comes back as None."""
    else:
        def backward(dout, cache):
            dout = checked(dout, cache)
            return cache.backward(dout, cache.inner)
        option = ""

    backward.__name__ = backward.__qualname__ = f"{op}_backward"
    backward.__doc__ = f"""Backward of {op}_forward.

    Parameters
    ----------
    dout : ndarray, upstream gradient, of the shape and dtype of the forward output
    cache : the cache {op}_forward returned{option}

    Returns
    -------
    {grads}
    """
    return backward


def _as_arrays(*arrays):
    return tuple(np.asarray(a) for a in arrays)


# ---------------------------------------------------------------- convolution and pooling

def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in PyTorch).

    out[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * xp[n, c, oh*SH + i, ow*SW + j],
    with xp the input zero-padded by `padding`.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, KH, KW)
    b : ndarray of shape (F,)
    stride, padding : int or pair of ints

    Returns
    -------
    out : ndarray of shape (N, F, OH, OW), OH = (H + 2*PH - KH) // SH + 1 (likewise OW)
    cache : for conv2d_backward
    """
    return _forward("conv2d", *_conv2d_args(x, w, b, stride, padding))


conv2d_backward = _backward("conv2d", "dx, dw, db : gradients of shapes (N, C, H, W), (F, C, KH, KW), (F,)",
                            input_grad=True)


def conv2d_relu_forward(x, w, b, stride=1, padding=0):
    """relu_forward of conv2d_forward in one op: a Conv2d layer followed by ReLU runs it.

    The fast backend takes the ReLU in the convolution's output pass, and its backward reads
    dout through the output's mask: no passes of their own over the output. Arguments and
    shapes as for conv2d_forward; the cache is for conv2d_relu_backward.
    """
    return _forward("conv2d_relu", *_conv2d_args(x, w, b, stride, padding))


conv2d_relu_backward = _backward("conv2d_relu", "dx, dw, db : gradients of shapes (N, C, H, W), (F, C, KH, KW), "
                                                "(F,), with dout counting where the output is > 0", input_grad=True)


def _conv2d_args(x, w, b, stride, padding):
    """(x, w, b, stride, padding) checked for conv2d_forward, stride and padding as pairs."""
    x, w, b = _as_arrays(x, w, b)
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_ndim(w, 4, "w", "(F, C, KH, KW)")
    check_float(x, w, b, names=["x", "w", "b"])
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (F, C, KH, KW) with C = {x.shape[1]} channels of x, got {w.shape}")
    check_shape(b, w.shape[:1], "b", f"(F,) with F = {w.shape[0]} filters of w")
    kernel, stride, padding = window_args(w.shape[2:], pair(stride, "stride"), padding)
    _output_hw(x.shape, kernel, stride, padding)
    return x, w, b, stride, padding


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Maximum over each window; padding counts as -inf.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    kernel_size, padding : int or pair of ints; padding at most half the kernel size
    stride : int, pair of ints or None (the kernel size)

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), OH = (H + 2*PH - KH) // SH + 1 (likewise OW)
    cache : for max_pool2d_backward, which sends each window's gradient to its first
        maximum in row-major window order
    """
    return _forward("max_pool2d", *_pool_args(x, kernel_size, stride, padding))


max_pool2d_backward = _backward("max_pool2d", "dx : ndarray of shape (N, C, H, W)")


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Mean over each window; padding counts as zeros and every window divides by KH*KW.

    Parameters and returns as for max_pool2d_forward.
    """
    return _forward("avg_pool2d", *_pool_args(x, kernel_size, stride, padding))


avg_pool2d_backward = _backward("avg_pool2d", "dx : ndarray of shape (N, C, H, W)")


def _pool_args(x, kernel_size, stride, padding):
    """Checked (x, kernel, stride, padding) for a pooling op, window arguments as pairs."""
    x = np.asarray(x)
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_float(x, names=["x"])
    kernel, stride, padding = window_args(kernel_size, stride, padding)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"padding must be at most half the kernel size, got padding {padding} "
                         f"for kernel_size {kernel}")
    _output_hw(x.shape, kernel, stride, padding)
    return x, kernel, stride, padding


def _output_hw(x_shape, kernel, stride, padding):
    """(OH, OW) for an (N, C, H, W) input, or ValueError naming the sizes."""
    return tuple(output_size(x_shape[2 + d], kernel[d], stride[d], padding[d]) for d in range(2))


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
    x = np.asarray(x)
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_float(x, names=["x"])
    kernel, stride, padding = window_args(kernel_size, stride, padding)
    _output_hw(x.shape, kernel, stride, padding)
    return resolve_op("im2col")(x, kernel, stride, padding)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0):
    """Adjoint of im2col: scatter-add cols (N, C*KH*KW, OH*OW) into an array of shape x_shape."""
    cols = np.asarray(cols)
    check_ndim(cols, 3, "cols", "(N, C*KH*KW, OH*OW)")
    check_float(cols, names=["cols"])
    kernel, stride, padding = window_args(kernel_size, stride, padding)
    x_shape = check_dims(x_shape, "x_shape (N, C, H, W)", 4)
    oh, ow = _output_hw(x_shape, kernel, stride, padding)
    expected = (x_shape[0], x_shape[1] * kernel[0] * kernel[1], oh * ow)
    check_shape(cols, expected, "cols", f"{expected} for x_shape {x_shape}")
    return resolve_op("col2im")(cols, x_shape, kernel, stride, padding)


# ---------------------------------------------------------------- affine

def affine_forward(x, w, b):
    """Fully connected layer: out = x.reshape(N, D) @ w + b.

    Parameters
    ----------
    x : ndarray of shape (N, d1, ..., dk), D = d1*...*dk
    w : ndarray of shape (D, M)
    b : ndarray of shape (M,)

    Returns
    -------
    out : ndarray of shape (N, M)
    cache : for affine_backward
    """
    return _forward("affine", *_dense_args(x, w, b, ("D", "M")))


affine_backward = _backward("affine", "dx, dw, db : gradients of shapes (N, d1, ..., dk), (D, M), (M,)",
                            input_grad=True)


def maxout_forward(x, w, b):
    """Maxout units (Goodfellow et al. 2013): out[n, j] = max_k (x[n] . w[:, j, k] + b[j, k]).

    Parameters
    ----------
    x : ndarray of shape (N, d1, ..., dk), D = d1*...*dk
    w : ndarray of shape (D, M, K), K >= 1 pieces for each of M units
    b : ndarray of shape (M, K)

    Returns
    -------
    out : ndarray of shape (N, M)
    cache : for maxout_backward, which sends each unit's gradient to its first largest piece
    """
    x, w, b = _dense_args(x, w, b, ("D", "M", "K"))
    if w.shape[2] == 0:
        raise ValueError(f"w must have at least one piece per unit (K >= 1), got shape {w.shape}")
    return _forward("maxout", x, w, b)


maxout_backward = _backward("maxout", "dx, dw, db : gradients of shapes (N, d1, ..., dk), (D, M, K), (M, K)")


def _dense_args(x, w, b, dims):
    """Checked (x, w, b) for a dense op: x flattens to (N, D), w has the named `dims`, b has w.shape[1:]."""
    x, w, b = _as_arrays(x, w, b)
    if x.ndim < 2:
        raise ValueError(f"x must be at least 2-D (N, d1, ..., dk), got shape {x.shape}")
    check_ndim(w, len(dims), "w", _layout(dims))
    check_float(x, w, b, names=["x", "w", "b"])
    d = int(np.prod(x.shape[1:]))
    if w.shape[0] != d:
        raise ValueError(f"w must have shape {_layout(dims)} with D = {d} features of x {x.shape}, got {w.shape}")
    sizes = ", ".join(f"{name} = {size}" for name, size in zip(dims[1:], w.shape[1:]))
    check_shape(b, w.shape[1:], "b", f"{_layout(dims[1:])} with {sizes} from w")
    return x, w, b


def _layout(dims):
    """("M",) -> "(M,)", ("D", "M") -> "(D, M)"."""
    return str(tuple(dims)).replace("'", "")


# ---------------------------------------------------------------- activations

def relu_forward(x):
    """max(0, x) elementwise; x: ndarray of any shape. Returns (out, cache)."""
    return _elementwise("relu", x)


relu_backward = _backward("relu", "dx : ndarray, dout where x > 0, else 0")


def leaky_relu_forward(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x; x: ndarray of any shape. Returns (out, cache)."""
    return _elementwise("leaky_relu", x, check_real(negative_slope, "negative_slope"))


leaky_relu_backward = _backward("leaky_relu", "dx : ndarray, dout where x > 0, else negative_slope * dout")


def sigmoid_forward(x):
    """1 / (1 + exp(-x)) elementwise; x: ndarray of any shape. Returns (out, cache)."""
    return _elementwise("sigmoid", x)


sigmoid_backward = _backward("sigmoid", "dx : ndarray, dout * s * (1 - s) with s the output")


def tanh_forward(x):
    """tanh(x) elementwise; x: ndarray of any shape. Returns (out, cache)."""
    return _elementwise("tanh", x)


tanh_backward = _backward("tanh", "dx : ndarray, dout * (1 - t**2) with t the output")


def elu_forward(x, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1); x: ndarray of any shape. Returns (out, cache)."""
    return _elementwise("elu", x, check_real(alpha, "alpha"))


elu_backward = _backward("elu", "dx : ndarray, dout where x > 0, else dout * alpha * exp(x)")


def _elementwise(op, x, *params):
    x = np.asarray(x)
    check_float(x, names=["x"])
    return _forward(op, x, *params)


# ---------------------------------------------------------------- normalisation and dropout

def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of each feature, then scale and shift.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    gamma, beta : ndarrays of shape (D,)
    bn_param : dict
        "mode": "train" (normalise with the batch statistics and update the running ones)
        or "test" (normalise with the running ones); "eps" (default 1e-5); "momentum"
        (default 0.9): running = momentum*running + (1-momentum)*batch statistic;
        "running_mean", "running_var": ndarrays of shape (D,), stored into bn_param on
        the first training call (starting from 0 and 1).

    Returns
    -------
    out : ndarray of shape (N, D)
    cache : for batchnorm_backward
    """
    return _forward("batchnorm", *_batchnorm_args(x, gamma, beta, bn_param, 2, "(N, D)"))


batchnorm_backward = _backward("batchnorm", "dx, dgamma, dbeta : gradients of shapes (N, D), (D,), (D,)")


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of each channel over N, H and W.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    gamma, beta : ndarrays of shape (C,)
    bn_param : dict as for batchnorm_forward, statistics of shape (C,)

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    cache : for spatial_batchnorm_backward
    """
    return _forward("spatial_batchnorm", *_batchnorm_args(x, gamma, beta, bn_param, 4, "(N, C, H, W)"))


spatial_batchnorm_backward = _backward(
    "spatial_batchnorm", "dx, dgamma, dbeta : gradients of shapes (N, C, H, W), (C,), (C,)")


def _batchnorm_args(x, gamma, beta, bn_param, ndim, layout):
    """Checked (x, gamma, beta, bn_param) for batchnorm on (N, D) or (N, C, H, W) input."""
    x, gamma, beta = _as_arrays(x, gamma, beta)
    check_ndim(x, ndim, "x", layout)
    mode = check_param_dict(bn_param, "bn_param")
    stats = [k for k in ("running_mean", "running_var") if k in bn_param]
    check_float(x, gamma, beta, *(bn_param[k] for k in stats), names=["x", "gamma", "beta", *stats])
    features = f"({x.shape[1]},), one per {'feature' if ndim == 2 else 'channel'} of x"
    for name, value in [("gamma", gamma), ("beta", beta), *((k, bn_param[k]) for k in stats)]:
        check_shape(value, x.shape[1:2], name, features)
    check_real(bn_param.get("eps", 1e-5), "bn_param['eps']", "a number > 0", lambda v: v > 0)
    check_real(bn_param.get("momentum", 0.9), "bn_param['momentum']", "a number in [0, 1]", lambda v: 0 <= v <= 1)
    if mode == "train" and x.size == 0:
        raise ValueError(f"batchnorm in train mode needs a non-empty batch, got x of shape {x.shape}")
    return x, gamma, beta, bn_param


def dropout_forward(x, dropout_param):
    """Inverted dropout.

    Parameters
    ----------
    x : ndarray of any shape
    dropout_param : dict
        "p": probability of zeroing a unit, in [0, 1); "mode": "train" (zero units and
        scale the rest by 1/(1-p)) or "test" (identity); "seed": optional int >= 0, the
        same seed giving the same mask.

    Returns
    -------
    out : ndarray of the shape and dtype of x
    cache : for dropout_backward
    """
    x = np.asarray(x)
    check_float(x, names=["x"])
    check_param_dict(dropout_param, "dropout_param")
    if "p" not in dropout_param:
        raise ValueError("dropout_param must give 'p', the probability of dropping a unit")
    check_real(dropout_param["p"], "dropout_param['p']", "a probability in [0, 1)", lambda v: 0 <= v < 1)
    check_seed(dropout_param.get("seed"), "dropout_param['seed']")
    return _forward("dropout", x, dropout_param)


dropout_backward = _backward("dropout", "dx : ndarray, dout through the forward's mask")


# ---------------------------------------------------------------- losses

def softmax_loss(scores, y):
    """Cross-entropy loss of softmax(scores), averaged over the batch; stable for large scores.

    Parameters
    ----------
    scores : ndarray of shape (N, C)
    y : integer ndarray of shape (N,), labels in [0, C)

    Returns
    -------
    loss : scalar of the dtype of scores
    dscores : ndarray of shape (N, C), gradient of loss
    """
    return resolve_op("softmax_loss")(*_loss_args(scores, y))


def svm_loss(scores, y):
    """Multiclass hinge loss with margin 1, averaged over the batch.

    loss = mean over n of sum_{j != y[n]} max(0, scores[n, j] - scores[n, y[n]] + 1)

    Parameters and returns as for softmax_loss.
    """
    return resolve_op("svm_loss")(*_loss_args(scores, y))


def _loss_args(scores, y):
    scores = np.asarray(scores)
    check_ndim(scores, 2, "scores", "(N, C)")
    check_float(scores, names=["scores"])
    if 0 in scores.shape:
        raise ValueError(f"scores must have at least one sample and one class, got shape {scores.shape}")
    return scores, check_labels(y, *scores.shape)


# ---------------------------------------------------------------- update steps

def adam_update(w, dw, m, v, t, learning_rate, beta1, beta2, epsilon):
    """One Adam step with bias correction; m and v are updated in place.

    Parameters
    ----------
    w, dw : ndarray of one shape and float dtype
    m, v : writable C-contiguous ndarray of w's shape and dtype: the moving averages of dw
        and dw**2 (zeros before the first step)
    t : int >= 1, this step's count
    learning_rate : float > 0
    beta1, beta2 : float in [0, 1)
    epsilon : float > 0

    Returns
    -------
    next_w : ndarray of w's shape and dtype, w - learning_rate * m_hat / (sqrt(v_hat) + epsilon)
        with m_hat = m / (1 - beta1**t) and v_hat = v / (1 - beta2**t)
    """
    w, dw = np.asarray(w), np.asarray(dw)
    check_float(w, dw, names=["w", "dw"])
    check_shape(dw, w.shape, "dw", f"{w.shape} (w's)")
    check_state(m, w, "m")
    check_state(v, w, "v")
    if not isinstance(t, numbers.Integral) or isinstance(t, bool) or t < 1:
        raise ValueError(f"t must be an int >= 1 (the step's count), got {t!r}")
    learning_rate = check_real(learning_rate, "learning_rate", "a number > 0", lambda value: value > 0)
    beta1 = check_real(beta1, "beta1", "a number in [0, 1)", lambda value: 0 <= value < 1)
    beta2 = check_real(beta2, "beta2", "a number in [0, 1)", lambda value: 0 <= value < 1)
    epsilon = check_real(epsilon, "epsilon", "a number > 0", lambda value: value > 0)
    return resolve_op("adam_update")(w, dw, m, v, int(t), learning_rate, beta1, beta2, epsilon)
