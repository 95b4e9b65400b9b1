# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Affine (fully connected) forward and backward: BLAS without the GIL, rows split over threads.

Notation: x (N, D), w (D, M), out and dout (N, M), all C-contiguous.

Design:
1. One parallel region of T threads per call. Thread t takes a contiguous block of rows
   and calls the single-threaded BLAS GEMM (cnnkit/_ext/_blas.pxd) on it without the GIL;
   the caller keeps BLAS's own pool at one thread meanwhile, so only our threads run.
2. Forward: out rows start as the bias and GEMM adds x @ w (beta = 1): no second pass. With
   fewer rows than threads (a batch of one), thread t takes a block of columns instead. With
   relu (the inference plan's Linear + ReLU), each thread takes the ReLU of its block after.
3. Backward: dx = dout @ w.T splits the N rows; dw = x.T @ dout splits the D rows of dw,
   each block a whole product over N, so no thread sums another's partial result and
   dw is the same bit for bit for a given thread count. db, the column sums of dout, is
   summed down each column in row order (in double), the columns split over the threads.
4. Empty sizes (N, D or M of 0) never reach BLAS: a product over an empty range is zeros.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from cnnkit._ext._blas cimport gemm
from cnnkit._ext._flat cimport chunk_start


cdef void _product(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                   const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb, floating beta,
                   floating* c, Py_ssize_t ldc) noexcept nogil:
    """c (m, n), row stride ldc, = op(a) @ op(b) + beta * c; zeros (or c kept when beta = 1) if k = 0."""
    cdef Py_ssize_t i
    if m == 0 or n == 0:
        return
    if k > 0:
        gemm(trans_a, trans_b, <int>m, <int>n, <int>k, <floating>1, a, <int>lda, b, <int>ldb, beta, c, <int>ldc)
    elif beta == 0:
        for i in range(m):
            memset(c + i * ldc, 0, n * sizeof(floating))


cdef void _column_sums(const floating* a, floating* sums, Py_ssize_t rows, Py_ssize_t cols,
                       Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """sums[c] = sum of a[:, c] (a is (rows, cols)) in row order, for c in [c0, c1)."""
    cdef Py_ssize_t r, c
    cdef double total
    for c in range(c0, c1):
        total = 0
        for r in range(rows):
            total += a[r * cols + c]
        sums[c] = <floating>total


cdef inline void _relu(floating* a, Py_ssize_t count) noexcept nogil:
    """a[i] = 0 where a[i] < 0, for i < count, NaN and -0.0 kept: the ReLU of cnnkit/_ext/activations.pyx."""
    cdef Py_ssize_t i
    for i in range(count):  # a store on every entry: GCC vectorises it (a conditional store would branch)
        a[i] = 0 if a[i] < 0 else a[i]


cdef _expect(str name, tuple shape, tuple expected):
    if shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {shape}")


def affine_forward(const floating[:, ::1] x, const floating[:, ::1] w, const floating[::1] b,
                   floating[:, ::1] out, int n_threads, bint relu=False):
    """out (N, M) = x (N, D) @ w (D, M) + b (M,), or its ReLU with relu."""
    cdef Py_ssize_t N = x.shape[0], D = x.shape[1], M = w.shape[1], n, r0, r1, m0, m1
    _expect("w", (w.shape[0], M), (D, M))
    _expect("b", (b.shape[0],), (M,))
    _expect("out", (out.shape[0], out.shape[1]), (N, M))
    cdef int t
    cdef bint by_columns = N < n_threads
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        r0, r1, m0, m1 = chunk_start(N, n_threads, t), chunk_start(N, n_threads, t + 1), 0, M
        if by_columns:
            r0, r1, m0, m1 = 0, N, chunk_start(M, n_threads, t), chunk_start(M, n_threads, t + 1)
        for n in range(r0, r1):
            memcpy(&out[0, 0] + n * M + m0, &b[0] + m0, (m1 - m0) * sizeof(floating))
        _product(False, False, r1 - r0, m1 - m0, D, &x[0, 0] + r0 * D, D, &w[0, 0] + m0, M, 1,
                 &out[0, 0] + r0 * M + m0, M)
        if relu:
            for n in range(r0, r1):
                _relu(&out[0, 0] + n * M + m0, m1 - m0)


def affine_backward(const floating[:, ::1] dout, const floating[:, ::1] x, const floating[:, ::1] w,
                    floating[:, ::1] dx, floating[:, ::1] dw, floating[::1] db, int n_threads):
    """Overwrite dx (N, D) = dout @ w.T (unless None: not computed), dw (D, M) = x.T @ dout and db (M,) =
    dout summed over N."""
    cdef Py_ssize_t N = x.shape[0], D = x.shape[1], M = w.shape[1], r0, r1, d0, d1
    _expect("w", (w.shape[0], M), (D, M))
    for name, shape, expected in [("dout", (dout.shape[0], dout.shape[1]), (N, M)),
                                  ("dw", (dw.shape[0], dw.shape[1]), (D, M)), ("db", (db.shape[0],), (M,))]:
        _expect(name, shape, expected)
    if dx is not None:
        _expect("dx", (dx.shape[0], dx.shape[1]), (N, D))
    cdef bint input_grad = dx is not None
    cdef int t
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        r0, r1 = chunk_start(N, n_threads, t), chunk_start(N, n_threads, t + 1)
        if input_grad:
            _product(False, True, r1 - r0, D, M, &dout[0, 0] + r0 * M, M, &w[0, 0], M, 0, &dx[0, 0] + r0 * D, D)
        d0, d1 = chunk_start(D, n_threads, t), chunk_start(D, n_threads, t + 1)
        _product(True, False, d1 - d0, M, N, &x[0, 0] + d0, D, &dout[0, 0], M, 0, &dw[0, 0] + d0 * M, M)
        _column_sums(&dout[0, 0], &db[0], N, M, chunk_start(M, n_threads, t), chunk_start(M, n_threads, t + 1))
