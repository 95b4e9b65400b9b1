"""im2col / col2im in numpy: one strided slice per kernel offset, no pixel loop."""
import numpy as np

from cnnkit._validation import output_size


def _geometry(height, width, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)


def im2col(x, kernel_size, stride, padding):
    """Patches of x as columns.

    x: ndarray of shape (N, C, H, W); kernel_size, stride, padding: pairs.
    Returns ndarray of shape (N, C*KH*KW, OH*OW), row (c*KH + i)*KW + j holding
    x[n, c, oh*SH - PH + i, ow*SW - PW + j] (zero in the padding).
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = _geometry(h, w, kernel_size, stride, padding)
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im(cols, x_shape, kernel_size, stride, padding):
    """Adjoint of im2col: scatter-add cols (N, C*KH*KW, OH*OW) into an (N, C, H, W) array."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = _geometry(h, w, kernel_size, stride, padding)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]
