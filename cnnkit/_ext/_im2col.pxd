# Window geometry and per-channel im2col / col2im loops, inline and GIL-free, shared by
# im2col.pyx, conv.pyx and pool.pyx.
#
# For kernel offset (i, j) the output positions whose input lies inside the image form one
# rectangle [y0, y1) x [x0, x1), computed once; the loops copy (or add) inside it with no
# per-element bounds test and write zeros around it. Stride-1 rows are contiguous, so the
# compiler vectorises them; when, besides, the output keeps the input's width (OW == W),
# a kernel offset's whole rectangle is one run, with its few edge entries fixed after.
# On narrow maps (output rows of at most GATHER_WIDTH), windows at least twice as tall as
# their vertical stride go kernel column by kernel column instead: a column's input rows
# are gathered once, and each of its KH offsets' rows is a run of them, copied (or added)
# whole: KH/SH times fewer of the short row loops whose per-row costs dominate there.
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
    GATHER_WIDTH = 32  # output width up to which a channel goes kernel column by kernel column (im2col_channel)
    GATHERED_ENTRIES = 4096  # entries of a kernel column's gathered rows at most: 16 or 32 KiB on the stack


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


cdef inline bint by_kernel_columns(int kh, int sh, int sw, Py_ssize_t W, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """Whether a channel's rows are made kernel column by kernel column (see im2col_channel): windows at least twice
    as tall as their vertical stride, on maps no wider than GATHER_WIDTH whose rows are not one run already, when
    the gathered rows fit."""
    return (kh >= 2 * sh and ow <= GATHER_WIDTH and not (sh == sw == 1 and ow == W)
            and min(sh, kh) * _phase_rows(kh, sh, oh, 0) * ow <= GATHERED_ENTRIES)


cdef inline Py_ssize_t _phase_rows(int kh, int sh, Py_ssize_t oh, Py_ssize_t phase) noexcept nogil:
    """Input rows phase, phase + SH, ... (from the top padding on) that the kernel rows i = phase mod SH read."""
    return oh + (kh - 1 - phase) // sh


cdef inline void im2col_channel(const floating* plane, floating* rows, Py_ssize_t H, Py_ssize_t W,
                                int kh, int kw, int sh, int sw, int ph, int pw,
                                Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t ld) noexcept nogil:
    """Write the KH*KW rows (each OH*OW long, ld >= OH*OW apart) of one channel plane (H, W).

    Kernel offset by kernel offset, each an (OH, OW) gather; or, on narrow maps (by_kernel_columns),
    kernel column by kernel column: column j's input rows, at columns x*SW + j - PW, are gathered
    once into a buffer on the stack, split by phase (row mod SH), and the row of each kernel
    offset (i, j) is then one run of OH consecutive gathered rows, copied whole: a KH-th of the
    short row gathers for a stride-1 window, whose per-row costs dominate on such maps.
    """
    cdef Py_ssize_t i, j, phase, span
    cdef floating gathered[GATHERED_ENTRIES]
    if not by_kernel_columns(kh, sh, sw, W, oh, ow):
        for i in range(kh):
            for j in range(kw):
                _offset_rows(plane, rows + (i * kw + j) * ld, H, W, sh, sw, i - ph, j - pw, oh, ow)
        return
    span = _phase_rows(kh, sh, oh, 0)
    for j in range(kw):
        for phase in range(min(sh, kh)):
            _offset_rows(plane, gathered + phase * span * ow, H, W, sh, sw, phase - ph, j - pw,
                         _phase_rows(kh, sh, oh, phase), ow)
        for i in range(kh):
            memcpy(rows + (i * kw + j) * ld, gathered + (i % sh * span + i // sh) * ow, oh * ow * sizeof(floating))


cdef inline void _offset_rows(const floating* plane, floating* dst, Py_ssize_t H, Py_ssize_t W, int sh, int sw,
                              Py_ssize_t di, Py_ssize_t dj, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """dst (oh, ow): entry (y, x) = plane[y*SH + di, x*SW + dj] (plane (H, W)), zero outside the plane."""
    cdef Py_ssize_t y0 = first_inside(di, sh, oh), x0 = first_inside(dj, sw, ow)
    cdef Py_ssize_t y1 = end_inside(di, sh, H, y0, oh), x1 = end_inside(dj, sw, W, x0, ow)
    memset(dst, 0, y0 * ow * sizeof(floating))
    if sh == sw == 1 and ow == W and y1 > y0:
        _copy_shifted(plane + (y0 + di) * W + dj, dst + y0 * ow, y1 - y0, W, x0, x1)
    else:
        _copy_rows(plane, dst, W, sh, sw, di, dj, y0, y1, x0, x1, ow)
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

    The adjoint of im2col_channel, the same way through: kernel offset by kernel offset (with
    rows_writable, a stride-1 window with ow == W adds each offset's rows in one run, after
    zeroing its entries that fall in the padding: rows is overwritten there), or kernel column
    by kernel column, each offset's row added whole into the column's gathered rows, which are
    then added into the plane.
    """
    cdef Py_ssize_t i, j, t, phase, phases = min(sh, kh), span
    cdef floating gathered[GATHERED_ENTRIES]
    cdef floating* sums
    cdef const floating* src
    if not by_kernel_columns(kh, sh, sw, W, oh, ow):
        for i in range(kh):
            for j in range(kw):
                if rows_writable and sh == sw == 1 and ow == W:
                    _add_shifted_offset(<floating*>rows + (i * kw + j) * ld, plane, H, W, i - ph, j - pw, oh)
                else:
                    _add_offset_rows(rows + (i * kw + j) * ld, plane, H, W, sh, sw, i - ph, j - pw, oh, ow)
        return
    span = _phase_rows(kh, sh, oh, 0)
    for j in range(kw):
        memset(gathered, 0, phases * span * ow * sizeof(floating))
        for i in range(kh):
            src, sums = rows + (i * kw + j) * ld, gathered + (i % sh * span + i // sh) * ow
            for t in range(oh * ow):
                sums[t] += src[t]
        for phase in range(phases):
            _add_offset_rows(gathered + phase * span * ow, plane, H, W, sh, sw, phase - ph, j - pw,
                             _phase_rows(kh, sh, oh, phase), ow)


cdef inline void _add_offset_rows(const floating* src, floating* plane, Py_ssize_t H, Py_ssize_t W, int sh, int sw,
                                  Py_ssize_t di, Py_ssize_t dj, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    """The adjoint of _offset_rows: plane[y*SH + di, x*SW + dj] += src (oh, ow)'s entry (y, x) inside the plane."""
    cdef Py_ssize_t y, t, y0 = first_inside(di, sh, oh), x0 = first_inside(dj, sw, ow)
    cdef Py_ssize_t y1 = end_inside(di, sh, H, y0, oh), x1 = end_inside(dj, sw, W, x0, ow), n_in = x1 - x0
    cdef const floating* row
    cdef floating* dst
    for y in range(y0, y1):
        row, dst = src + y * ow + x0, plane + (y * sh + di) * W + x0 * sw + dj
        if sw == 1:
            for t in range(n_in):
                dst[t] += row[t]
        elif sw == 2:
            for t in range(n_in):
                dst[2 * t] += row[t]
        else:
            for t in range(n_in):
                dst[t * sw] += row[t]


cdef inline void _add_shifted_offset(floating* src, floating* plane, Py_ssize_t H, Py_ssize_t W, Py_ssize_t di,
                                     Py_ssize_t dj, Py_ssize_t oh) noexcept nogil:
    """_add_offset_rows for a stride-1 window with ow == W, in one run (_add_shifted); src's entries that fall in
    the padding are zeroed."""
    cdef Py_ssize_t y0 = first_inside(di, 1, oh), x0 = first_inside(dj, 1, W)
    cdef Py_ssize_t y1 = end_inside(di, 1, H, y0, oh), x1 = end_inside(dj, 1, W, x0, W)
    if y1 > y0:
        _add_shifted(src + y0 * W, plane + (y0 + di) * W + dj, y1 - y0, W, x0, x1)


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
