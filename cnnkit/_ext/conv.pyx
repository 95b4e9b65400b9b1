# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Convolution drivers: OpenMP threads over images, each running im2col, its GEMMs and col2im.

Notation: K = C*KH*KW column rows, P = OH*OW output positions, T threads, and
wb = [w.reshape(F, K) | b] of shape (F, K+1).

Design:
1. One parallel loop per call; images are dealt out dynamically (the cores may be
   shared). Thread t owns a column buffer (K+1, P) whose last row is ones, so wb @ cols
   adds the bias and dout[n] @ cols.T yields [dw | db] in the same product.
2. The GEMMs go through numpy (BLAS) from inside the loop: a thread holds the GIL only
   to make the call and numpy releases it for the product, so the T products run at
   once. The caller caps BLAS at one thread meanwhile: OpenMP alone shares out the cores
   and BLAS's own worker threads stay asleep instead of spinning against ours.
3. Forward writes out[n] (F, P) in place: NCHW, no transpose. Backward overwrites the
   buffer's first K rows with w.T @ dout[n] and col2im scatter-adds them into dx[n];
   [dw | db] is summed over fixed groups of consecutive images, then across the groups
   in order: the threads take groups dynamically, yet every call adds in the same order,
   so the gradients are reproducible bit for bit.
4. Nothing of size N*K*P exists: backward recomputes each image's columns.
5. A pointwise convolution (1x1 kernel, unit stride, no padding) skips im2col: x[n] seen
   as (C, H*W) is its own column matrix; plain loops add the bias and sum db.
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport prange, threadid

from cnnkit._ext._im2col cimport col2im_channel, im2col_channel, output_hw

GRADIENT_GROUPS = 8  # groups of images whose weight gradients are summed apart (see 3.)


