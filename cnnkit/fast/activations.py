"""Elementwise activations on the kernels of cnnkit._ext.activations; same contract as
cnnkit.reference.activations.

exp, expm1 and tanh are numpy's SIMD loops (far faster than scalar libm calls); the kernels
do the rest (cnnkit/_ext/activations.pyx). The cache is (kind, saved, out, parameter):
backward reads the output for ReLU, sigmoid and tanh, and the input (saved) for leaky ReLU
and ELU, whose sign of x the output may not show.
"""
import numpy as np

from cnnkit._ext import activations as _kernels
from cnnkit._ext.activations import Activation
from cnnkit.fast._checks import checked_gradient
from cnnkit.fast._elementwise import contiguous_float, element_threads

_NEEDS_INPUT = (Activation.LEAKY_RELU, Activation.ELU)
_NUMPY_PART = {  # what numpy computes into out before the forward kernel runs, if it runs
    Activation.SIGMOID: lambda x, out: np.exp(np.negative(np.abs(x, out=out), out=out), out=out),
    Activation.ELU: lambda x, out: np.expm1(np.minimum(x, 0, out=out), out=out),
    Activation.TANH: lambda x, out: np.tanh(x, out=out),
}


def _forward(kind, x, param=0.0):
    x = contiguous_float(x)
    out = np.empty_like(x)
    if kind in _NUMPY_PART:
        _NUMPY_PART[kind](x, out)
    if kind != Activation.TANH:
        _kernels.activation_forward(kind, x.reshape(-1), out.reshape(-1), param, element_threads(x.size))
    return out, (kind, x if kind in _NEEDS_INPUT else out, out, param)


def _backward(dout, cache):
    kind, saved, out, param = cache
    dout = checked_gradient(dout, out.dtype, out.shape)
    dx = np.empty_like(out)
    _kernels.activation_backward(kind, dout.reshape(-1), saved.reshape(-1), out.reshape(-1), dx.reshape(-1),
                                 param, element_threads(dx.size))
    return dx


def relu_forward(x):
    """cnnkit.reference.relu_forward: max(0, x) of any shape -> (out, cache)."""
    return _forward(Activation.RELU, x)


def leaky_relu_forward(x, negative_slope=0.01):
    """cnnkit.reference.leaky_relu_forward: x where x > 0, else negative_slope * x -> (out, cache)."""
    return _forward(Activation.LEAKY_RELU, x, float(negative_slope))


def sigmoid_forward(x):
    """cnnkit.reference.sigmoid_forward: 1 / (1 + exp(-x)) without overflow -> (out, cache)."""
    return _forward(Activation.SIGMOID, x)


def tanh_forward(x):
    """cnnkit.reference.tanh_forward: tanh(x) -> (out, cache)."""
    return _forward(Activation.TANH, x)


def elu_forward(x, alpha=1.0):
    """cnnkit.reference.elu_forward: x where x > 0, else alpha * (exp(x) - 1) -> (out, cache)."""
    return _forward(Activation.ELU, x, float(alpha))


relu_backward = leaky_relu_backward = sigmoid_backward = tanh_backward = elu_backward = _backward
