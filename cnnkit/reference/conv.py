"""2-D convolution (cross-correlation, as in PyTorch) by a sum over kernel offsets.

out[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * xp[n, c, oh*SH + i, ow*SW + j]

where xp is x zero-padded by PH rows and PW columns on each side. Each kernel offset
(i, j) contributes one contraction over channels, so the definition is independent of
im2col and checks it.
"""
import numpy as np

from cnnkit.reference._windows import offsets, pad, unpad
from cnnkit.reference.activations import relu_backward, relu_forward


def conv2d_forward(x, w, b, stride, padding):
    """Convolve x with filters w and add bias b.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, KH, KW)
    b : ndarray of shape (F,)
    stride, padding : pairs of ints

    Returns
    -------
    out : ndarray of shape (N, F, OH, OW), OH = (H + 2*PH - KH) // SH + 1 (likewise OW)
    cache : what conv2d_backward needs
    """
    xp = pad(x, padding)
    out = sum(np.einsum("nchw,fc->nfhw", xp[index], w[:, :, i, j])
              for i, j, index in offsets(xp.shape[2:], w.shape[2:], stride))
    return out + b[:, None, None], (xp, w, stride, padding)


def conv2d_backward(dout, cache, input_grad=True):
    """Gradients of conv2d_forward.

    Parameters
    ----------
    dout : ndarray of shape (N, F, OH, OW)
    cache : from conv2d_forward
    input_grad : bool
        False: dx is not computed (None).

    Returns
    -------
    dx : ndarray of shape (N, C, H, W), or None
    dw : ndarray of shape (F, C, KH, KW)
    db : ndarray of shape (F,)
    """
    xp, w, stride, padding = cache
    dxp = np.zeros_like(xp) if input_grad else None
    dw = np.empty_like(w)
    for i, j, index in offsets(xp.shape[2:], w.shape[2:], stride):
        dw[:, :, i, j] = np.einsum("nfhw,nchw->fc", dout, xp[index])
        if input_grad:
            dxp[index] += np.einsum("nfhw,fc->nchw", dout, w[:, :, i, j])
    return unpad(dxp, padding) if input_grad else None, dw, dout.sum(axis=(0, 2, 3))


def conv2d_relu_forward(x, w, b, stride, padding):
    """relu_forward of conv2d_forward, as one op (a network's Conv2d followed by ReLU runs it).

    Returns out of shape (N, F, OH, OW) and the cache, (conv2d_forward's cache, out).
    """
    out, cache = conv2d_forward(x, w, b, stride, padding)
    out = relu_forward(out)[0]
    return out, (cache, out)


def conv2d_relu_backward(dout, cache, input_grad=True):
    """Gradients of conv2d_relu_forward: conv2d_backward of relu_backward(dout) -> dx, dw, db."""
    cache, out = cache
    return conv2d_backward(relu_backward(dout, out), cache, input_grad)
