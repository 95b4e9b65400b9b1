"""Keep the memory a training step frees for the next step (glibc's malloc).

glibc serves each array above its mmap threshold (128 KiB at first, growing up to
32 MiB as such blocks are freed) with fresh pages from the kernel and returns them
when the array is freed, and trims the top of its heap past a threshold: a step that
frees what the next one allocates pays a page fault for every page it touches again
(arrays of 1 to 16 MiB allocated in turn and freed together: 227 minor faults per
step, none with the settings below), and finds the pages cold. The threshold cannot be
set above 32 MiB, so arrays larger than that (a batch of 128 CIFAR images through 64
channels: 33.5 MB) are kept only with mmap turned off: the CIFAR-wide step then took
83-85 ms instead of 91-92 (median of 20) and its slowest step 87-88 ms instead of 164-172.
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
