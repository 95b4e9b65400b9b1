# cython: language_level=3
"""Whether the kernels were built with OpenMP, and how many threads it offers."""


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(CNNKIT_OPENMP)


def max_threads():
    """OpenMP's default thread count (1 without OpenMP)."""
    return omp_get_max_threads()
