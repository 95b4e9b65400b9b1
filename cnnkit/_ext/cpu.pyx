# cython: language_level=3
"""What this CPU runs, asked before importing a module built for a wider instruction set than the baseline
(winograd_avx2, direct_avx512: importing one where the CPU lacks its instructions would crash the process)."""

cdef extern from *:
    """
    static int cnnkit_cpu_supports(int avx512) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        if (!avx512)
            return __builtin_cpu_supports("avx2");
        /* x86-64-v4, the level direct_avx512 is built for: AVX2 and FMA (and the rest of x86-64-v3, which every
           CPU with these AVX-512 subsets has), AVX-512 F, BW, CD, DQ and VL */
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl");
    #else
        return 0;
    #endif
    }
    """
    int cnnkit_cpu_supports(int avx512)


def has_avx2():
    """Whether this CPU runs AVX2 (winograd_avx2 may be imported)."""
    return bool(cnnkit_cpu_supports(0))


def has_avx512():
    """Whether this CPU runs x86-64-v4: AVX-512 F, BW, CD, DQ and VL (direct_avx512 may be imported)."""
    return bool(cnnkit_cpu_supports(1))
