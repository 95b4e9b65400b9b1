# Row-major GEMM on scipy's BLAS (scipy.linalg.cython_blas), callable without the GIL,
# for float and double alike; shared by every kernel that multiplies matrices.
#
# BLAS is column-major: a row-major (M, N) matrix is its (N, M) transpose there, so
# C = op(A) @ op(B) is computed as C.T = op(B).T @ op(A).T with the operands swapped.
# A product with one row of output (a batch of one through a linear layer) by a matrix of
# GEMV_ENTRIES or more runs as the matrix-vector product it is: GEMM packs such a matrix
# first, and took 4 to 15 times as long (4096 x 1000 and 9216 x 4096, batch 1); on smaller
# matrices, which stay in cache, the two were about even.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv


cdef enum:
    GEMV_ENTRIES = 1 << 20  # entries of op(b) from which a product with one row of output runs as GEMV


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb, floating beta,
                      floating* c, int ldc) noexcept nogil:
    """c (m, n) = alpha * op(a) @ op(b) + beta * c, all row-major; op(a) is (m, k), op(b) (k, n).

    lda, ldb, ldc are the row strides (in elements) of a, b and c as stored.
    """
    cdef char ta = b"T" if trans_b else b"N"
    cdef char tb = b"T" if trans_a else b"N"
    cdef int rows, cols, incx, incy = 1
    if m == 1 and <long long>n * k >= GEMV_ENTRIES:
        # c's row = op(b).T @ op(a)'s row, op(b).T being b as BLAS sees it (rows x cols), transposed if trans_b
        rows, cols = (k, n) if trans_b else (n, k)
        incx = lda if trans_a else 1
        if floating is float:
            sgemv(&ta, &rows, &cols, &alpha, <float*>b, &ldb, <float*>a, &incx, &beta, c, &incy)
        else:
            dgemv(&ta, &rows, &cols, &alpha, <double*>b, &ldb, <double*>a, &incx, &beta, c, &incy)
    elif floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)
