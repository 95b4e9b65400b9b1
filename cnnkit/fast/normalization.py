"""Batch normalisation on the kernels of cnnkit._ext.normalization; same contract as
cnnkit.reference.normalization (bn_param as documented there).

(N, D) input is seen as (N, D, 1) and (N, C, H, W) input as (N, C, H*W), so both layouts
run the same kernels without a transpose. Channel statistics and gradient sums are taken
in double in a fixed order; the per-channel vectors are then computed with numpy in the
input's dtype, as the reference does. The cache is (x_hat, gamma, inv_std, train, shape).
"""
import numpy as np

from cnnkit._ext import normalization as _kernels
from cnnkit._validation import check_float, check_param_dict
from cnnkit.fast._checks import check_shape, checked_float_arrays, checked_gradient
from cnnkit.fast._elementwise import element_threads


def batchnorm_forward(x, gamma, beta, bn_param):
    """cnnkit.reference.batchnorm_forward: x (N, D), gamma, beta (D,) -> out (N, D), cache."""
    x, gamma, beta = checked_float_arrays([x, gamma, beta], ["x", "gamma", "beta"], ["(N, D)", "(D,)", "(D,)"])
    return _forward(x[:, :, None], gamma, beta, bn_param, x.shape)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """cnnkit.reference.spatial_batchnorm_forward: x (N, C, H, W), gamma, beta (C,) -> out, cache."""
    x, gamma, beta = checked_float_arrays([x, gamma, beta], ["x", "gamma", "beta"], ["(N, C, H, W)", "(C,)", "(C,)"])
    return _forward(x.reshape(x.shape[:2] + (x.shape[2] * x.shape[3],)), gamma, beta, bn_param, x.shape)


def batchnorm_backward(dout, cache):
    """Gradients of batchnorm_forward (either layout): dout -> dx, dgamma (C,), dbeta (C,)."""
    x_hat, gamma, inv_std, train, shape = cache
    dout = checked_gradient(dout, x_hat.dtype, shape).reshape(x_hat.shape)
    sums = np.empty((2, x_hat.shape[1]))  # dbeta, dgamma in double
    threads = element_threads(x_hat.size)
    _kernels.gradient_sums(dout, x_hat, sums[0], sums[1], threads)
    count = x_hat.shape[0] * x_hat.shape[2]
    a, b = (gamma * sums / max(1, count)).astype(x_hat.dtype)  # mean(dout * gamma), mean(dout * gamma * x_hat)
    dx = np.empty_like(x_hat)
    _kernels.normalize_backward(dout, x_hat, gamma, a, b, inv_std, dx, train, threads)
    dbeta, dgamma = sums.astype(x_hat.dtype)
    return dx.reshape(shape), dgamma, dbeta


spatial_batchnorm_backward = batchnorm_backward


def _forward(x, gamma, beta, bn_param, shape):
    """Normalise x (N, C, S) per channel; store the running statistics into bn_param in training."""
    mode = check_param_dict(bn_param, "bn_param")
    dtype, channels = x.dtype.type, x.shape[1]
    for name, value in [("gamma", gamma), ("beta", beta)]:
        check_shape(value, (channels,), name)
    eps, momentum = dtype(bn_param.get("eps", 1e-5)), dtype(bn_param.get("momentum", 0.9))
    running_mean = bn_param.get("running_mean", np.zeros(channels, dtype=dtype))
    running_var = bn_param.get("running_var", np.ones(channels, dtype=dtype))
    check_float(x, running_mean, running_var, names=["x", "running_mean", "running_var"])
    check_shape(np.asarray(running_mean), (channels,), "running_mean")
    check_shape(np.asarray(running_var), (channels,), "running_var")
    threads, train = element_threads(x.size), mode == "train"
    if train:
        if x.shape[0] * x.shape[2] == 0:
            raise ValueError(f"batchnorm in train mode needs a non-empty batch, got x of shape {shape}")
        moments = np.empty((2, channels))
        _kernels.channel_moments(x, moments[0], moments[1], threads)
        mean, var = moments.astype(dtype)
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mean
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * var
    else:
        mean, var = np.ascontiguousarray(running_mean), np.ascontiguousarray(running_var)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat, out = np.empty_like(x), np.empty_like(x)
    _kernels.normalize(x, mean, inv_std, gamma, beta, x_hat, out, threads)
    return out.reshape(shape), (x_hat, gamma, inv_std, train, shape)
