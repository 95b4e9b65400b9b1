# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Forward-only kernels of the inference plan (cnnkit/fast/inference.py): no record for a backward.

Max pooling over 2x2 windows at stride 2 without padding, the pooling of most CNNs, keeps
no argmax. Per output row, a first loop takes the larger of each vertical pair of inputs
(two input rows, contiguous), a second the larger of each horizontal pair of those, BLOCK
outputs at a time through an array on the stack: both loops are branch-free selects that
GCC vectorises. The larger is the later value where it is greater, or NaN where the first
is not: every window's maximum, NaN when it holds one, as max_pool2d_forward gives (which
of two equal zeros or two NaNs comes out may differ).
"""
from cython cimport floating
from cython.parallel cimport prange


cdef enum:
    BLOCK = 256  # outputs of a row taken at a time through the stack


cdef void _max_plane_2x2(const floating* plane, floating* out, Py_ssize_t W, Py_ssize_t oh,
                         Py_ssize_t ow) noexcept nogil:
    """out (oh, ow) = the maxima of the 2x2 windows at stride 2 of plane (H, W)."""
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
                columns[x] = b if b > a or (b != b and a == a) else a
            for x in range(n):
                a, b = columns[2 * x], columns[2 * x + 1]
                row[x0 + x] = b if b > a or (b != b and a == a) else a


def max_pool_2x2(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, int n_threads):
    """out (N, C, H // 2, W // 2) = max_pool2d_forward(x, 2)'s output for x (N, C, H, W), planes over n_threads."""
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], H = x.shape[2], W = x.shape[3], q
    cdef Py_ssize_t oh = H // 2, ow = W // 2
    expected = (x.shape[0], x.shape[1], oh, ow)
    if tuple(out.shape)[:4] != expected or n_threads < 1:
        raise ValueError(f"out must have shape {expected} for x {tuple(x.shape)[:4]} and n_threads be >= 1, "
                         f"got {tuple(out.shape)[:4]} and {n_threads}")
    if planes * oh * ow == 0:
        return
    for q in prange(planes, nogil=True, schedule="static", num_threads=n_threads):
        _max_plane_2x2(&x[0, 0, 0, 0] + q * H * W, &out[0, 0, 0, 0] + q * oh * ow, W, oh, ow)
