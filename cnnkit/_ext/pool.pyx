# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct max and average pooling over NCHW planes, parallel over planes, GIL released.

Design:
1. Work items are (image, channel) planes, handed out by OpenMP in shrinking chunks
   (guided), so a thread that loses its core to another process holds nobody up. A plane
   is read and written by one thread only: overlapping windows need no atomics.
2. Windows start at (oh*SH - PH, ow*SW - PW) and padding is never read: it counts as
   -inf for max pooling and as zeros for average pooling (which always divides by KH*KW).
3. A plane is done one output row at a time, kernel offsets (i, j) in row-major order,
   and for each offset one loop over the outputs [x0, x1) whose input is inside the image
   (the ranges im2col uses). That loop has no branch, so the compiler vectorises it, and
   each output still sees its window in row-major order, as the reference does.
4. Max pooling records, per output, the flat index h*W + w of its window's first maximum
   (np.argmax's rule: larger wins, and a NaN beats any number, so the first NaN wins).
   The running index starts at the window's top-left corner, or -1 when that corner is
   padding: the first maximum when nothing in the window beats -inf. Backward scatters
   dout through the indices.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset

from cnnkit._ext._im2col cimport end_inside, first_inside, output_hw


cdef void _max_plane(const floating* plane, floating* out, int* argmax, Py_ssize_t H, Py_ssize_t W,
                     Py_ssize_t oh, Py_ssize_t ow, int kh, int kw, int sh, int sw, int ph, int pw) noexcept nogil:
    cdef Py_ssize_t y, x, i, j, h, x0, x1, top
    cdef floating value, best
    cdef bint better
    cdef floating* best_row
    cdef int* index_row
    for y in range(oh):
        best_row, index_row, top = out + y * ow, argmax + y * ow, y * sh - ph
        for x in range(ow):
            best_row[x] = -INFINITY
            index_row[x] = <int>(top * W + x * sw - pw) if 0 <= top < H and 0 <= x * sw - pw < W else -1
        for i in range(max(0, -top), min(kh, H - top)):
            h = top + i
            for j in range(kw):
                x0 = first_inside(j - pw, sw, ow)
                x1 = end_inside(j - pw, sw, W, x0, ow)
                for x in range(x0, x1):
                    value, best = plane[h * W + x * sw + j - pw], best_row[x]
                    better = (value > best) | ((value != value) & (best == best))
                    best_row[x] = value if better else best
                    index_row[x] = <int>(h * W + x * sw + j - pw) if better else index_row[x]


cdef void _avg_plane(const floating* plane, floating* out, Py_ssize_t H, Py_ssize_t W,
                     Py_ssize_t oh, Py_ssize_t ow, int kh, int kw, int sh, int sw, int ph, int pw) noexcept nogil:
    cdef Py_ssize_t y, x, i, j, h, x0, x1, top
    cdef floating* row
    for y in range(oh):
        row, top = out + y * ow, y * sh - ph
        for x in range(ow):
            row[x] = 0
        for i in range(max(0, -top), min(kh, H - top)):
            h = top + i
            for j in range(kw):
                x0 = first_inside(j - pw, sw, ow)
                x1 = end_inside(j - pw, sw, W, x0, ow)
                for x in range(x0, x1):
                    row[x] += plane[h * W + x * sw + j - pw]
        for x in range(ow):
            row[x] = row[x] / <floating>(kh * kw)


cdef void _avg_plane_backward(const floating* dout, floating* plane, Py_ssize_t H, Py_ssize_t W,
                              Py_ssize_t oh, Py_ssize_t ow, int kh, int kw, int sh, int sw,
                              int ph, int pw) noexcept nogil:
    cdef Py_ssize_t y, x, i, j, h, x0, x1, top
    cdef const floating* row
    memset(plane, 0, H * W * sizeof(floating))
    for y in range(oh):
        row, top = dout + y * ow, y * sh - ph
        for i in range(max(0, -top), min(kh, H - top)):
            h = top + i
            for j in range(kw):
                x0 = first_inside(j - pw, sw, ow)
                x1 = end_inside(j - pw, sw, W, x0, ow)
                for x in range(x0, x1):
                    plane[h * W + x * sw + j - pw] += row[x] / <floating>(kh * kw)


cdef _check(tuple x_shape, tuple out_shape, int kh, int kw, int sh, int sw, int ph, int pw):
    """Raise ValueError unless out_shape is (N, C, OH, OW) for windows over x_shape (N, C, H, W)."""
    oh, ow = output_hw(x_shape, kh, kw, sh, sw, ph, pw)
    if x_shape[2] * x_shape[3] > 2**31 - 1:
        raise ValueError(f"planes of {x_shape[2]} x {x_shape[3]} are too large for int32 argmax indices")
    expected = x_shape[:2] + (oh, ow)
    if out_shape != expected:
        raise ValueError(f"pooled array must have shape {expected} for input {x_shape}, got {out_shape}")


def max_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, int[:, :, :, ::1] argmax,
                     int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Fill out and argmax (both N, C, OH, OW) with each window's maximum and its flat index."""
    _check(tuple(x.shape)[:4], tuple(out.shape)[:4], kh, kw, sh, sw, ph, pw)
    if tuple(argmax.shape)[:4] != tuple(out.shape)[:4]:
        raise ValueError(f"argmax must have shape {tuple(out.shape)[:4]}, got {tuple(argmax.shape)[:4]}")
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], oh = out.shape[2], ow = out.shape[3], q
    for q in prange(x.shape[0] * C, nogil=True, schedule="guided", num_threads=n_threads):
        _max_plane(&x[q // C, q % C, 0, 0], &out[q // C, q % C, 0, 0], &argmax[q // C, q % C, 0, 0],
                   H, W, oh, ow, kh, kw, sh, sw, ph, pw)


def max_pool_backward(const floating[:, :, :, ::1] dout, const int[:, :, :, ::1] argmax,
                      floating[:, :, :, ::1] dx, int n_threads):
    """Overwrite dx (N, C, H, W) with dout (N, C, OH, OW) scattered to the argmax indices."""
    if tuple(dout.shape)[:4] != tuple(argmax.shape)[:4] or tuple(dx.shape)[:2] != tuple(dout.shape)[:2]:
        raise ValueError(f"dout {tuple(dout.shape)[:4]}, argmax {tuple(argmax.shape)[:4]} and "
                         f"dx {tuple(dx.shape)[:4]} must agree on (N, C) and on (OH, OW)")
    cdef Py_ssize_t C = dx.shape[1], size = dx.shape[2] * dx.shape[3], outs = dout.shape[2] * dout.shape[3]
    cdef Py_ssize_t q, o, index
    cdef floating* plane
    cdef const floating* grad
    cdef const int* where
    for q in prange(dx.shape[0] * C, nogil=True, schedule="guided", num_threads=n_threads):
        plane, grad, where = &dx[q // C, q % C, 0, 0], &dout[q // C, q % C, 0, 0], &argmax[q // C, q % C, 0, 0]
        memset(plane, 0, size * sizeof(floating))
        for o in range(outs):
            index = where[o]
            if 0 <= index < size:
                plane[index] += grad[o]


def avg_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                     int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Fill out (N, C, OH, OW) with the sum of each zero-padded window divided by KH*KW."""
    _check(tuple(x.shape)[:4], tuple(out.shape)[:4], kh, kw, sh, sw, ph, pw)
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], oh = out.shape[2], ow = out.shape[3], q
    for q in prange(x.shape[0] * C, nogil=True, schedule="guided", num_threads=n_threads):
        _avg_plane(&x[q // C, q % C, 0, 0], &out[q // C, q % C, 0, 0], H, W, oh, ow, kh, kw, sh, sw, ph, pw)


def avg_pool_backward(const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx,
                      int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Overwrite dx (N, C, H, W) with each dout (N, C, OH, OW) entry / (KH*KW) spread over its window."""
    _check(tuple(dx.shape)[:4], tuple(dout.shape)[:4], kh, kw, sh, sw, ph, pw)
    cdef Py_ssize_t C = dx.shape[1], H = dx.shape[2], W = dx.shape[3], oh = dout.shape[2], ow = dout.shape[3], q
    for q in prange(dx.shape[0] * C, nogil=True, schedule="guided", num_threads=n_threads):
        _avg_plane_backward(&dout[q // C, q % C, 0, 0], &dx[q // C, q % C, 0, 0], H, W, oh, ow,
                            kh, kw, sh, sw, ph, pw)
