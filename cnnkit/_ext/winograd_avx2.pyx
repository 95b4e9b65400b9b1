# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The drivers of winograd.pyx built for AVX2 (setup.py adds -mavx2): 8 floats a vector instead of SSE2's 4.

Bit for bit the same results (no -mfma: GCC contracts nothing, and vectorises no sum whose order it would
change), with vectors twice as wide.
Import it only where cnnkit._ext.cpu.has_avx2() (cnnkit.fast.conv does).
"""
include "winograd.pyx"
