# Row-major GEMM on scipy's BLAS (scipy.linalg.cython_blas), callable without the GIL,
# for float and double alike; shared by every kernel that multiplies matrices.
#
# BLAS is column-major: a row-major (M, N) matrix is its (N, M) transpose there, so
# C = op(A) @ op(B) is computed as C.T = op(B).T @ op(A).T with the operands swapped.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb, floating beta,
                      floating* c, int ldc) noexcept nogil:
    """c (m, n) = alpha * op(a) @ op(b) + beta * c, all row-major; op(a) is (m, k), op(b) (k, n).

    lda, ldb, ldc are the row strides (in elements) of a, b and c as stored.
    """
    cdef char ta = b"T" if trans_b else b"N"
    cdef char tb = b"T" if trans_a else b"N"
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)
