"""Fully connected (affine) layer: out = x.reshape(N, D) @ w + b."""


def affine_forward(x, w, b):
    """Affine map of the flattened input.

    Parameters
    ----------
    x : ndarray of shape (N, d1, ..., dk), flattened to (N, D) with D = d1*...*dk
    w : ndarray of shape (D, M)
    b : ndarray of shape (M,)

    Returns
    -------
    out : ndarray of shape (N, M)
    cache : what affine_backward needs
    """
    return x.reshape(len(x), w.shape[0]) @ w + b, (x, w)


def affine_backward(dout, cache, input_grad=True):
    """Gradients of affine_forward: dout (N, M) -> dx (N, d1, ..., dk), dw (D, M), db (M,);
    dx is None, not computed, when input_grad is False.
    """
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape) if input_grad else None
    dw = x.reshape(len(x), w.shape[0]).T @ dout
    return dx, dw, dout.sum(axis=0)
