# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Batch normalisation passes over x seen as (N, C, S): S = 1 for (N, D) input, H*W for NCHW.

Design:
1. Statistics and gradient sums are per channel over N and S. Each thread owns a
   contiguous block of channels and sweeps them image by image, in double: each plane's
   sum is taken in LANES interleaved partial sums (independent additions that pipeline
   and vectorise, where one running sum waits on each addition's latency) added up in a
   fixed order, then added to the channel's total in the order n. Every sum is the same
   bit for bit whatever the thread count, and the rows stay contiguous for S = 1 too.
2. The elementwise passes (normalise, input gradient) take (image, channel) planes in
   parallel, each plane with its channel's constants, in the reference's operation order:
   x_hat = (x - mean) * inv_std, out = gamma * x_hat + beta, and in training
   dx = ((dout * gamma - a) - x_hat * b) * inv_std with a = mean(dout * gamma) and
   b = mean(dout * gamma * x_hat) per channel; in test mode dx = dout * gamma * inv_std.
3. The per-channel vectors (means, inv_std, a, b, running statistics) are a few numbers
   each, computed by the caller with numpy in the input's dtype, as the reference does.
"""
from cython cimport floating
from cython.parallel cimport prange

from cnnkit._ext._flat cimport chunk_start


cdef enum:
    LANES = 8  # partial sums per plane (the loops below spell it out as 8: Cython needs a literal there)


cdef inline double _total(double* acc) noexcept nogil:
    """acc[0] + ... + acc[LANES - 1], added pairwise in a fixed order."""
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline double _sum(const floating* x, Py_ssize_t S) noexcept nogil:
    """x[0] + ... + x[S - 1] in double, in LANES partial sums."""
    cdef double acc[LANES]
    cdef Py_ssize_t s, k, body = S - S % LANES
    for k in range(8):
        acc[k] = 0
    for s in range(0, body, 8):
        for k in range(8):
            acc[k] += x[s + k]
    for s in range(body, S):
        acc[s - body] += x[s]
    return _total(acc)


cdef inline double _squared_deviations(const floating* x, Py_ssize_t S, double mean) noexcept nogil:
    """Sum of (x[s] - mean)**2 over s < S in double, in LANES partial sums."""
    cdef double acc[LANES]
    cdef double d
    cdef Py_ssize_t s, k, body = S - S % LANES
    for k in range(8):
        acc[k] = 0
    for s in range(0, body, 8):
        for k in range(8):
            d = x[s + k] - mean
            acc[k] += d * d
    for s in range(body, S):
        d = x[s] - mean
        acc[s - body] += d * d
    return _total(acc)


cdef inline double _dot(const floating* x, const floating* y, Py_ssize_t S) noexcept nogil:
    """Sum of x[s] * y[s] over s < S in double, in LANES partial sums."""
    cdef double acc[LANES]
    cdef Py_ssize_t s, k, body = S - S % LANES
    for k in range(8):
        acc[k] = 0
    for s in range(0, body, 8):
        for k in range(8):
            acc[k] += <double>x[s + k] * y[s + k]
    for s in range(body, S):
        acc[s - body] += <double>x[s] * y[s]
    return _total(acc)


cdef void _moments(const floating* x, double* mean, double* var, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                   Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """mean and (biased) var of channels [c0, c1), the variance about the mean in a second sweep."""
    cdef Py_ssize_t n, c
    for c in range(c0, c1):
        mean[c] = var[c] = 0
    for n in range(N):
        for c in range(c0, c1):
            mean[c] += _sum(x + (n * C + c) * S, S)
    for c in range(c0, c1):
        mean[c] /= N * S
    for n in range(N):
        for c in range(c0, c1):
            var[c] += _squared_deviations(x + (n * C + c) * S, S, mean[c])
    for c in range(c0, c1):
        var[c] /= N * S


cdef void _gradient_sums(const floating* dout, const floating* x_hat, double* dbeta, double* dgamma,
                         Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """dbeta[c] = sum of dout and dgamma[c] = sum of dout * x_hat over channel c, for c in [c0, c1)."""
    cdef Py_ssize_t n, c, start
    for c in range(c0, c1):
        dbeta[c] = dgamma[c] = 0
    for n in range(N):
        for c in range(c0, c1):
            start = (n * C + c) * S
            dbeta[c] += _sum(dout + start, S)
            dgamma[c] += _dot(dout + start, x_hat + start, S)


def channel_moments(const floating[:, :, ::1] x, double[::1] mean, double[::1] var, int n_threads):
    """Fill mean and var (C,) with the batch mean and biased variance of each channel of x (N, C, S)."""
    _expect(x, (mean.shape[0], var.shape[0]))
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2]
    cdef int t
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        _moments(&x[0, 0, 0], &mean[0], &var[0], N, C, S, chunk_start(C, n_threads, t),
                 chunk_start(C, n_threads, t + 1))


def gradient_sums(const floating[:, :, ::1] dout, const floating[:, :, ::1] x_hat, double[::1] dbeta,
                  double[::1] dgamma, int n_threads):
    """Fill dbeta and dgamma (C,) with the per-channel sums of dout and dout * x_hat, both (N, C, S)."""
    _expect(dout, (dbeta.shape[0], dgamma.shape[0]), x_hat)
    cdef Py_ssize_t N = dout.shape[0], C = dout.shape[1], S = dout.shape[2]
    cdef int t
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        _gradient_sums(&dout[0, 0, 0], &x_hat[0, 0, 0], &dbeta[0], &dgamma[0], N, C, S,
                       chunk_start(C, n_threads, t), chunk_start(C, n_threads, t + 1))


def normalize(const floating[:, :, ::1] x, const floating[::1] mean, const floating[::1] inv_std,
              const floating[::1] gamma, const floating[::1] beta, floating[:, :, ::1] x_hat,
              floating[:, :, ::1] out, int n_threads):
    """x_hat = (x - mean) * inv_std and out = gamma * x_hat + beta, per channel of x (N, C, S)."""
    _expect(x, (mean.shape[0], inv_std.shape[0], gamma.shape[0], beta.shape[0]), x_hat, out)
    cdef Py_ssize_t C = x.shape[1], S = x.shape[2], q, c
    for q in prange(x.shape[0] * C, nogil=True, schedule="static", num_threads=n_threads):
        c = q % C
        _normalize_plane(&x[0, 0, 0] + q * S, &x_hat[0, 0, 0] + q * S, &out[0, 0, 0] + q * S, S,
                         mean[c], inv_std[c], gamma[c], beta[c])


def normalize_backward(const floating[:, :, ::1] dout, const floating[:, :, ::1] x_hat,
                       const floating[::1] gamma, const floating[::1] a, const floating[::1] b,
                       const floating[::1] inv_std, floating[:, :, ::1] dx, bint train, int n_threads):
    """dx (N, C, S) = ((dout * gamma - a) - x_hat * b) * inv_std in training, else dout * gamma * inv_std."""
    _expect(dout, (gamma.shape[0], a.shape[0], b.shape[0], inv_std.shape[0]), x_hat, dx)
    cdef Py_ssize_t C = dout.shape[1], S = dout.shape[2], q, c
    for q in prange(dout.shape[0] * C, nogil=True, schedule="static", num_threads=n_threads):
        c = q % C
        _input_gradient_plane(&dout[0, 0, 0] + q * S, &x_hat[0, 0, 0] + q * S, &dx[0, 0, 0] + q * S, S,
                              gamma[c], a[c], b[c], inv_std[c], train)


cdef void _normalize_plane(const floating* x, floating* x_hat, floating* out, Py_ssize_t S, floating mean,
                           floating inv_std, floating gamma, floating beta) noexcept nogil:
    cdef Py_ssize_t s
    for s in range(S):
        x_hat[s] = (x[s] - mean) * inv_std
        out[s] = gamma * x_hat[s] + beta


cdef void _input_gradient_plane(const floating* dout, const floating* x_hat, floating* dx, Py_ssize_t S,
                                floating gamma, floating a, floating b, floating inv_std, bint train) noexcept nogil:
    cdef Py_ssize_t s
    if train:
        for s in range(S):
            dx[s] = ((dout[s] * gamma - a) - x_hat[s] * b) * inv_std
    else:
        for s in range(S):
            dx[s] = dout[s] * gamma * inv_std


def _expect(first, tuple vector_sizes, *others):
    """ValueError unless the per-channel vectors have first's C entries and the others first's shape."""
    shape = tuple(first.shape[i] for i in range(3))
    if any(size != shape[1] for size in vector_sizes):
        raise ValueError(f"per-channel vectors must have shape ({shape[1]},), got sizes {vector_sizes}")
    for other in others:
        if tuple(other.shape[i] for i in range(3)) != shape:
            raise ValueError(f"arrays must have shape {shape}, got {tuple(other.shape[i] for i in range(3))}")
