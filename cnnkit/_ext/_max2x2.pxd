# Maxima of 2x2 windows at stride 2 without padding, inline and GIL-free: the inference plan's
# pooling (inference.pyx) and the pooling fused into a convolution's output pass (conv.pyx).
#
# Per output row, a first loop takes the larger of each vertical pair of inputs (two input
# rows, contiguous), a second the larger of each horizontal pair of those, BLOCK outputs at a
# time through an array on the stack: both loops are branch-free selects that GCC vectorises
# (two compares and a blend: b > a ? b : a keeps a where either is NaN, the outer select keeps
# a NaN b). The larger is the later value where it is greater or NaN, else the first:
# every window's maximum, NaN when it holds one, as max_pool2d_forward gives (which of two
# equal zeros or two NaNs comes out may differ).
from cython cimport floating


cdef enum:
    BLOCK = 256  # outputs of a row taken at a time through the stack


cdef inline void max_plane_2x2(const floating* plane, floating* out, Py_ssize_t W, Py_ssize_t oh,
                               Py_ssize_t ow) noexcept nogil:
    """out (oh, ow) = the maxima of the 2x2 windows at stride 2 of plane (H >= 2*oh, W >= 2*ow), rows W apart."""
    cdef Py_ssize_t y, x, x0, n, block
    cdef const floating* top
    cdef const floating* bottom
    cdef floating* row
    cdef floating a, b
    cdef floating columns[2 * BLOCK]
    for y in range(oh):
        top, row = plane + 2 * y * W, out + y * ow
        bottom = top + W
        for block in range((ow + BLOCK - 1) // BLOCK):
            x0 = block * BLOCK
            n = min(BLOCK, ow - x0)
            for x in range(2 * n):
                a, b = top[2 * x0 + x], bottom[2 * x0 + x]
                columns[x] = b if b != b else (b if b > a else a)
            for x in range(n):
                a, b = columns[2 * x], columns[2 * x + 1]
                row[x0 + x] = b if b != b else (b if b > a else a)
