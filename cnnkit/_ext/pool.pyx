# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct max and average pooling over NCHW planes, parallel over planes, GIL released.

Design:
1. Work items are (image, channel) planes, handed out by OpenMP in shrinking chunks
   (guided), so a thread that loses its core to another process holds nobody up. A plane
   is read and written by one thread only, in a fixed order: overlapping windows need no
   atomics, and the same input gives the same bits on any number of threads.
2. Windows start at (oh*SH - PH, ow*SW - PW) and padding is never read: it counts as
   -inf for max pooling and as zeros for average pooling (which always divides by KH*KW).
3. Two ways through a plane, chosen by the output width (`_by_windows`):
   - by rows, for wide outputs: one output row at a time, kernel offsets (i, j) in
     row-major order, and for each offset one loop over the outputs [x0, x1) whose input
     is inside the image (column ranges computed once per call). That loop has no branch,
     so the compiler vectorises it across outputs.
   - by windows, for narrow outputs (small maps, global pooling): one output at a time,
     each window row a contiguous run, reduced in order when short (as the reference sums)
     and in LANES interleaved lanes when long (vectorised, a fixed order); a window of whole
     rows, as in global pooling, is one run over the plane. Max pooling takes this way only
     for outputs of at most SHORT_ROW a row or window rows of LANES or more: elsewhere its
     short runs branch on every entry, and the selects by rows, branch-free, are faster
     (3x3 at stride 2 on 8x8 maps: 1.5 times). Average pooling takes it only for outputs of
     fewer than AVG_ROW_MIN a row: from there its separable passes by rows are faster (5x5 at
     stride 3 on 17x17 maps: forward 0.70 and backward 0.72 times the time by windows).
4. Max pooling records, per output, the flat index h*W + w of its window's first maximum
   in row-major order (np.argmax's rule: larger wins, and a NaN beats any number, so the
   first NaN wins). The running index starts at the window's top-left corner, or -1 when
   that corner is padding: the first maximum when nothing in the window beats -inf.
   Lanes keep their own first maximum; merging them takes the smallest index among the
   lanes holding the maximum. Backward scatters dout through the indices.
5. 2x2 windows at stride 2 without padding, the pooling of most CNNs, have loops of their
   own, branch-free selects that GCC vectorises (written with locals, if, or and and; by
   other spellings it did not). Row by row: one pass per output row over the four values of
   each window, in row-major order and by 4.'s rule, BLOCK outputs at a time into arrays on
   the stack, then copied out. By segments, float32 on maps up to SEGMENT_WIDTH outputs wide
   (0.4-0.9 times the time there; about even from 16 to 28): over whole output rows, BLOCK
   outputs at most, a first pass takes each column's pair of inputs, contiguous rows, to the
   first maximum of the two and its flat index, a second each window's two columns to the
   one that beats the other or ties it with the lower index (the first in row-major order),
   all the segment's outputs in one loop however short its rows. float64 keeps the rows but on
   maps up to SEGMENT_WIDTH_DOUBLE outputs wide (4x4 maps: 0.4 times the time): GCC vectorises
   the second pass poorly with 8-byte values beside 4-byte indices, and rows that short leave
   only its scalar tails, which branch on every entry. Small planes of an even height (4x4,
   8x8) are taken BLOCK outputs' worth at a time as one tall plane (their row pairs never
   straddle two planes; an input row's index is taken modulo H): one work item and one segment
   for many planes, not a few outputs each (4x4 maps: 0.7 times the time in float32). Backward
   zeroes and scatters into as many planes per work item.
6. Average pooling's backward adds dout over each window, then divides the plane by
   KH*KW once. By rows, each output row is first spread over one input row (for each
   column, the sum over the windows covering it: KW strided passes of OW), which is then
   added to the KH input rows of its windows in contiguous, vectorised passes; input rows
   longer than ROW_BUFFER add kernel offset by kernel offset instead. Windows that tile the
   plane (stride = kernel, no padding: global pooling, 2x2 at stride 2) overlap nowhere: each
   input is written once, its window's dout / (KH*KW) (zero beyond the last window).
