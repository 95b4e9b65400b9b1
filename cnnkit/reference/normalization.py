"""Batch normalisation over the batch (N, D) and over the batch and space (N, C, H, W).

bn_param is a dict: "mode" ("train" or "test"), "eps" (default 1e-5), "momentum"
(default 0.9), "running_mean" and "running_var" (arrays of shape (D,)). Training
normalises with the batch mean and (biased) variance and updates, in bn_param,
    running = momentum * running + (1 - momentum) * batch statistic,
starting from mean 0 and variance 1 on the first training call. Test mode normalises
with the running statistics.
"""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    """Normalise each feature, then scale by gamma and shift by beta.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    gamma, beta : ndarrays of shape (D,)
    bn_param : dict (see the module docstring); running statistics are stored into it

    Returns
    -------
    out : ndarray of shape (N, D)
    cache : what batchnorm_backward needs
    """
    dtype = x.dtype.type
    eps, momentum = dtype(bn_param.get("eps", 1e-5)), dtype(bn_param.get("momentum", 0.9))
    running_mean = bn_param.get("running_mean", np.zeros(x.shape[1], dtype=x.dtype))
    running_var = bn_param.get("running_var", np.ones(x.shape[1], dtype=x.dtype))
    train = bn_param["mode"] == "train"
    if train:
        mean, var = x.mean(axis=0), x.var(axis=0)
        bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mean
        bn_param["running_var"] = momentum * running_var + (1 - momentum) * var
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std, train)


def batchnorm_backward(dout, cache):
    """Gradients of batchnorm_forward: dout (N, D) -> dx (N, D), dgamma (D,), dbeta (D,).

    In training mode the batch statistics depend on x, so
    dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)) with g = dout * gamma.
    """
    x_hat, gamma, inv_std, train = cache
    dgamma, dbeta = (dout * x_hat).sum(axis=0), dout.sum(axis=0)
    g = dout * gamma
    if train:
        g = g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0)
    return g * inv_std, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation per channel over N, H and W.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    gamma, beta : ndarrays of shape (C,)
    bn_param : dict as for batchnorm_forward, with statistics of shape (C,)

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    cache : what spatial_batchnorm_backward needs
    """
    out, cache = batchnorm_forward(_channels_last(x), gamma, beta, bn_param)
    return _channels_first(out, x.shape), (cache, x.shape)


def spatial_batchnorm_backward(dout, cache):
    """Gradients of spatial_batchnorm_forward: dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    cache, shape = cache
    dx, dgamma, dbeta = batchnorm_backward(_channels_last(dout), cache)
    return _channels_first(dx, shape), dgamma, dbeta


def _channels_last(x):
    """(N, C, H, W) -> (N*H*W, C)."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _channels_first(rows, shape):
    """(N*H*W, C) -> (N, C, H, W), the inverse of _channels_last."""
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)
