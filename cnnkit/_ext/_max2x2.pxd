# Maxima of 2x2 windows at stride 2 without padding, inline and GIL-free: the inference plan's
# pooling (inference.pyx) and the pooling fused into a convolution's output pass (conv.pyx,
# direct_avx512.pyx), with the ReLU of the maxima taken in the same pass where asked.
#
# A first loop takes the larger of each vertical pair of inputs (two input rows, contiguous),
# a second the larger of each horizontal pair of those, BLOCK outputs at a time through an
# array on the stack: both loops are branch-free selects that GCC vectorises (two compares and
# a blend: b > a ? b : a keeps a where either is NaN, the outer select keeps a NaN b). Rows of
# at most BLOCK / 2 outputs go by segments of whole output rows, the second loop over all of a
# segment's outputs at once (however short the rows: 0.6 times the time on rows of 14);
# longer rows block by block. The larger is the later value where it is greater or NaN, else the first:
# every window's maximum, NaN when it holds one, as max_pool2d_forward gives (which of two
# equal zeros or two NaNs comes out may differ).
from cython cimport floating


cdef enum:
    BLOCK = 256  # outputs of a row taken at a time through the stack


cdef inline floating _larger(floating a, floating b) noexcept nogil:
    """b where it is greater than a or NaN, else a."""
    return b if b != b else (b if b > a else a)


cdef inline floating _kept(floating value, bint relu) noexcept nogil:
    """value, or with relu its ReLU: 0 where value < 0 (a NaN kept)."""
    return 0 if relu and value < 0 else value


cdef inline void max_plane_2x2(const floating* plane, floating* out, Py_ssize_t W, Py_ssize_t oh,
                               Py_ssize_t ow, bint relu) noexcept nogil:
    """out (oh, ow) = the maxima of the 2x2 windows at stride 2 of plane (H >= 2*oh, W >= 2*ow), rows W apart,
    or with relu their ReLU (the maximum of the window's ReLUs)."""
    cdef Py_ssize_t y, x, x0, n, block, rows, r, segment
    cdef const floating* top
    cdef floating* row
    cdef floating columns[2 * BLOCK]
    if 2 * ow <= BLOCK:
        rows = BLOCK // ow
        for segment in range((oh + rows - 1) // rows):
            y = segment * rows
            n = min(rows, oh - y)
            for r in range(n):
                top = plane + 2 * (y + r) * W
                for x in range(2 * ow):
                    columns[r * 2 * ow + x] = _larger(top[x], top[W + x])
            row = out + y * ow
            for x in range(n * ow):
                row[x] = _kept(_larger(columns[2 * x], columns[2 * x + 1]), relu)
        return
    for y in range(oh):
        top, row = plane + 2 * y * W, out + y * ow
        for block in range((ow + BLOCK - 1) // BLOCK):
            x0 = block * BLOCK
            n = min(BLOCK, ow - x0)
            for x in range(2 * n):
                columns[x] = _larger(top[2 * x0 + x], top[W + 2 * x0 + x])
            for x in range(n):
                row[x0 + x] = _kept(_larger(columns[2 * x], columns[2 * x + 1]), relu)
