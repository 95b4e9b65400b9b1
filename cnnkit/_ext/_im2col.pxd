# Window geometry and per-channel im2col / col2im loops, inline and GIL-free, shared by
# im2col.pyx, conv.pyx and pool.pyx.
#
# For kernel offset (i, j) the output positions whose input lies inside the image form one
# rectangle [y0, y1) x [x0, x1), computed once; the loops copy (or add) inside it with no
# per-element bounds test and write zeros around it. Stride-1 rows are contiguous, so the
# compiler vectorises them; when, besides, the output keeps the input's width (OW == W),
# a kernel offset's whole rectangle is one run, with its few edge entries fixed after.
#
# Small maps (at most TABLE_POSITIONS outputs, or STRIDED_POSITIONS where a kernel offset's
# rectangle is not one run) would spend more on each offset's rectangle than on its few
# entries: there, a table of every entry's input index (-1 in the padding), made once for
# all the channels of a call, drives both loops instead. Each
# input still receives its additions in kernel-offset order: the same bits either way.
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.string cimport memcpy, memset


cdef enum:
    TABLE_POSITIONS = 16  # output positions of a window's map up to which the table drives the loops
    STRIDED_POSITIONS = 64  # the same for windows whose rows are not one run (see tabled)
    TABLE_ENTRIES = 4096  # entries of the table (KH*KW*positions) at most: 16 KiB on the stack


cdef inline bint tabled(int kh, int kw, int sh, int sw, Py_ssize_t positions, Py_ssize_t W, Py_ssize_t ow,
                        Py_ssize_t plane) noexcept nogil:
    """Whether the loops over a map of `positions` (rows of ow) outputs of input planes (H, W) of `plane` entries
    go through an index table (whose entries are C ints): up to TABLE_POSITIONS outputs, or STRIDED_POSITIONS
    where no window is one run (a stride-1 window that keeps the width is)."""
    cdef Py_ssize_t most = TABLE_POSITIONS if sh == sw == 1 and ow == W else STRIDED_POSITIONS
    return positions <= most and kh * kw * positions <= TABLE_ENTRIES and plane <= INT_MAX


cdef inline void window_table(int* table, Py_ssize_t H, Py_ssize_t W, int kh, int kw, int sh, int sw,
                              int ph, int pw, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """table (KH*KW, OH*OW): the flat index y*W + x in a plane (H, W) that kernel offset (i, j) reads for each
    output position, or -1 where that falls in the padding."""
    cdef Py_ssize_t i, j, y, x, row, col
    cdef int* entry = table
    for i in range(kh):
        for j in range(kw):
            for y in range(oh):
                row = y * sh + i - ph
                for x in range(ow):
                    col = x * sw + j - pw
                    entry[0] = <int>(row * W + col) if 0 <= row < H and 0 <= col < W else -1
                    entry += 1


cdef inline void tabled_channel(floating* plane, floating* rows, const int* table, Py_ssize_t offsets,
                                Py_ssize_t positions, Py_ssize_t ld, bint gather) noexcept nogil:
    """Through window_table's table (offsets = KH*KW rows of `positions`, ld apart): gather, im2col_channel (rows
    = the plane's entries, zero in the padding; plane only read), or else col2im_channel (plane += rows, its
    entries' additions in kernel-offset order)."""
    cdef Py_ssize_t t, p
    cdef int index
    for t in range(offsets):
        for p in range(positions):
            index = table[t * positions + p]
            if gather:
                rows[t * ld + p] = plane[index] if index >= 0 else 0
            elif index >= 0:
                plane[index] += rows[t * ld + p]


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
                                Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t ld) noexcept nogil:
    """Write the KH*KW rows (each OH*OW long, ld >= OH*OW apart) of one channel plane (H, W)."""
    cdef Py_ssize_t i, j, y0, y1, x0, x1
    cdef floating* dst
    for i in range(kh):
        y0 = first_inside(i - ph, sh, oh)
        y1 = end_inside(i - ph, sh, H, y0, oh)
        for j in range(kw):
            x0 = first_inside(j - pw, sw, ow)
            x1 = end_inside(j - pw, sw, W, x0, ow)
            dst = rows + (i * kw + j) * ld
            memset(dst, 0, y0 * ow * sizeof(floating))
            if sh == sw == 1 and ow == W and y1 > y0:
                _copy_shifted(plane + (y0 + i - ph) * W + j - pw, dst + y0 * ow, y1 - y0, W, x0, x1)
            else:
                _copy_rows(plane, dst, W, sh, sw, i - ph, j - pw, y0, y1, x0, x1, ow)
            memset(dst + y1 * ow, 0, (oh - y1) * ow * sizeof(floating))


