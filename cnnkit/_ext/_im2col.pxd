# Window geometry and per-channel im2col / col2im loops, inline and GIL-free, shared by
# im2col.pyx, conv.pyx and pool.pyx.
#
# For kernel offset (i, j) the output positions whose input lies inside the image form one
# rectangle [y0, y1) x [x0, x1), computed once; the loops copy (or add) inside it with no
# per-element bounds test and write zeros around it. Stride-1 rows are contiguous, so the
# compiler vectorises them.
from cython cimport floating
from libc.string cimport memset


cdef inline Py_ssize_t first_inside(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t count) noexcept nogil:
    """Smallest o in [0, count] with o*stride + offset >= 0."""
    if offset >= 0:
        return 0
    return min((stride - 1 - offset) // stride, count)


cdef inline Py_ssize_t end_inside(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size,
                                  Py_ssize_t lo, Py_ssize_t count) noexcept nogil:
    """Smallest o in [lo, count] with o*stride + offset >= size."""
    if offset >= size:
        return lo
    return max(lo, min((size - offset + stride - 1) // stride, count))


cdef inline void im2col_channel(const floating* plane, floating* rows, Py_ssize_t H, Py_ssize_t W,
                                int kh, int kw, int sh, int sw, int ph, int pw,
                                Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """Write the KH*KW rows (each OH*OW long) of one channel plane (H, W)."""
    cdef Py_ssize_t i, j, y, t, y0, y1, x0, x1, n_in
    cdef floating* dst
    cdef const floating* src
    for i in range(kh):
        y0 = first_inside(i - ph, sh, oh)
        y1 = end_inside(i - ph, sh, H, y0, oh)
        for j in range(kw):
            x0 = first_inside(j - pw, sw, ow)
            x1 = end_inside(j - pw, sw, W, x0, ow)
            n_in = x1 - x0
            dst = rows + (i * kw + j) * oh * ow
            memset(dst, 0, y0 * ow * sizeof(floating))
            for y in range(y0, y1):
                src = plane + (y * sh + i - ph) * W + x0 * sw + j - pw
                memset(dst + y * ow, 0, x0 * sizeof(floating))
                if sw == 1:
                    for t in range(n_in):
                        dst[y * ow + x0 + t] = src[t]
                else:
                    for t in range(n_in):
                        dst[y * ow + x0 + t] = src[t * sw]
                memset(dst + y * ow + x1, 0, (ow - x1) * sizeof(floating))
            memset(dst + y1 * ow, 0, (oh - y1) * ow * sizeof(floating))


cdef inline void col2im_channel(const floating* rows, floating* plane, Py_ssize_t H, Py_ssize_t W,
                                int kh, int kw, int sh, int sw, int ph, int pw,
                                Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """Overwrite one channel plane (H, W) with the scatter-add of its KH*KW rows."""
    cdef Py_ssize_t i, j, y, t, y0, y1, x0, x1, n_in
    cdef const floating* src
    cdef floating* dst
    memset(plane, 0, H * W * sizeof(floating))
    for i in range(kh):
        y0 = first_inside(i - ph, sh, oh)
        y1 = end_inside(i - ph, sh, H, y0, oh)
        for j in range(kw):
            x0 = first_inside(j - pw, sw, ow)
            x1 = end_inside(j - pw, sw, W, x0, ow)
            n_in = x1 - x0
            for y in range(y0, y1):
                src = rows + (i * kw + j) * oh * ow + y * ow + x0
                dst = plane + (y * sh + i - ph) * W + x0 * sw + j - pw
                if sw == 1:
                    for t in range(n_in):
                        dst[t] += src[t]
                else:
                    for t in range(n_in):
                        dst[t * sw] += src[t]


cdef inline tuple output_hw(tuple x_shape, int kh, int kw, int sh, int sw, int ph, int pw):
    """(OH, OW) of windows over x (N, C, H, W); ValueError for a window that does not fit."""
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"bad window: kernel ({kh}, {kw}), stride ({sh}, {sw}), padding ({ph}, {pw})")
    h, w = x_shape[2], x_shape[3]
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"kernel ({kh}, {kw}) is larger than the padded input ({h + 2 * ph}, {w + 2 * pw})")
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
