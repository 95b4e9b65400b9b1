# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Adam step in one pass: m, v updated in place and the next weights written.

Design:
1. The reference's numpy expression, operation for operation in the arrays' dtype (the
   hyperparameters rounded to it as numpy rounds Python floats): one read of w, dw, m and
   v and one write of m, v and the next weights instead of a dozen numpy passes and
   temporaries.
2. Flat arrays, one contiguous chunk per thread; elementwise, so any thread count gives
   the same bits.
3. Built with -fno-math-errno (setup.py) and the hyperparameters in locals, so GCC
   vectorises the loop: 0.69 -> 0.23 ms for 200,704 float32 weights on one thread (numpy: 1.5).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from cnnkit._ext._flat cimport chunk_start, expect_sizes


cdef inline floating _sqrt(floating x) noexcept nogil:
    return sqrtf(x) if floating is float else sqrt(x)


cdef void _adam(const floating* w, const floating* dw, floating* m, floating* v, floating* out,
                const floating* h, Py_ssize_t n) noexcept nogil:
    """h: beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1**t, 1 - beta2**t, learning_rate, epsilon.

    They are read into locals first: m and v might alias h for all GCC knows, and a reload
    of h each element keeps the loop scalar.
    """
    cdef floating b1 = h[0], c1 = h[1], b2 = h[2], c2 = h[3], k1 = h[4], k2 = h[5], lr = h[6], eps = h[7]
    cdef floating mi, vi
    cdef Py_ssize_t i
    for i in range(n):
        mi = b1 * m[i] + c1 * dw[i]
        vi = b2 * v[i] + c2 * dw[i] * dw[i]
        m[i], v[i] = mi, vi
        out[i] = w[i] - lr * (mi / k1) / (_sqrt(vi / k2) + eps)


def adam_update(const floating[::1] w, const floating[::1] dw, floating[::1] m, floating[::1] v,
                floating[::1] out, tuple hyper, int n_threads):
    """out = the next w; m and v updated in place; all flat and of one size.

    hyper: (beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1**t, 1 - beta2**t, learning_rate, epsilon).
    """
    cdef Py_ssize_t size = w.shape[0], start, i
    cdef floating h[8]
    cdef int t
    expect_sizes(size, (dw.shape[0], m.shape[0], v.shape[0], out.shape[0]))
    if len(hyper) != 8:
        raise ValueError(f"hyper must hold 8 numbers, got {len(hyper)}")
    for i in range(8):
        h[i] = <floating>hyper[i]
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk_start(size, n_threads, t)
        _adam(&w[0] + start, &dw[0] + start, &m[0] + start, &v[0] + start, &out[0] + start, h,
              chunk_start(size, n_threads, t + 1) - start)