cdef void _im2col_image(const floating* image, floating* cols, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        int kh, int kw, int sh, int sw, int ph, int pw, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(C):
        im2col_channel(image + c * H * W, cols + c * kh * kw * oh * ow, H, W, kh, kw, sh, sw, ph, pw, oh, ow)


cdef void _col2im_image(const floating* cols, floating* image, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        int kh, int kw, int sh, int sw, int ph, int pw, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(C):
        col2im_channel(cols + c * kh * kw * oh * ow, image + c * H * W, H, W, kh, kw, sh, sw, ph, pw, oh, ow)


cdef void _add_last_column(floating* out, const floating* wb, Py_ssize_t F, Py_ssize_t K,
                           Py_ssize_t P) noexcept nogil:
    """out (F, P) += wb[:, K] (the bias) along each row."""
    cdef Py_ssize_t f, p
    for f in range(F):
        for p in range(P):
            out[f * P + p] += wb[f * (K + 1) + K]


cdef void _add_row_sums(floating* dwb, const floating* dout, Py_ssize_t F, Py_ssize_t K,
                        Py_ssize_t P) noexcept nogil:
    """dwb[:, K] (db) += dout (F, P) summed along each row (in double, as P may be large)."""
    cdef Py_ssize_t f, p
    cdef double total
    for f in range(F):
        total = 0
        for p in range(P):
            total = total + dout[f * P + p]
        dwb[f * (K + 1) + K] += <floating>total


cdef void _add(floating* total, const floating* part, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        total[i] += part[i]


cdef tuple _geometry(tuple x_shape, tuple wb_shape, int kh, int kw, int sh, int sw, int ph, int pw):
    """(OH, OW, K) after checking that wb is (F, C*KH*KW + 1) for x (N, C, H, W)."""
    oh, ow = output_hw(x_shape, kh, kw, sh, sw, ph, pw)
    k = x_shape[1] * kh * kw
    if wb_shape[1] != k + 1:
        raise ValueError(f"wb must have shape (F, {k + 1}) = (F, C*KH*KW + 1), got {wb_shape}")
    return oh, ow, k


cdef _expect(tuple shape, tuple expected, str name):
    if shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {shape}")


cdef inline bint _pointwise(int kh, int kw, int sh, int sw, int ph, int pw):
    return kh == kw == sh == sw == 1 and ph == pw == 0


def _column_buffers(int threads, Py_ssize_t k, Py_ssize_t p, dtype, bint pointwise):
    """One (K+1, P) column buffer per thread, last row ones; (T, 0, 0) when no im2col is needed."""
    if threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {threads}")
    if pointwise:
        return np.empty((threads, 0, 0), dtype=dtype)
    buffers = np.empty((threads, k + 1, p), dtype=dtype)
    buffers[:, k] = 1
    return buffers


def conv_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] wb, floating[:, :, ::1] out,
                 int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """out (N, F, OH*OW) = wb @ columns(x[n]) for each image of x (N, C, H, W); wb is (F, K+1)."""
    oh, ow, k = _geometry(tuple(x.shape)[:4], tuple(wb.shape)[:2], kh, kw, sh, sw, ph, pw)
    _expect(tuple(out.shape)[:3], (x.shape[0], wb.shape[0], oh * ow), "out")
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], F = wb.shape[0]
    cdef Py_ssize_t OH = oh, OW = ow, K = k, P = OH * OW, n
    cdef bint pointwise = _pointwise(kh, kw, sh, sw, ph, pw)
    cdef int t
    dtype = np.float32 if floating is float else np.float64
    buffers = _column_buffers(n_threads, K, P, dtype, pointwise)
    cdef floating[:, :, ::1] cols = buffers
    x_array, wb_array, out_array = np.asarray(x).reshape(N, C, H * W), np.asarray(wb), np.asarray(out)
    for n in prange(N, nogil=True, schedule="dynamic", num_threads=n_threads):
        t = threadid()
        if pointwise:
            with gil:
                np.matmul(wb_array[:, :K], x_array[n], out=out_array[n])
            _add_last_column(&out[n, 0, 0], &wb[0, 0], F, K, P)
        else:
            _im2col_image(&x[n, 0, 0, 0], &cols[t, 0, 0], C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)
            with gil:
                np.matmul(wb_array, buffers[t], out=out_array[n])


def conv_backward(const floating[:, :, :, ::1] x, const floating[:, ::1] wb, const floating[:, :, ::1] dout,
                  floating[:, :, :, ::1] dx, int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Overwrite dx (N, C, H, W) with the input gradient; return [dw | db] of shape (F, K+1).

    x (N, C, H, W) and wb (F, K+1) are the forward inputs, dout (N, F, OH*OW) the output gradient.
    """
    oh, ow, k = _geometry(tuple(x.shape)[:4], tuple(wb.shape)[:2], kh, kw, sh, sw, ph, pw)
    _expect(tuple(dout.shape)[:3], (x.shape[0], wb.shape[0], oh * ow), "dout")
    _expect(tuple(dx.shape)[:4], tuple(x.shape)[:4], "dx")
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], F = wb.shape[0]
    cdef Py_ssize_t OH = oh, OW = ow, K = k, P = OH * OW, n, g, groups = min(N, GRADIENT_GROUPS)
    cdef bint pointwise = _pointwise(kh, kw, sh, sw, ph, pw)
    cdef int t
    dtype = np.float32 if floating is float else np.float64
    buffers = _column_buffers(n_threads, K, P, dtype, pointwise)
    # per group of images: its [dw | db]; per thread: one image's product (column K stays 0 when pointwise)
    sums, products = np.zeros((groups, F, K + 1), dtype=dtype), np.zeros((n_threads, F, K + 1), dtype=dtype)
    cdef floating[:, :, ::1] cols = buffers, dwb = sums, dwb_n = products
    x_array, dout_array = np.asarray(x).reshape(N, C, H * W), np.asarray(dout)
    w_t, dx_array = np.asarray(wb)[:, :K].T, np.asarray(dx).reshape(N, C, H * W)
    for g in prange(groups, nogil=True, schedule="dynamic", num_threads=n_threads):
        t = threadid()
        for n in range(g * N // groups, (g + 1) * N // groups):
            if pointwise:
                with gil:
                    np.matmul(dout_array[n], x_array[n].T, out=products[t, :, :K])
                    np.matmul(w_t, dout_array[n], out=dx_array[n])
                _add_row_sums(&dwb[g, 0, 0], &dout[n, 0, 0], F, K, P)
            else:
                _im2col_image(&x[n, 0, 0, 0], &cols[t, 0, 0], C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)
                with gil:
                    np.matmul(dout_array[n], buffers[t].T, out=products[t])
                    np.matmul(w_t, dout_array[n], out=buffers[t, :K])
                _col2im_image(&cols[t, 0, 0], &dx[n, 0, 0, 0], C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)
            _add(&dwb[g, 0, 0], &dwb_n[t, 0, 0], F * (K + 1))
    return sums.sum(axis=0)
