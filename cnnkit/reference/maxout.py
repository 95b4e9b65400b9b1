"""Maxout units (Goodfellow et al. 2013): the largest of K affine pieces per output unit.

out[n, j] = max_k (x[n] . w[:, j, k] + b[j, k]), computed as one affine map to M*K
pieces; the gradient of each unit goes to its first largest piece. The fast backend
builds the same pair on its compiled affine op (maxout_ops).
"""
import numpy as np

from cnnkit.reference.affine import affine_backward, affine_forward


def maxout_ops(affine_forward, affine_backward):
    """The maxout forward/backward pair built on an affine op pair with affine's contract."""

    def maxout_forward(x, w, b):
        """Maxout of the flattened input.

        Parameters
        ----------
        x : ndarray of shape (N, d1, ..., dk), flattened to (N, D) with D = d1*...*dk
        w : ndarray of shape (D, M, K), K >= 1 pieces for each of M units
        b : ndarray of shape (M, K)

        Returns
        -------
        out : ndarray of shape (N, M)
        cache : what maxout_backward needs
        """
        d, m, k = w.shape
        pieces, affine_cache = affine_forward(x, w.reshape(d, m * k), b.reshape(m * k))
        pieces = pieces.reshape(len(x), m, k)
        winner = pieces.argmax(axis=2)[..., None]  # the first maximum on ties
        return np.take_along_axis(pieces, winner, axis=2)[..., 0], (affine_cache, winner, w.shape)

    def maxout_backward(dout, cache):
        """Gradients of maxout_forward: dout (N, M) -> dx (N, d1, ..., dk), dw (D, M, K), db (M, K)."""
        affine_cache, winner, w_shape = cache
        dpieces = np.zeros((len(dout), *w_shape[1:]), dtype=dout.dtype)
        np.put_along_axis(dpieces, winner, dout[..., None], axis=2)
        dx, dw, db = affine_backward(dpieces.reshape(len(dout), -1), affine_cache)
        return dx, dw.reshape(w_shape), db.reshape(w_shape[1:])

    return maxout_forward, maxout_backward


maxout_forward, maxout_backward = maxout_ops(affine_forward, affine_backward)
