# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Forward-only kernels of the inference plan (cnnkit/fast/inference.py): no record for a backward.

Max pooling over 2x2 windows at stride 2 without padding, the pooling of most CNNs, keeps
no argmax (cnnkit/_ext/_max2x2.pxd: vectorised selects, every window's maximum, NaN when it
holds one, as max_pool2d_forward gives; which of two equal zeros or two NaNs comes out may
differ). Small planes of an even height go BLOCK outputs' worth at a time as one tall plane
(their row pairs never straddle two planes), as in pool.pyx.
"""
from cython cimport floating
from cython.parallel cimport prange

from cnnkit._ext._max2x2 cimport BLOCK, max_plane_2x2


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
    cdef Py_ssize_t per_item = max(1, BLOCK // (oh * ow)) if H % 2 == 0 else 1, first
    for q in prange((planes + per_item - 1) // per_item, nogil=True, schedule="static", num_threads=n_threads):
        first = q * per_item
        max_plane_2x2(&x[0, 0, 0, 0] + first * H * W, &out[0, 0, 0, 0] + first * oh * ow, W,
                      min(per_item, planes - first) * oh, ow, False)