7. Average pooling's forward by rows is separable, its adjoint: the KH input rows of an output
   row's windows are summed into one row of column sums (contiguous, vectorised passes), whose
   KW strided passes of OW then make the outputs: KH*W + KW*OW additions per output row instead
   of KH*KW*OW strided ones. Input rows longer than ROW_BUFFER go kernel offset by kernel offset.
8. Global average pooling (the window is the plane) runs over the planes in one flat loop, a
   run each forward (as by windows) and one write of dout / (H*W) per input backward.
9. Average pooling of 2x2 windows at stride 2 without padding has loops of its own, one
   vectorised pass per output row (forward) or input row (backward), small planes of an even
   height taken BLOCK outputs' worth at a time as in 5. (4x4 to 56x56 maps: forward 0.2-0.5,
   backward 0.15-0.9 times the time by windows or rows).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset

import numpy as np

from cnnkit._ext._im2col cimport end_inside, first_inside, output_hw


cdef enum:
    BLOCK = 512  # outputs of 2x2 windows taken into arrays on the stack first (see 5.)
    SEGMENT_WIDTH = 14  # output width up to which float32's 2x2 max pooling goes by segments (see 5.)
    SEGMENT_WIDTH_DOUBLE = 3  # and float64's
    LANES = 8  # interleaved partial results of a run (see 3.): two SSE vectors of float32
    ROW_MIN = 8  # outputs a row needs to be done by rows (see 3.): fewer leave its loops too short
    SHORT_ROW = 3  # outputs a row may have for max pooling by windows in any case (see _max_by_windows)
    AVG_ROW_MIN = 5  # outputs a row from which average pooling goes by rows (see 3.)
    ROW_BUFFER = 1024  # longest input row average pooling sums (see 7.) or spreads (see 6.) on the stack


cdef struct Geometry:
    Py_ssize_t H, W, oh, ow
    int kh, kw, sh, sw, ph, pw


cdef inline bint _beats(floating value, floating best) noexcept nogil:
    """Whether value replaces best as the first maximum seen so far: larger, or the first NaN."""
    return value > best or (value != value and best == best)


cdef inline bint _by_windows(Geometry g) noexcept nogil:
    """Whether a plane is done by windows rather than by rows (see 3.)."""
    return g.ow < ROW_MIN


cdef inline bint _max_by_windows(Geometry g) noexcept nogil:
    """Whether max pooling does a plane by windows (see 3.): outputs at most SHORT_ROW wide, or narrow ones whose
    window rows are runs of LANES or more (global pooling). Other narrow outputs go by rows: their branch-free
    selects beat the branches a short run takes on every entry (mispredicted on random data)."""
    return g.ow <= SHORT_ROW or (_by_windows(g) and g.kw >= LANES)


cdef inline bint _avg_by_windows(Geometry g) noexcept nogil:
    """Whether average pooling does a plane by windows (see 3.)."""
    return g.ow < AVG_ROW_MIN


cdef inline bint _global(Geometry g) noexcept nogil:
    """Whether the one window is the whole plane (global average pooling, see 8.)."""
    return g.kh == g.H and g.kw == g.W and g.ph == 0 and g.pw == 0


