# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Elementwise activations and their gradients over flat arrays, parallel, GIL released.

Design:
1. Arrays are seen flat (the caller passes C-contiguous 1-D views); each of the T threads
   takes one contiguous chunk, so a chunk's loop is a plain loop the compiler vectorises.
2. One forward and one backward kernel take the activation as a code (RELU, ...); the
   branch is taken once per chunk, outside the element loop.
3. Each formula is the reference's, operation for operation, in the input's precision
   (float32 stays float32): np.maximum's NaN and -0.0 handling for ReLU, the overflow-free
   two-sided sigmoid, expm1 for ELU.
4. exp, expm1 and tanh come from numpy's SIMD loops (AVX-512/AVX2), 20 to 100 times faster
   than libm's scalar calls, which the compiler cannot vectorise: the caller fills out with
   e = exp(-|x|) for the sigmoid and e = expm1(min(x, 0)) for ELU, and the forward kernel
   finishes from there (tanh needs no kernel). The results are the reference's bits.
5. Both sides of every select are loaded or computed first (`other`): with the flags of
   cnnkit/_ext/_flat.pxd each loop then becomes branch-free vector code (the compiler
   will not move a load or an operation out of a branch that might skip it).
6. Backward reads what the forward saved: the output for ReLU (x > 0 exactly where
   out > 0), sigmoid and tanh; the input for leaky ReLU (the slope may be negative); both
   for ELU.
"""
from cython cimport floating
from cython.parallel cimport prange

from cnnkit._ext._flat cimport chunk_start


cpdef enum Activation:
    RELU
    LEAKY_RELU
    SIGMOID
    TANH
    ELU


cdef void _forward_chunk(int kind, const floating* x, floating* out, Py_ssize_t n, floating param) noexcept nogil:
    """out[:n] = activation(x[:n]), out holding e on entry for SIGMOID and ELU (design 4);
    param is the leaky slope or ELU's alpha."""
    cdef Py_ssize_t i
    cdef floating other
    if kind == RELU:
        for i in range(n):
            out[i] = 0 if x[i] < 0 else x[i]
    elif kind == LEAKY_RELU:
        for i in range(n):
            other = param * x[i]
            out[i] = x[i] if x[i] > 0 else other
    elif kind == SIGMOID:
        for i in range(n):
            other = out[i] / (1 + out[i])
            out[i] = 1 / (1 + out[i]) if x[i] >= 0 else other
    else:
        for i in range(n):
            other = param * out[i]
            out[i] = x[i] if x[i] > 0 else other


cdef void _backward_chunk(int kind, const floating* dout, const floating* x, const floating* out, floating* dx,
                          Py_ssize_t n, floating param) noexcept nogil:
    """dx[:n] = dout times the activation's derivative, from the saved x and out."""
    cdef Py_ssize_t i
    cdef floating other
    if kind == RELU:
        for i in range(n):
            other = dout[i]
            dx[i] = other if out[i] > 0 else 0
    elif kind == LEAKY_RELU:
        for i in range(n):
            other = param * dout[i]
            dx[i] = dout[i] if x[i] > 0 else other
    elif kind == SIGMOID:
        for i in range(n):
            dx[i] = dout[i] * out[i] * (1 - out[i])
    elif kind == TANH:
        for i in range(n):
            dx[i] = dout[i] * (1 - out[i] * out[i])
    else:
        for i in range(n):
            other = dout[i] * (out[i] + param)
            dx[i] = dout[i] if x[i] > 0 else other


def activation_forward(int kind, const floating[::1] x, floating[::1] out, double param, int n_threads):
    """out = activation `kind` (not TANH) of x, both flat and of one size, out holding e on entry
    for SIGMOID and ELU (design 4); param is cast to the arrays' dtype."""
    if out.shape[0] != x.shape[0] or n_threads < 1:
        raise ValueError(f"out must match x ({x.shape[0]} elements) and n_threads be >= 1")
    cdef Py_ssize_t size = x.shape[0], start
    cdef int t
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk_start(size, n_threads, t)
        _forward_chunk(kind, &x[0] + start, &out[0] + start, chunk_start(size, n_threads, t + 1) - start,
                       <floating>param)


def activation_backward(int kind, const floating[::1] dout, const floating[::1] x, const floating[::1] out,
                        floating[::1] dx, double param, int n_threads):
    """dx = dout times the derivative of activation `kind`, from the forward's x and out (all flat)."""
    cdef Py_ssize_t size = dout.shape[0]
    if x.shape[0] != size or out.shape[0] != size or dx.shape[0] != size or n_threads < 1:
        raise ValueError(f"dout, x, out and dx must have {size} elements each and n_threads be >= 1")
    cdef Py_ssize_t start
    cdef int t
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk_start(size, n_threads, t)
        _backward_chunk(kind, &dout[0] + start, &x[0] + start, &out[0] + start, &dx[0] + start,
                        chunk_start(size, n_threads, t + 1) - start, <floating>param)
