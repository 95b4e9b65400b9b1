"""Elementwise activations; each backward is dout times the local derivative."""
import numpy as np


def relu_forward(x):
    """max(0, x) of an array of any shape; returns (out, cache)."""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """Gradient of relu_forward: dout where x > 0, else 0 (0 at the kink)."""
    x = cache
    return np.where(x > 0, dout, 0)


def leaky_relu_forward(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x; returns (out, cache)."""
    slope = x.dtype.type(negative_slope)
    return np.where(x > 0, x, slope * x), (x, slope)


def leaky_relu_backward(dout, cache):
    """Gradient of leaky_relu_forward: dout where x > 0, else negative_slope * dout."""
    x, slope = cache
    return np.where(x > 0, dout, slope * dout)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), without overflow for large |x|; returns (out, cache)."""
    e = np.exp(-np.abs(x))  # in (0, 1]: no overflow either side
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout, cache):
    """Gradient of sigmoid_forward: dout * s * (1 - s)."""
    s = cache
    return dout * s * (1 - s)


def tanh_forward(x):
    """tanh(x); returns (out, cache)."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """Gradient of tanh_forward: dout * (1 - tanh(x)**2)."""
    t = cache
    return dout * (1 - t * t)


def elu_forward(x, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1); returns (out, cache)."""
    alpha = x.dtype.type(alpha)
    out = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    return out, (x, out, alpha)


def elu_backward(dout, cache):
    """Gradient of elu_forward: dout where x > 0, else dout * alpha * exp(x) = dout * (out + alpha)."""
    x, out, alpha = cache
    return np.where(x > 0, dout, dout * (out + alpha))
