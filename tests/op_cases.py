"""Shared test inputs: one representative call of every op, and window geometries.

CASES maps a name to a function (rng, dtype) -> (forward, backward, inputs): forward takes
the arrays of `inputs` as keyword arguments and returns (out, cache); backward returns
their gradients in order. Inputs of ops with kinks (ReLU family, pooling) are distinct
values at least 0.05 from zero and 0.1 from each other, so a probe step of 1e-5 never
crosses a kink or changes a window's maximum.
"""
import numpy as np
from hypothesis import strategies as st

from cnnkit import functional as F

CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


def normal(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


def distinct(rng, dtype, *shape):
    """Values ..., -0.15, -0.05, 0.05, 0.15, ... in random order."""
    size = int(np.prod(shape))
    return rng.permutation((np.arange(size) - size // 2 + 0.5) * 0.1).reshape(shape).astype(dtype)


@case
def conv2d(rng, dtype):
    inputs = dict(x=normal(rng, dtype, 2, 3, 7, 6), w=normal(rng, dtype, 4, 3, 3, 2), b=normal(rng, dtype, 4))
    return lambda x, w, b: F.conv2d_forward(x, w, b, stride=(2, 1), padding=(1, 0)), F.conv2d_backward, inputs


@case
def conv2d_relu(rng, dtype):
    inputs = dict(x=normal(rng, dtype, 2, 3, 7, 6), w=normal(rng, dtype, 4, 3, 3, 2), b=normal(rng, dtype, 4))
    return lambda x, w, b: F.conv2d_relu_forward(x, w, b, stride=(2, 1), padding=(1, 0)), F.conv2d_relu_backward, inputs


@case
def max_pool2d(rng, dtype):
    forward = lambda x: F.max_pool2d_forward(x, (3, 2), stride=(2, 1), padding=1)  # noqa: E731
    return forward, F.max_pool2d_backward, dict(x=distinct(rng, dtype, 2, 3, 7, 6))


@case
def avg_pool2d(rng, dtype):
    forward = lambda x: F.avg_pool2d_forward(x, (3, 2), stride=(2, 1), padding=1)  # noqa: E731
    return forward, F.avg_pool2d_backward, dict(x=normal(rng, dtype, 2, 3, 7, 6))


@case
def affine(rng, dtype):
    inputs = dict(x=normal(rng, dtype, 3, 2, 4), w=normal(rng, dtype, 8, 5), b=normal(rng, dtype, 5))
    return F.affine_forward, F.affine_backward, inputs


@case
def relu(rng, dtype):
    return F.relu_forward, F.relu_backward, dict(x=distinct(rng, dtype, 4, 5))


@case
def leaky_relu(rng, dtype):
    return lambda x: F.leaky_relu_forward(x, 0.2), F.leaky_relu_backward, dict(x=distinct(rng, dtype, 4, 5))


@case
def elu(rng, dtype):
    return lambda x: F.elu_forward(x, alpha=0.7), F.elu_backward, dict(x=distinct(rng, dtype, 4, 5))


@case
def sigmoid(rng, dtype):
    return F.sigmoid_forward, F.sigmoid_backward, dict(x=3 * normal(rng, dtype, 4, 5))


@case
def tanh(rng, dtype):
    return F.tanh_forward, F.tanh_backward, dict(x=normal(rng, dtype, 4, 5))


def _batchnorm(forward, backward, rng, dtype, x_shape, mode):
    c = x_shape[1]
    bn_param = {"mode": mode}
    if mode == "test":
        bn_param.update(running_mean=normal(rng, dtype, c), running_var=1 + rng.random(c).astype(dtype))
    inputs = dict(x=2 + 3 * normal(rng, dtype, *x_shape), gamma=normal(rng, dtype, c), beta=normal(rng, dtype, c))
    return lambda x, gamma, beta: forward(x, gamma, beta, bn_param), backward, inputs


@case
def batchnorm_train(rng, dtype):
    return _batchnorm(F.batchnorm_forward, F.batchnorm_backward, rng, dtype, (6, 4), "train")


@case
def batchnorm_test(rng, dtype):
    return _batchnorm(F.batchnorm_forward, F.batchnorm_backward, rng, dtype, (6, 4), "test")


@case
def spatial_batchnorm_train(rng, dtype):
    return _batchnorm(F.spatial_batchnorm_forward, F.spatial_batchnorm_backward, rng, dtype, (2, 3, 4, 3), "train")


@case
def spatial_batchnorm_test(rng, dtype):
    return _batchnorm(F.spatial_batchnorm_forward, F.spatial_batchnorm_backward, rng, dtype, (2, 3, 4, 3), "test")


@case
def dropout_train(rng, dtype):
    param = {"p": 0.3, "mode": "train", "seed": 7}
    return lambda x: F.dropout_forward(x, param), F.dropout_backward, dict(x=normal(rng, dtype, 4, 5))


@case
def dropout_test(rng, dtype):
    param = {"p": 0.3, "mode": "test"}
    return lambda x: F.dropout_forward(x, param), F.dropout_backward, dict(x=normal(rng, dtype, 4, 5))


@st.composite
def geometries(draw, pool=False):
    """Window geometry (pairs) and a small NCHW shape it fits; pools pad at most half the kernel."""
    kernel = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = tuple(draw(st.integers(0, k // 2 if pool else 2)) for k in kernel)
    stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = (draw(st.integers(max(1, k - 2 * p), 7)) for k, p in zip(kernel, padding))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel, stride, padding
