"""cnnkit: train convolutional networks on the CPU.

Readable numpy reference ops, fast Cython kernels chosen at run time, one Trainer.
"""
__version__ = "0.1.0"

from cnnkit._backend import (
    available_backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from cnnkit._info import show_config

__all__ = [
    "__version__",
    "available_backends",
    "get_backend",
    "get_num_threads",
    "set_backend",
    "set_num_threads",
    "show_config",
    "use_backend",
]
