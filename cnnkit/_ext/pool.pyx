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
5. 2x2 windows at stride 2 without padding, the pooling of most CNNs, have a loop of their
   own: one pass per output row over the four values of each window, in the same order and
   by the same rule, BLOCK outputs at a time into arrays on the stack, then copied out. GCC
   vectorises it only so (storing straight to out and argmax, inlined in the OpenMP region,
   it did not) and only written with if, or and and. x (64, 16, 28, 28) float32 on one
   thread: 1.36-1.45 ms -> 0.85-0.88; (64, 16, 14, 14), 7 outputs a row, mostly the scalar
   remainder: 0.65-0.72 -> 0.47.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset

from cnnkit._ext._im2col cimport end_inside, first_inside, output_hw


cdef enum:
    BLOCK = 64  # outputs of a row of 2x2 windows computed into arrays on the stack first (see 5.)


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


cdef void _max_plane_2x2(const floating* plane, floating* out, int* argmax, int W, Py_ssize_t oh,
                         int ow) noexcept nogil:
    """_max_plane for 2x2 windows at stride 2 without padding (see 5.): the same maxima and indices."""
    cdef Py_ssize_t y
    cdef int block, x, x0, n, corner, index, right = 1, below = W, below_right = W + 1  # ints: no long in the loop
    cdef const floating* top
    cdef floating best, value
    cdef floating bests[BLOCK]
    cdef int indices[BLOCK]
    for y in range(oh):
        top = plane + 2 * y * W
        for block in range((ow + BLOCK - 1) // BLOCK):
            x0 = block * BLOCK
            n = min(BLOCK, ow - x0)
            for x in range(x0, x0 + n):  # locals, if, or and and (not bint's | and &): so GCC vectorises it
                corner = <int>(2 * y * W) + 2 * x
                best, index = top[2 * x], corner
                value = top[2 * x + 1]
                if value > best or (value != value and best == best):
                    best, index = value, corner + right
                value = top[W + 2 * x]
                if value > best or (value != value and best == best):
                    best, index = value, corner + below
                value = top[W + 2 * x + 1]
                if value > best or (value != value and best == best):
                    best, index = value, corner + below_right
                bests[x - x0], indices[x - x0] = best, index
            for x in range(n):  # stores apart: into out and argmax, GCC would not vectorise the loop above
                out[y * ow + x0 + x], argmax[y * ow + x0 + x] = bests[x], indices[x]


cdef void _max_pool_2x2(const floating* x, floating* out, int* argmax, Py_ssize_t planes, Py_ssize_t H, int W,
                        Py_ssize_t oh, int ow, int n_threads) noexcept nogil:
    """_max_plane_2x2 over `planes` planes (H, W) of x into out and argmax (planes, oh, ow)."""
    cdef Py_ssize_t q
    for q in prange(planes, schedule="guided", num_threads=n_threads):
        _max_plane_2x2(x + q * H * W, out + q * oh * ow, argmax + q * oh * ow, W, oh, ow)


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
    if kh == kw == sh == sw == 2 and ph == pw == 0 and x.shape[0] * C:
        _max_pool_2x2(&x[0, 0, 0, 0], &out[0, 0, 0, 0], &argmax[0, 0, 0, 0], x.shape[0] * C, H, <int>W, oh,
                      <int>ow, n_threads)
        return
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
