"""Compiled Cython kernels (private). Use them through cnnkit.fast or cnnkit.functional."""
