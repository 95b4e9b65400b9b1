"""Keep the memory a training step frees for the next step (glibc's malloc).

glibc serves each array above its mmap threshold (128 KiB at first, growing up to
32 MiB as such blocks are freed) with fresh pages from the kernel and returns them
when the array is freed, and trims the top of its heap past a threshold: a step that
frees what the next one allocates pays a page fault for every 4 KiB page it touches
again (612 minor faults per step of the MNIST benchmark net, 21 with the thresholds
below), and finds the pages cold.
"""
import ctypes
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters of glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for it (HEAP_MAX_SIZE / 2 on 64-bit): larger arrays stay mmapped
TRIM_THRESHOLD = 1 << 30  # freed memory the heap keeps before it returns some to the kernel


@functools.cache
def retain_freed_memory():
    """Have malloc keep freed blocks of up to MMAP_THRESHOLD bytes for reuse; once per process.

    Like PyTorch's caching allocators, this trades returning memory to the system between
    steps for not faulting it in again: the process keeps up to TRIM_THRESHOLD bytes it
    freed. Returns True when applied, False where malloc is not glibc's.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt (musl)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