cdef inline void _max_run(const floating* run, Py_ssize_t n, int start, floating* best, int* index) noexcept nogil:
    """Fold run[0..n), at flat indices start.., into the first maximum (best, index) of what came before."""
    cdef floating lane_best[LANES]
    cdef int lane_index[LANES]
    cdef Py_ssize_t t, k, tail = 0
    cdef floating value, top
    cdef int where
    if n >= LANES:
        for k in range(LANES):
            lane_best[k], lane_index[k] = run[k], start + <int>k
        for t in range(1, n // LANES):
            for k in range(LANES):
                value = run[t * LANES + k]
                lane_index[k] = start + <int>(t * LANES + k) if _beats(value, lane_best[k]) else lane_index[k]
                lane_best[k] = value if _beats(value, lane_best[k]) else lane_best[k]
        top, where = lane_best[0], lane_index[0]
        for k in range(1, LANES):
            value = lane_best[k]
            if _beats(value, top) or (not _beats(top, value) and lane_index[k] < where):
                top, where = value, lane_index[k]
        if _beats(top, best[0]):
            best[0], index[0] = top, where
        tail = n - n % LANES
    for t in range(tail, n):
        if _beats(run[t], best[0]):
            best[0], index[0] = run[t], start + <int>t


cdef inline floating _add_run(const floating* run, Py_ssize_t n, floating total) noexcept nogil:
    """total + the sum of run[0..n): in order when n < LANES (the reference's sum, bit for bit), else
    in LANES interleaved partial sums added pairwise, then the tail in order."""
    cdef floating lanes[LANES]
    cdef Py_ssize_t t, k, tail = 0
    if n >= LANES:
        for k in range(LANES):
            lanes[k] = run[k]
        for t in range(1, n // LANES):
            for k in range(LANES):
                lanes[k] += run[t * LANES + k]
        total += ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
        tail = n - n % LANES
    for t in range(tail, n):
        total += run[t]
    return total


cdef inline void _window(Geometry g, Py_ssize_t y, Py_ssize_t x, Py_ssize_t* rows, Py_ssize_t* cols) noexcept nogil:
    """The rows [rows[0], rows[1]) and columns [cols[0], cols[1]) of output (y, x)'s window inside the image."""
    rows[0], rows[1] = max(y * g.sh - g.ph, 0), min(y * g.sh - g.ph + g.kh, g.H)
    cols[0], cols[1] = max(x * g.sw - g.pw, 0), min(x * g.sw - g.pw + g.kw, g.W)


cdef void _max_windows(const floating* plane, floating* out, int* argmax, Geometry g) noexcept nogil:
    """Max pooling of one plane by windows (see 3.)."""
    cdef Py_ssize_t y, x, h, top, left
    cdef Py_ssize_t rows[2]
    cdef Py_ssize_t cols[2]
    cdef floating best
    cdef int index
    for y in range(g.oh):
        for x in range(g.ow):
            _window(g, y, x, rows, cols)
            top, left = y * g.sh - g.ph, x * g.sw - g.pw
            best, index = -INFINITY, <int>(top * g.W + left) if 0 <= top < g.H and 0 <= left < g.W else -1
            if cols[0] == 0 and cols[1] == g.W:
                _max_run(plane + rows[0] * g.W, (rows[1] - rows[0]) * g.W, <int>(rows[0] * g.W), &best, &index)
            else:
                for h in range(rows[0], rows[1]):
                    _max_run(plane + h * g.W + cols[0], cols[1] - cols[0], <int>(h * g.W + cols[0]), &best, &index)
            out[y * g.ow + x], argmax[y * g.ow + x] = best, index


cdef void _max_rows(const floating* plane, floating* out, int* argmax, Geometry g,
                    const Py_ssize_t* spans) noexcept nogil:
    """Max pooling of one plane by rows (see 3.); outputs [spans[j], spans[KW + j]) see offset j inside."""
    cdef Py_ssize_t y, x, i, j, start, top
    cdef floating value, best
    cdef bint better
    cdef floating* best_row
    cdef int* index_row
    for y in range(g.oh):
        best_row, index_row, top = out + y * g.ow, argmax + y * g.ow, y * g.sh - g.ph
        for x in range(g.ow):
            best_row[x] = -INFINITY
            index_row[x] = <int>(top * g.W + x * g.sw - g.pw) if 0 <= top < g.H and 0 <= x * g.sw - g.pw < g.W else -1
        for i in range(max(0, -top), min(g.kh, g.H - top)):
            for j in range(g.kw):
                start = (top + i) * g.W + j - g.pw
                for x in range(spans[j], spans[g.kw + j]):
                    value, best = plane[start + x * g.sw], best_row[x]
                    better = (value > best) | ((value != value) & (best == best))
                    best_row[x] = value if better else best
                    index_row[x] = <int>(start + x * g.sw) if better else index_row[x]


cdef void _max_plane_2x2(const floating* plane, floating* out, int* argmax, int W, Py_ssize_t oh,
                         int ow, Py_ssize_t H) noexcept nogil:
    """_max_rows for 2x2 windows at stride 2 without padding (see 5.): the same maxima and indices. plane may be
    several planes of height H one after the other (H even): their indices are each plane's own."""
    cdef Py_ssize_t segment, y0, per_segment = BLOCK // max(1, ow), widest = SEGMENT_WIDTH_DOUBLE
    if floating is float:
        widest = SEGMENT_WIDTH
    if ow <= widest:
        for segment in range((oh + per_segment - 1) // per_segment):
            y0 = segment * per_segment
            _max_segment_2x2(plane, out + y0 * ow, argmax + y0 * ow, W, y0, min(per_segment, oh - y0), ow, H)
    else:
        _max_rows_2x2(plane, out, argmax, W, oh, ow, H)


cdef void _max_segment_2x2(const floating* plane, floating* out, int* argmax, int W, Py_ssize_t y0,
                           Py_ssize_t rows, int ow, Py_ssize_t H) noexcept nogil:
    """Output rows [y0, y0+rows) (rows*ow <= BLOCK outputs) into out and argmax (see 5.)."""
    cdef Py_ssize_t r, k
    cdef int c, top_index, index, other
    cdef const floating* top
    cdef floating upper, lower, left, right
    cdef floating column_max[2 * BLOCK]
    cdef int column_index[2 * BLOCK]
    for r in range(rows):  # each column's pair: the lower value where it beats the upper (larger, or the first NaN)
        top, top_index = plane + 2 * (y0 + r) * W, <int>((2 * (y0 + r)) % H * W)
        for c in range(2 * ow):
            upper, lower = top[c], top[W + c]
            index = top_index + c
            if lower > upper or (lower != lower and upper == upper):
                upper, index = lower, index + W
            column_max[r * 2 * ow + c], column_index[r * 2 * ow + c] = upper, index
    for k in range(rows * ow):  # each window's two columns: the right one where it beats the left or ties first
        left, right, index, other = column_max[2 * k], column_max[2 * k + 1], column_index[2 * k], column_index[2 * k + 1]
        if right > left or (right != right and left == left) or (right == left and other < index) or (
                right != right and left != left and other < index):
            left, index = right, other
        out[k], argmax[k] = left, index


cdef void _max_rows_2x2(const floating* plane, floating* out, int* argmax, int W, Py_ssize_t oh,
                        int ow, Py_ssize_t H) noexcept nogil:
    """_max_plane_2x2 row by row: one pass per output row over the four values of each window (see 5.)."""
    cdef Py_ssize_t y
    cdef int block, x, x0, n, corner, index, first, right = 1, below = W, below_right = W + 1  # ints: no long in the loop
    cdef const floating* top
    cdef floating best, value
    cdef floating bests[BLOCK]
    cdef int indices[BLOCK]
    for y in range(oh):
        top, first = plane + 2 * y * W, <int>((2 * y) % H * W)
        for block in range((ow + BLOCK - 1) // BLOCK):
            x0 = block * BLOCK
            n = min(BLOCK, ow - x0)
            for x in range(x0, x0 + n):  # locals, if, or and and (not bint's | and &): so GCC vectorises it
                corner = first + 2 * x
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
    """_max_plane_2x2 over `planes` planes (H, W) of x into out and argmax (planes, oh, ow); small planes of an even
    height _planes_per_item at a time, as one tall plane (see 5.)."""
    cdef Py_ssize_t item, first, per_item = _planes_per_item(oh * ow) if H % 2 == 0 else 1
    for item in prange((planes + per_item - 1) // per_item, schedule="guided", num_threads=n_threads):
        first = item * per_item
        _max_plane_2x2(x + first * H * W, out + first * oh * ow, argmax + first * oh * ow, W,
                       min(per_item, planes - first) * oh, ow, H)


cdef inline Py_ssize_t _planes_per_item(Py_ssize_t outputs) noexcept nogil:
    """Planes of `outputs` outputs a work item takes: BLOCK outputs' worth (small maps), else one (see 5.)."""
    return max(1, BLOCK // max(1, outputs))


cdef void _avg_pool_2x2(const floating* x, floating* out, Py_ssize_t planes, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t oh, Py_ssize_t ow, int n_threads) noexcept nogil:
    """Average pooling of `planes` planes (H, W) of x into out (planes, oh, ow), 2x2 windows at stride 2 without
    padding (see 9.): each window's ((top-left + bottom-left) + (top-right + bottom-right)) / 4, _avg_rows's sums."""
    cdef Py_ssize_t item, first, y, k, per_item = _planes_per_item(oh * ow) if H % 2 == 0 else 1
    cdef const floating* top
    cdef floating* row
    for item in prange((planes + per_item - 1) // per_item, schedule="guided", num_threads=n_threads):
        first = item * per_item
        for y in range(first * oh, min(first + per_item, planes) * oh):
            top, row = x + (y // oh * H + 2 * (y % oh)) * W, out + y * ow
            for k in range(ow):
                row[k] = ((top[2 * k] + top[W + 2 * k]) + (top[2 * k + 1] + top[W + 2 * k + 1])) / <floating>4


cdef void _avg_pool_2x2_backward(const floating* dout, floating* dx, Py_ssize_t planes, Py_ssize_t H,
                                 Py_ssize_t W, Py_ssize_t oh, Py_ssize_t ow, int n_threads) noexcept nogil:
    """dx (planes, H, W) = dout (planes, oh, ow) / 4 over each 2x2 window at stride 2 (see 9.), zero past the
    last window."""
    cdef Py_ssize_t item, first, h, k, per_item = _planes_per_item(oh * ow) if H % 2 == 0 else 1
    cdef const floating* grad
    cdef floating* row
    cdef floating value
    for item in prange((planes + per_item - 1) // per_item, schedule="guided", num_threads=n_threads):
        first = item * per_item
        for h in range(first * H, min(first + per_item, planes) * H):
            row = dx + h * W
            if h % H >= 2 * oh:
                memset(row, 0, W * sizeof(floating))
                continue
            grad = dout + (h // H * oh + h % H // 2) * ow
            for k in range(ow):
                value = grad[k] / <floating>4
                row[2 * k], row[2 * k + 1] = value, value
            for k in range(2 * ow, W):
                row[k] = 0


cdef void _avg_windows(const floating* plane, floating* out, Geometry g) noexcept nogil:
    """Average pooling of one plane by windows (see 3.)."""
    cdef Py_ssize_t y, x, h
    cdef Py_ssize_t rows[2]
    cdef Py_ssize_t cols[2]
    cdef floating total
    for y in range(g.oh):
        for x in range(g.ow):
            _window(g, y, x, rows, cols)
            if cols[0] == 0 and cols[1] == g.W:
                total = _add_run(plane + rows[0] * g.W, (rows[1] - rows[0]) * g.W, 0)
            else:
                total = 0
                for h in range(rows[0], rows[1]):
                    total = _add_run(plane + h * g.W + cols[0], cols[1] - cols[0], total)
            out[y * g.ow + x] = total / <floating>(g.kh * g.kw)


cdef void _avg_rows(const floating* plane, floating* out, Geometry g, const Py_ssize_t* spans) noexcept nogil:
    """Average pooling of one plane by rows (see 3. and 7.); spans as for _max_rows."""
    cdef Py_ssize_t y, x, i, j, t, start, top
    cdef floating* row
    cdef floating column_sums[ROW_BUFFER]
    for y in range(g.oh):
        row, top = out + y * g.ow, y * g.sh - g.ph
        for x in range(g.ow):
            row[x] = 0
        if g.W <= ROW_BUFFER:
            memset(column_sums, 0, g.W * sizeof(floating))
            for i in range(max(0, -top), min(g.kh, g.H - top)):
                for t in range(g.W):
                    column_sums[t] += plane[(top + i) * g.W + t]
            for j in range(g.kw):
                for x in range(spans[j], spans[g.kw + j]):
                    row[x] += column_sums[x * g.sw + j - g.pw]
        else:
            for i in range(max(0, -top), min(g.kh, g.H - top)):
                for j in range(g.kw):
                    start = (top + i) * g.W + j - g.pw
                    for x in range(spans[j], spans[g.kw + j]):
                        row[x] += plane[start + x * g.sw]
        for x in range(g.ow):
            row[x] = row[x] / <floating>(g.kh * g.kw)


cdef void _spread_row(const floating* row, floating* spread, Geometry g, const Py_ssize_t* spans) noexcept nogil:
    """spread[0..W) = for each input column, the sum of the outputs of row (OW) whose windows cover it."""
    cdef Py_ssize_t j, x
    memset(spread, 0, g.W * sizeof(floating))
    for j in range(g.kw):
        for x in range(spans[j], spans[g.kw + j]):
            spread[x * g.sw + j - g.pw] += row[x]


cdef void _avg_backward_tiles(const floating* dout, floating* plane, Geometry g) noexcept nogil:
    """One plane of average pooling's backward where the windows tile it (see 6.): one pass of writes."""
    cdef Py_ssize_t h, x, j, y
    cdef floating value
    cdef floating* row
    for h in range(g.H):
        row, y = plane + h * g.W, h // g.kh
        if y >= g.oh:
            memset(row, 0, g.W * sizeof(floating))
            continue
        for x in range(g.ow):
            value = dout[y * g.ow + x] / <floating>(g.kh * g.kw)
            for j in range(g.kw):
                row[x * g.kw + j] = value
        for x in range(g.ow * g.kw, g.W):
            row[x] = 0


cdef void _avg_backward_plane(const floating* dout, floating* plane, Geometry g, const Py_ssize_t* spans) noexcept nogil:
    """One plane of average pooling's backward (see 6.), by windows or by rows as the forward goes."""
    cdef Py_ssize_t y, x, i, j, h, t, start, top
    cdef Py_ssize_t rows[2]
    cdef Py_ssize_t cols[2]
    cdef const floating* row
    cdef floating value
    cdef floating spread[ROW_BUFFER]
    if g.sh == g.kh and g.sw == g.kw and g.ph == 0 and g.pw == 0:
        _avg_backward_tiles(dout, plane, g)
        return
    memset(plane, 0, g.H * g.W * sizeof(floating))
    for y in range(g.oh):
        row, top = dout + y * g.ow, y * g.sh - g.ph
        if _avg_by_windows(g):
            for x in range(g.ow):
                _window(g, y, x, rows, cols)
                value = row[x]
                for h in range(rows[0], rows[1]):
                    for t in range(h * g.W + cols[0], h * g.W + cols[1]):
                        plane[t] += value
        elif g.W <= ROW_BUFFER:
            _spread_row(row, spread, g, spans)
            for i in range(max(0, -top), min(g.kh, g.H - top)):
                for t in range(g.W):
                    plane[(top + i) * g.W + t] += spread[t]
        else:
            for i in range(max(0, -top), min(g.kh, g.H - top)):
                for j in range(g.kw):
                    start = (top + i) * g.W + j - g.pw
                    for x in range(spans[j], spans[g.kw + j]):
                        plane[start + x * g.sw] += row[x]
    for t in range(g.H * g.W):
        plane[t] = plane[t] / <floating>(g.kh * g.kw)


cdef Geometry _geometry(tuple x_shape, tuple out_shape, int kh, int kw, int sh, int sw, int ph, int pw) except *:
    """The windows over x_shape (N, C, H, W); ValueError unless out_shape is their (N, C, OH, OW)."""
    oh, ow = output_hw(x_shape, kh, kw, sh, sw, ph, pw)
    if x_shape[2] * x_shape[3] > 2**31 - 1:
        raise ValueError(f"planes of {x_shape[2]} x {x_shape[3]} are too large for int32 argmax indices")
    expected = x_shape[:2] + (oh, ow)
    if out_shape != expected:
        raise ValueError(f"pooled array must have shape {expected} for input {x_shape}, got {out_shape}")
    return Geometry(x_shape[2], x_shape[3], oh, ow, kh, kw, sh, sw, ph, pw)


cdef Py_ssize_t[::1] _spans(Geometry g):
    """[x0 for each column offset j] + [x1 for each j]: the outputs whose offset-j input is inside (see 3.)."""
    spans = np.empty(2 * g.kw, dtype=np.intp)
    for j in range(g.kw):
        spans[j] = first_inside(j - g.pw, g.sw, g.ow)
        spans[g.kw + j] = end_inside(j - g.pw, g.sw, g.W, spans[j], g.ow)
    return spans


def max_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, int[:, :, :, ::1] argmax,
                     int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Fill out and argmax (both N, C, OH, OW) with each window's maximum and its flat index."""
    cdef Geometry g = _geometry(tuple(x.shape)[:4], tuple(out.shape)[:4], kh, kw, sh, sw, ph, pw)
    if tuple(argmax.shape)[:4] != tuple(out.shape)[:4]:
        raise ValueError(f"argmax must have shape {tuple(out.shape)[:4]}, got {tuple(argmax.shape)[:4]}")
    cdef Py_ssize_t C = x.shape[1], q
    cdef Py_ssize_t[::1] spans = _spans(g)
    if kh == kw == sh == sw == 2 and ph == pw == 0 and x.shape[0] * C:
        _max_pool_2x2(&x[0, 0, 0, 0], &out[0, 0, 0, 0], &argmax[0, 0, 0, 0], x.shape[0] * C, g.H, <int>g.W, g.oh,
                      <int>g.ow, n_threads)
        return
    for q in prange(x.shape[0] * C, nogil=True, schedule="guided", num_threads=n_threads):
        if _max_by_windows(g):
            _max_windows(&x[q // C, q % C, 0, 0], &out[q // C, q % C, 0, 0], &argmax[q // C, q % C, 0, 0], g)
        else:
            _max_rows(&x[q // C, q % C, 0, 0], &out[q // C, q % C, 0, 0], &argmax[q // C, q % C, 0, 0], g,
                      &spans[0])


def max_pool_backward(const floating[:, :, :, ::1] dout, const int[:, :, :, ::1] argmax,
                      floating[:, :, :, ::1] dx, int n_threads):
    """Overwrite dx (N, C, H, W) with dout (N, C, OH, OW) scattered to the argmax indices."""
    if tuple(dout.shape)[:4] != tuple(argmax.shape)[:4] or tuple(dx.shape)[:2] != tuple(dout.shape)[:2]:
        raise ValueError(f"dout {tuple(dout.shape)[:4]}, argmax {tuple(argmax.shape)[:4]} and "
                         f"dx {tuple(dx.shape)[:4]} must agree on (N, C) and on (OH, OW)")
    cdef Py_ssize_t planes = dx.shape[0] * dx.shape[1], size = dx.shape[2] * dx.shape[3]
    cdef Py_ssize_t outs = dout.shape[2] * dout.shape[3], per_item = _planes_per_item(outs), item, first, count, q, o
    cdef Py_ssize_t index
    cdef floating* plane
    cdef const floating* grad
    cdef const int* where
    if planes * size == 0:
        return
    for item in prange((planes + per_item - 1) // per_item, nogil=True, schedule="guided", num_threads=n_threads):
        first = item * per_item
        count = min(per_item, planes - first)
        memset(&dx[0, 0, 0, 0] + first * size, 0, count * size * sizeof(floating))
        for q in range(first, first + count):
            plane, grad, where = &dx[0, 0, 0, 0] + q * size, &dout[0, 0, 0, 0] + q * outs, &argmax[0, 0, 0, 0] + q * outs
            for o in range(outs):
                index = where[o]
                if 0 <= index < size:
                    plane[index] += grad[o]


def avg_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                     int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Fill out (N, C, OH, OW) with the sum of each zero-padded window divided by KH*KW."""
    cdef Geometry g = _geometry(tuple(x.shape)[:4], tuple(out.shape)[:4], kh, kw, sh, sw, ph, pw)
    cdef Py_ssize_t C = x.shape[1], q, size = g.H * g.W
    cdef Py_ssize_t[::1] spans = _spans(g)
    if _global(g) and x.shape[0] * C:
        for q in prange(x.shape[0] * C, nogil=True, schedule="static", num_threads=n_threads):
            (&out[0, 0, 0, 0])[q] = _add_run(&x[0, 0, 0, 0] + q * size, size, 0) / <floating>(kh * kw)
        return
    if kh == kw == sh == sw == 2 and ph == pw == 0 and x.shape[0] * C:
        _avg_pool_2x2(&x[0, 0, 0, 0], &out[0, 0, 0, 0], x.shape[0] * C, g.H, g.W, g.oh, g.ow, n_threads)
        return
    for q in prange(x.shape[0] * C, nogil=True, schedule="guided", num_threads=n_threads):
        if _avg_by_windows(g):
            _avg_windows(&x[q // C, q % C, 0, 0], &out[q // C, q % C, 0, 0], g)
        else:
            _avg_rows(&x[q // C, q % C, 0, 0], &out[q // C, q % C, 0, 0], g, &spans[0])


def avg_pool_backward(const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx,
                      int kh, int kw, int sh, int sw, int ph, int pw, int n_threads):
    """Overwrite dx (N, C, H, W) with each dout (N, C, OH, OW) entry / (KH*KW) spread over its window."""
    cdef Geometry g = _geometry(tuple(dx.shape)[:4], tuple(dout.shape)[:4], kh, kw, sh, sw, ph, pw)
    cdef Py_ssize_t C = dx.shape[1], q, t, size = g.H * g.W
    cdef Py_ssize_t[::1] spans = _spans(g)
    cdef floating value
    if _global(g) and dx.shape[0] * C:
        for q in prange(dx.shape[0] * C, nogil=True, schedule="static", num_threads=n_threads):
            value = (&dout[0, 0, 0, 0])[q] / <floating>(kh * kw)
            for t in range(q * size, q * size + size):
                (&dx[0, 0, 0, 0])[t] = value
        return
    if kh == kw == sh == sw == 2 and ph == pw == 0 and dx.shape[0] * C:
        _avg_pool_2x2_backward(&dout[0, 0, 0, 0], &dx[0, 0, 0, 0], dx.shape[0] * C, g.H, g.W, g.oh, g.ow, n_threads)
        return
    for q in prange(dx.shape[0] * C, nogil=True, schedule="guided", num_threads=n_threads):
        _avg_backward_plane(&dout[q // C, q % C, 0, 0], &dx[q // C, q % C, 0, 0], g, &spans[0])
