"""Python-side helpers of the convolution drivers (cnnkit/_ext/conv.pyx, cnnkit/_ext/winograd.pyx).

The workspace: the drivers carve their per-thread buffers out of one array per dtype,
kept per Python thread between calls. It holds nothing from one call to the next, so the
drivers share it; the arrays their callers build for them are kept in slots of their own.
It starts a cache line (numpy's own alignment is 16 bytes), so that the drivers' buffer
rows, whose strides are whole cache lines, never straddle two.
"""
import threading

import numpy as np

_kept = threading.local()  # per Python thread: one array per slot and dtype
CACHE_LINE = 64  # bytes


def workspace(dtype, size, slot=""):
    """A 1-D array of at least `size` elements of dtype, kept per Python thread between calls, one per slot."""
    key = slot + np.dtype(dtype).char  # not .name: a Python property, microseconds on every call
    buffer = getattr(_kept, key, None)
    if buffer is None or len(buffer) < size:
        buffer = _aligned(max(size, 1), np.dtype(dtype))
        setattr(_kept, key, buffer)
    return buffer


def _aligned(size, dtype):
    """An empty 1-D array of `size` elements of dtype whose first one starts a cache line."""
    raw = np.empty(size * dtype.itemsize + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + size * dtype.itemsize].view(dtype)


def expect_shape(shape, expected, name):
    """ValueError unless shape == expected."""
    if shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {shape}")


def check_threads(n_threads):
    """ValueError unless n_threads >= 1."""
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
