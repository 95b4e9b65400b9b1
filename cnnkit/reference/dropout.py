"""Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p).

dropout_param is a dict: "p" (drop probability, as in PyTorch), "mode" ("train" or
"test") and optionally "seed" (an int: the same seed gives the same mask). Test mode
is the identity.
"""
import numpy as np


def dropout_forward(x, dropout_param):
    """Apply dropout to x of any shape.

    Parameters
    ----------
    x : ndarray
    dropout_param : dict (see the module docstring)

    Returns
    -------
    out : ndarray of the shape and dtype of x
    cache : the scaled keep mask (None in test mode)
    """
    if dropout_param["mode"] != "train":
        return x.copy(), None
    p = dropout_param["p"]
    keep = np.random.default_rng(dropout_param.get("seed")).random(x.shape) >= p
    mask = keep.astype(x.dtype) / x.dtype.type(1 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient of dropout_forward: dout through the same mask."""
    mask = cache
    return dout.copy() if mask is None else dout * mask