cdef inline void _copy_shifted(const floating* src, floating* dst, Py_ssize_t rows, Py_ssize_t W,
                               Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    """dst (rows, W) = src (rows, W) where x0 <= x < x1, zero elsewhere; src rows W apart too.

    One run from the first row's x0 to the last row's x1 (a memcpy: wider moves than the
    baseline build's loop), then the few entries outside [x0, x1) (which the run filled from
    the neighbouring rows) set to zero.
    """
    cdef Py_ssize_t y, x, end = (rows - 1) * W + x1
    if end > x0:
        memcpy(dst + x0, src + x0, (end - x0) * sizeof(floating))
    for y in range(rows):
        for x in range(x0):
            dst[y * W + x] = 0
        for x in range(x1, W):
            dst[y * W + x] = 0


cdef inline void _copy_rows(const floating* plane, floating* dst, Py_ssize_t W, int sh, int sw,
                            Py_ssize_t di, Py_ssize_t dj, Py_ssize_t y0, Py_ssize_t y1,
                            Py_ssize_t x0, Py_ssize_t x1, Py_ssize_t ow) noexcept nogil:
    """Rows [y0, y1) of one kernel offset's output (row length ow): inside [x0, x1), zero around."""
    cdef Py_ssize_t y, t, n_in = x1 - x0
    cdef const floating* src
    cdef floating* row
    for y in range(y0, y1):
        src = plane + (y * sh + di) * W + x0 * sw + dj
        row = dst + y * ow
        for t in range(x0):  # a few entries at most: a loop, not a call (rows are short on small maps)
            row[t] = 0
        if sw == 1:
            for t in range(n_in):
                row[x0 + t] = src[t]
        elif sw == 2:  # a constant stride: GCC vectorises the loads (two vectors, then a shuffle)
            for t in range(n_in):
                row[x0 + t] = src[2 * t]
        else:
            for t in range(n_in):
                row[x0 + t] = src[t * sw]
        for t in range(x1, ow):
            row[t] = 0


cdef inline void col2im_channel(const floating* rows, floating* plane, Py_ssize_t H, Py_ssize_t W,
                                int kh, int kw, int sh, int sw, int ph, int pw,
                                Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t ld, bint rows_writable) noexcept nogil:
    """Scatter-add the KH*KW rows (ld apart) of one channel into its plane (H, W).

    With rows_writable, a stride-1 window with ow == W adds each kernel offset's rows in
    one run, after zeroing its entries that fall in the padding (rows is overwritten there).
    """
    cdef Py_ssize_t i, j, y, t, y0, y1, x0, x1, n_in
    cdef const floating* src
    cdef floating* dst
    for i in range(kh):
        y0 = first_inside(i - ph, sh, oh)
        y1 = end_inside(i - ph, sh, H, y0, oh)
        for j in range(kw):
            x0 = first_inside(j - pw, sw, ow)
            x1 = end_inside(j - pw, sw, W, x0, ow)
            n_in = x1 - x0
            if rows_writable and sh == sw == 1 and ow == W and y1 > y0:
                _add_shifted(<floating*>rows + (i * kw + j) * ld + y0 * ow,
                             plane + (y0 + i - ph) * W + j - pw, y1 - y0, W, x0, x1)
                continue
            for y in range(y0, y1):
                src = rows + (i * kw + j) * ld + y * ow + x0
                dst = plane + (y * sh + i - ph) * W + x0 * sw + j - pw
                if sw == 1:
                    for t in range(n_in):
                        dst[t] += src[t]
                elif sw == 2:
                    for t in range(n_in):
                        dst[2 * t] += src[t]
                else:
                    for t in range(n_in):
                        dst[t * sw] += src[t]


cdef inline void _add_shifted(floating* src, floating* dst, Py_ssize_t rows, Py_ssize_t W,
                              Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    """dst (rows, W) += src (rows, W) where x0 <= x < x1; src rows W apart too, zeroed elsewhere.

    The adjoint of _copy_shifted: zero the entries outside [x0, x1), then one run.
    """
    cdef Py_ssize_t t, y, x, end = (rows - 1) * W + x1
    for y in range(rows):
        for x in range(x0):
            src[y * W + x] = 0
        for x in range(x1, W):
            src[y * W + x] = 0
    for t in range(x0, end):
        dst[t] += src[t]


cdef inline tuple output_hw(tuple x_shape, int kh, int kw, int sh, int sw, int ph, int pw):
    """(OH, OW) of windows over x (N, C, H, W); ValueError for a window that does not fit."""
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"bad window: kernel ({kh}, {kw}), stride ({sh}, {sw}), padding ({ph}, {pw})")
    h, w = x_shape[2], x_shape[3]
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"kernel ({kh}, {kw}) is larger than the padded input ({h + 2 * ph}, {w + 2 * pw})")
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
