"""Max and average pooling over KH x KW windows.

Max pooling pads with -inf, so padding never wins a window, and sends each window's
gradient to its first maximum in row-major window order (as PyTorch does). Average
pooling pads with zeros and always divides by KH*KW (PyTorch's count_include_pad=True).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnkit.reference._windows import offsets, pad, unpad


def max_pool2d_forward(x, kernel_size, stride, padding):
    """Maximum of each window.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    kernel_size, stride, padding : pairs of ints

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), OH = (H + 2*PH - KH) // SH + 1 (likewise OW)
    cache : what max_pool2d_backward needs (the position of each window's maximum)
    """
    xp = pad(x, padding, value=-np.inf)
    (sh, sw) = stride
    windows = sliding_window_view(xp, kernel_size, axis=(2, 3))[:, :, ::sh, ::sw]
    windows = windows.reshape(windows.shape[:4] + (kernel_size[0] * kernel_size[1],))  # row-major windows
    argmax = windows.argmax(axis=-1)  # first maximum on ties
    out = np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]
    return out, (xp.shape, argmax, kernel_size, stride, padding)


def max_pool2d_backward(dout, cache):
    """Gradient of max_pool2d_forward: dout (N, C, OH, OW) -> dx (N, C, H, W)."""
    padded_shape, argmax, kernel_size, stride, padding = cache
    dxp = np.zeros(padded_shape, dtype=dout.dtype)
    kw = kernel_size[1]
    for i, j, index in offsets(padded_shape[2:], kernel_size, stride):
        dxp[index] += np.where(argmax == i * kw + j, dout, 0)
    return unpad(dxp, padding)


def avg_pool2d_forward(x, kernel_size, stride, padding):
    """Mean of each zero-padded window (divides by KH*KW).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    kernel_size, stride, padding : pairs of ints

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), OH = (H + 2*PH - KH) // SH + 1 (likewise OW)
    cache : what avg_pool2d_backward needs
    """
    xp = pad(x, padding)
    out = sum(xp[index] for _, _, index in offsets(xp.shape[2:], kernel_size, stride))
    out /= kernel_size[0] * kernel_size[1]  # keeps the dtype
    return out, (xp.shape, kernel_size, stride, padding)


def avg_pool2d_backward(dout, cache):
    """Gradient of avg_pool2d_forward: dout (N, C, OH, OW) -> dx (N, C, H, W)."""
    padded_shape, kernel_size, stride, padding = cache
    dxp = np.zeros(padded_shape, dtype=dout.dtype)
    share = dout / (kernel_size[0] * kernel_size[1])
    for _, _, index in offsets(padded_shape[2:], kernel_size, stride):
        dxp[index] += share
    return unpad(dxp, padding)
