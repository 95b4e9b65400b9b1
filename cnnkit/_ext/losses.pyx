# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax cross-entropy and multiclass hinge losses with their gradients, rows in parallel.

Notation: scores and dscores (N, C), labels y (N,) in [0, C) (the caller checks the labels).

Design:
1. Each row is one thread's: it writes its row of dscores and its loss into row_loss[n];
   the caller adds row_loss in row order, so the loss is the same bit for bit whatever
   the thread count.
2. The formulas are the reference's, step for step, in the scores' precision: softmax
   shifts by the row maximum, takes log_probs = shifted - log(sum(exp(shifted))), and
   dscores = (exp(log_probs) - [j == y]) / N; the row's sum of exponentials is taken in
   double. The hinge margins follow np.maximum(0, s_j - s_y + 1) (a NaN stays NaN).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf


cdef inline floating fexp(floating v) noexcept nogil:
    return expf(v) if floating is float else exp(v)


cdef inline floating flog(floating v) noexcept nogil:
    return logf(v) if floating is float else log(v)


cdef double _softmax_row(const floating* s, Py_ssize_t y, floating* ds, Py_ssize_t C, floating n) noexcept nogil:
    """Write the row's gradient into ds; return its loss, -log_probs[y]."""
    cdef Py_ssize_t j
    cdef floating top = s[0], log_sum
    cdef double total = 0
    for j in range(1, C):
        top = s[j] if s[j] > top or s[j] != s[j] else top
    for j in range(C):
        total += fexp(s[j] - top)
    log_sum = flog(<floating>total)
    for j in range(C):
        ds[j] = fexp((s[j] - top) - log_sum)
    ds[y] -= 1
    for j in range(C):
        ds[j] = ds[j] / n
    return -((s[y] - top) - log_sum)


cdef double _hinge_row(const floating* s, Py_ssize_t y, floating* ds, Py_ssize_t C, floating n) noexcept nogil:
    """Write the row's gradient into ds; return its loss, the sum of its margins."""
    cdef Py_ssize_t j
    cdef floating margin, above = 0
    cdef double total = 0
    for j in range(C):
        margin = s[j] - s[y] + 1
        margin = 0 if margin <= 0 or j == y else margin
        total += margin
        ds[j] = (1 if margin > 0 else 0) / n
        above += 1 if margin > 0 else 0
    ds[y] = -above / n
    return total


def row_losses(bint hinge, const floating[:, ::1] scores, const Py_ssize_t[::1] y, floating[:, ::1] dscores,
               double[::1] row_loss, int n_threads):
    """Fill dscores (N, C) and row_loss (N,) with each row's gradient and loss: the multiclass hinge
    loss (margin 1) when hinge is true, else the softmax cross-entropy.
    """
    _check(scores, y, dscores, row_loss)
    cdef Py_ssize_t N = scores.shape[0], C = scores.shape[1], n
    for n in prange(N, nogil=True, schedule="static", num_threads=n_threads):
        if hinge:
            row_loss[n] = _hinge_row(&scores[n, 0], y[n], &dscores[n, 0], C, <floating>N)
        else:
            row_loss[n] = _softmax_row(&scores[n, 0], y[n], &dscores[n, 0], C, <floating>N)


def _check(scores, y, dscores, row_loss):
    """ValueError unless scores (N, C >= 1), y (N,), dscores (N, C) and row_loss (N,) fit together."""
    N, C = scores.shape[0], scores.shape[1]
    if C == 0 or y.shape[0] != N or row_loss.shape[0] != N or (dscores.shape[0], dscores.shape[1]) != (N, C):
        raise ValueError(f"expected scores (N, C) with C >= 1, y, row_loss (N,) and dscores (N, C), got scores "
                         f"({N}, {C}), y ({y.shape[0]},), row_loss ({row_loss.shape[0]},), dscores "
                         f"({dscores.shape[0]}, {dscores.shape[1]})")
