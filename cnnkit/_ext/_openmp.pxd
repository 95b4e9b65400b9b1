# OpenMP shim: the kernels compile with or without OpenMP.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CNNKIT_OPENMP 1
    #else
    #define CNNKIT_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    int CNNKIT_OPENMP
    int omp_get_max_threads() nogil
