"""Keep the memory a training step frees for the next step (glibc's malloc).

glibc serves each array above its mmap threshold (128 KiB at first, growing up to
32 MiB as such blocks are freed) with fresh pages from the kernel and returns them
when the array is freed, and trims the top of its heap past a threshold: a step that
frees what the next one allocates then pays a page fault for every page it touches
again, and finds the pages cold. The threshold cannot be set above 32 MiB, so larger
arrays (a batch of CIFAR images through many channels) are kept only with mmap turned
off, which `retain_freed_memory` does; the Performance page of the docs has the figures.
"""
import ctypes
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters of glibc's malloc.h
TRIM_THRESHOLD = 1 << 30  # freed memory the heap keeps before it returns some to the kernel


@functools.cache
def retain_freed_memory():
    """Have malloc serve every block from its heap and keep freed ones for reuse; once per process.

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
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
