"""Helpers shared by the windowed reference ops (conv, pooling)."""
import numpy as np

from cnnkit._validation import output_size


def pad(x, padding, value=0):
    """x (N, C, H, W) with `padding` (a pair) rows/columns of `value` on each side."""
    (ph, pw), (n, c, h, w) = padding, x.shape
    padded = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    return padded


def unpad(padded, padding):
    """Inverse of pad: the interior of padded (N, C, H + 2*PH, W + 2*PW)."""
    (ph, pw), (hp, wp) = padding, padded.shape[2:]
    return padded[:, :, ph:hp - ph, pw:wp - pw]


def offsets(padded_hw, kernel_size, stride):
    """Yield (i, j, index) for each kernel offset, row-major.

    padded[index] is the (N, C, OH, OW) view of the input element at offset (i, j) of
    every window: padded[n, c, oh*SH + i, ow*SW + j].
    """
    (kh, kw), (sh, sw) = kernel_size, stride
    oh, ow = (output_size(padded_hw[d], kernel_size[d], stride[d], 0) for d in range(2))
    for i in range(kh):
        for j in range(kw):
            yield i, j, (slice(None), slice(None), slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw))
