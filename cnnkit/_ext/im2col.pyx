# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col / col2im for NCHW images, parallel over images, GIL released.

Layout (one block of columns per image):

    cols[n, (c*KH + i)*KW + j, oh*OW + ow] = x[n, c, oh*SH - PH + i, ow*SW - PW + j]

with zeros where the index falls in the padding, so a convolution is
``w.reshape(F, C*KH*KW) @ cols[n]``, already in NCHW order. col2im is the adjoint:
it scatter-adds every column entry back to the pixel it came from.
Callers pass C-contiguous arrays and valid sizes (cnnkit.fast checks them).
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport prange


cdef inline void _im2col_image(const floating[:, :, :, ::1] x, floating[:, :, ::1] cols,
                               Py_ssize_t n, int kh, int kw, int sh, int sw,
                               int ph, int pw, int oh, int ow) noexcept nogil:
    cdef Py_ssize_t c, i, j, y, xo, row, hin, win
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3]
    for c in range(x.shape[1]):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for y in range(oh):
                    hin = y * sh - ph + i
                    for xo in range(ow):
                        win = xo * sw - pw + j
                        if 0 <= hin < H and 0 <= win < W:
                            cols[n, row, y * ow + xo] = x[n, c, hin, win]
                        else:
                            cols[n, row, y * ow + xo] = 0


cdef inline void _col2im_image(const floating[:, :, ::1] cols, floating[:, :, :, ::1] x,
                               Py_ssize_t n, int kh, int kw, int sh, int sw,
                               int ph, int pw, int oh, int ow) noexcept nogil:
    cdef Py_ssize_t c, i, j, y, xo, row, hin, win
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3]
    for c in range(x.shape[1]):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for y in range(oh):
                    hin = y * sh - ph + i
                    if hin < 0 or hin >= H:
                        continue
                    for xo in range(ow):
                        win = xo * sw - pw + j
                        if 0 <= win < W:
                            x[n, c, hin, win] += cols[n, row, y * ow + xo]


def im2col(const floating[:, :, :, ::1] x, int kh, int kw, int sh, int sw,
           int ph, int pw, int n_threads):
    """Patches of x (N, C, H, W) as columns: ndarray of shape (N, C*KH*KW, OH*OW)."""
    cdef int oh = (x.shape[2] + 2 * ph - kh) // sh + 1
    cdef int ow = (x.shape[3] + 2 * pw - kw) // sw + 1
    dtype = np.float32 if floating is float else np.float64
    out = np.empty((x.shape[0], x.shape[1] * kh * kw, oh * ow), dtype=dtype)
    cdef floating[:, :, ::1] cols = out
    cdef Py_ssize_t n
    for n in prange(x.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        _im2col_image(x, cols, n, kh, kw, sh, sw, ph, pw, oh, ow)
    return out


def col2im(const floating[:, :, ::1] cols, int channels, int height, int width,
           int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Adjoint of im2col: scatter-add cols (N, C*KH*KW, OH*OW) into (N, C, H, W)."""
    cdef int oh = (height + 2 * ph - kh) // sh + 1
    cdef int ow = (width + 2 * pw - kw) // sw + 1
    dtype = np.float32 if floating is float else np.float64
    out = np.zeros((cols.shape[0], channels, height, width), dtype=dtype)
    cdef floating[:, :, :, ::1] x = out
    cdef Py_ssize_t n
    for n in prange(cols.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        _col2im_image(cols, x, n, kh, kw, sh, sw, ph, pw, oh, ow)
    return out
