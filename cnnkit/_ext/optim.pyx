# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Adam step in one pass: m, v updated in place and the next weights written.

Design:
1. The reference's numpy expression, operation for operation in the arrays' dtype (the
   hyperparameters rounded to it as numpy rounds Python floats): one read of w, dw, m and
   v and one write of m, v and the next weights instead of a dozen numpy passes and
   temporaries.
2. Flat arrays, one contiguous chunk per thread; elementwise, so any thread count gives
   the same bits.
3. Built with -fno-math-errno (setup.py) and the hyperparameters passed by value, so GCC
   vectorises the loop: 0.69 -> 0.23 ms for 200,704 float32 weights on one thread (numpy: 1.5).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from cnnkit._ext._flat cimport chunk_start, expect_sizes


cdef inline floating _sqrt(floating x) noexcept nogil:
    return sqrtf(x) if floating is float else sqrt(x)


cdef void _adam(const floating* w, const floating* dw, floating* m, floating* v, floating* out, Py_ssize_t n,
                floating b1, floating c1, floating b2, floating c2, floating k1, floating k2, floating lr,
                floating eps) noexcept nogil:
    """b1, c1 = beta1, 1 - beta1; b2, c2 = beta2, 1 - beta2; k1, k2 = 1 - beta1**t, 1 - beta2**t.

    The hyperparameters come by value: read through a pointer that m and v might alias for
    all GCC knows, they were reloaded each element and kept the loop scalar.
    """
    cdef floating mi, vi
    cdef Py_ssize_t i
    for i in range(n):
        mi = b1 * m[i] + c1 * dw[i]
        vi = b2 * v[i] + c2 * dw[i] * dw[i]
        m[i], v[i] = mi, vi
        out[i] = w[i] - lr * (mi / k1) / (_sqrt(vi / k2) + eps)


def adam_update(const floating[::1] w, const floating[::1] dw, floating[::1] m, floating[::1] v,
                floating[::1] out, int t, double learning_rate, double beta1, double beta2, double epsilon,
                int n_threads):
    """out = the next w after step t (>= 1); m and v updated in place; all flat and of one size."""
    cdef Py_ssize_t size = w.shape[0], start
    cdef int chunk
    expect_sizes(size, (dw.shape[0], m.shape[0], v.shape[0], out.shape[0]))
    cdef floating b1 = beta1, c1 = 1 - beta1, b2 = beta2, c2 = 1 - beta2, lr = learning_rate, eps = epsilon
    cdef floating k1 = 1 - beta1 ** t, k2 = 1 - beta2 ** t
    for chunk in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk_start(size, n_threads, chunk)
        _adam(&w[0] + start, &dw[0] + start, &m[0] + start, &v[0] + start, &out[0] + start,
              chunk_start(size, n_threads, chunk + 1) - start, b1, c1, b2, c2, k1, k2, lr, eps)
