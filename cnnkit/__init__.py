"""cnnkit: train convolutional networks on the CPU.

Readable numpy reference ops, fast Cython kernels chosen at run time, one Trainer.
"""
__version__ = "0.1.0"

from cnnkit import functional, gradcheck, layers, models, optim
from cnnkit._backend import (
    available_backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from cnnkit._info import show_config
from cnnkit.trainer import Trainer

__all__ = [
    "Trainer",
    "__version__",
    "available_backends",
    "functional",
    "get_backend",
    "get_num_threads",
    "gradcheck",
    "layers",
    "models",
    "optim",
    "set_backend",
    "set_num_threads",
    "show_config",
    "use_backend",
]
