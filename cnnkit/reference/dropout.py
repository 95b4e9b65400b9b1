"""Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p).

dropout_param is a dict: "p" (drop probability, as in PyTorch), "mode" ("train" or
"test") and optionally "seed" (an int: the same seed gives the same mask) and "row" (an
int >= 0, with a seed): the draws are then keyed per example, x[i] taking those of example
row + i (cnnkit._random.KeyedRows), so a row's mask does not depend on the other rows. Test
mode is the identity.
"""
import numpy as np

from cnnkit._random import KeyedRows
from cnnkit._validation import check_seed


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
    keep = uniform_draws(x.shape, dropout_param) >= p
    mask = keep.astype(x.dtype) / x.dtype.type(1 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient of dropout_forward: dout through the same mask."""
    mask = cache
    return dout.copy() if mask is None else dout * mask


def uniform_draws(shape, dropout_param):
    """The float64 draws in [0, 1) of an array of `shape` that decide its mask (kept where >= p):
    default_rng(seed).random(shape), or with "row" the rows of KeyedRows([seed], row)."""
    row = dropout_param.get("row")
    if row is None:
        return np.random.default_rng(dropout_param.get("seed")).random(shape)
    check_seed(row, "dropout_param['row']")
    if dropout_param.get("seed") is None:
        raise ValueError("dropout_param['row'] keys the draws by example and needs dropout_param['seed']")
    return KeyedRows([dropout_param["seed"]], row).random(shape)
