# Contiguous chunks of a flat range, one per thread, shared by the elementwise kernels.
#
# A module that cimports this compiles (with GCC) assuming that floating-point operations
# do not trap. Without that the compiler keeps every select whose side does arithmetic
# (a ? b : c * d) scalar and branchy, 10 to 50 times slower on random signs; the results
# are the same IEEE results either way.


cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize("no-trapping-math")
    #endif
    """


cdef inline Py_ssize_t chunk_start(Py_ssize_t size, int n_chunks, int t) noexcept nogil:
    """Start of chunk t of [0, size) cut into n_chunks contiguous chunks (chunk t ends at chunk_start(t + 1))."""
    return size * t // n_chunks


cdef inline int expect_sizes(Py_ssize_t size, tuple others) except -1:
    """ValueError unless every flat array of the call has `size` elements (others holds their sizes)."""
    for other in others:
        if other != size:
            raise ValueError(f"flat arrays must all have {size} elements, got {others}")
    return 0
