# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col / col2im for NCHW images into caller-owned arrays, parallel, GIL released.

Layout (one block of rows per image):

    cols[n, (c*KH + i)*KW + j, oh*OW + ow] = x[n, c, oh*SH - PH + i, ow*SW - PW + j]

with zeros where the index falls in the padding, so a convolution is
``w.reshape(F, C*KH*KW) @ cols[n]``, already in NCHW order. col2im is the adjoint: it
overwrites x with the scatter-add of every column entry to the pixel it came from.
Work items are (image, channel) pairs shared out by OpenMP: the KH*KW rows of a channel
read one input plane, and col2im writes one output plane, so no two threads write the
same memory. The per-channel loops live in _im2col.pxd (shared with conv.pyx).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from cnnkit._ext._im2col cimport by_kernel_columns, col2im_channel, im2col_channel, output_hw


cdef tuple _check(tuple x_shape, tuple cols_shape, int kh, int kw, int sh, int sw, int ph, int pw):
    """(OH, OW) after checking that cols is (N, C*KH*KW, OH*OW) for x (N, C, H, W)."""
    oh, ow = output_hw(x_shape, kh, kw, sh, sw, ph, pw)
    expected = (x_shape[0], x_shape[1] * kh * kw, oh * ow)
    if cols_shape != expected:
        raise ValueError(f"cols must have shape {expected} for x of shape {x_shape}, got {cols_shape}")
    return oh, ow


def im2col_into(const floating[:, :, :, ::1] x, floating[:, :, ::1] cols,
                int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Write the patches of x (N, C, H, W) into cols (N, C*KH*KW, OH*OW)."""
    oh, ow = _check(tuple(x.shape)[:4], tuple(cols.shape)[:3], kh, kw, sh, sw, ph, pw)
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], q
    cdef Py_ssize_t rows = kh * kw, OH = oh, OW = ow
    for q in prange(x.shape[0] * C, nogil=True, schedule="dynamic", num_threads=n_threads):
        im2col_channel(&x[q // C, q % C, 0, 0], &cols[q // C, (q % C) * rows, 0],
                       H, W, kh, kw, sh, sw, ph, pw, OH, OW, OH * OW)


def col2im_into(const floating[:, :, ::1] cols, floating[:, :, :, ::1] x,
                int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Overwrite x (N, C, H, W) with the scatter-add of cols (N, C*KH*KW, OH*OW)."""
    oh, ow = _check(tuple(x.shape)[:4], tuple(cols.shape)[:3], kh, kw, sh, sw, ph, pw)
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], q
    cdef Py_ssize_t rows = kh * kw, OH = oh, OW = ow
    for q in prange(x.shape[0] * C, nogil=True, schedule="dynamic", num_threads=n_threads):
        memset(&x[q // C, q % C, 0, 0], 0, H * W * sizeof(floating))
        col2im_channel(&cols[q // C, (q % C) * rows, 0], &x[q // C, q % C, 0, 0],
                       H, W, kh, kw, sh, sw, ph, pw, OH, OW, OH * OW, False)


def gathers_by_kernel_columns(tuple x_shape, int kh, int kw, int sh, int sw, int ph, int pw):
    """Whether the channel loops take x (N, C, H, W)'s whole planes kernel column by kernel column (_im2col.pxd)."""
    oh, ow = output_hw(x_shape, kh, kw, sh, sw, ph, pw)
    return by_kernel_columns(kh, sh, sw, x_shape[3], oh, ow)
