# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Inverted dropout after the draw: keep mask and masked input, and the masked gradient.

Design:
1. The uniform draws come from numpy (the caller's Generator), exactly as the reference
   takes them, so a seed gives the reference's mask; everything after the draw is here.
2. A unit is kept where its draw is >= p; the mask is stored as bytes (1 kept, 0 dropped)
   and applied as x * (keep ? value : 0), value = 1 / (1 - p) > 0 in the input's dtype:
   the reference's x * mask, operation for operation (a NaN or inf times 0 stays NaN).
3. Flat arrays, one contiguous chunk per thread.
"""
from cython cimport floating
from cython.parallel cimport prange

from cnnkit._ext._flat cimport chunk_start, expect_sizes


cdef void _keep_and_mask(const double* draws, double p, const floating* x, unsigned char* keep, floating* out,
                         floating value, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating scale
    for i in range(n):
        scale = value if draws[i] >= p else 0
        keep[i] = scale != 0
        out[i] = x[i] * scale


cdef void _mask(const floating* x, const unsigned char* keep, floating* out, floating value,
                Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = x[i] * (value if keep[i] else 0)


def dropout_forward(const double[::1] draws, double p, const floating[::1] x, unsigned char[::1] keep,
                    floating[::1] out, double value, int n_threads):
    """keep = draws >= p and out = x * (keep ? value : 0), all flat and of one size."""
    cdef Py_ssize_t size = x.shape[0], start
    cdef int t
    expect_sizes(size, (draws.shape[0], keep.shape[0], out.shape[0]))
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk_start(size, n_threads, t)
        _keep_and_mask(&draws[0] + start, p, &x[0] + start, &keep[0] + start, &out[0] + start, <floating>value,
                       chunk_start(size, n_threads, t + 1) - start)


def dropout_backward(const floating[::1] dout, const unsigned char[::1] keep, floating[::1] dx, double value,
                     int n_threads):
    """dx = dout * (keep ? value : 0), all flat and of one size."""
    cdef Py_ssize_t size = dout.shape[0], start
    cdef int t
    expect_sizes(size, (keep.shape[0], dx.shape[0], size))
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk_start(size, n_threads, t)
        _mask(&dout[0] + start, &keep[0] + start, &dx[0] + start, <floating>value,
              chunk_start(size, n_threads, t + 1) - start)

