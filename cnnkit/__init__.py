"""cnnkit: train convolutional networks on the CPU.

Readable numpy reference ops, fast Cython kernels chosen at run time, one Trainer.
"""
from cnnkit import errors, functional, gradcheck, layers, models, optim
from cnnkit._backend import available_backends, get_backend, set_backend, use_backend
from cnnkit._info import show_config
from cnnkit._runtime import get_num_threads, set_num_threads
from cnnkit._version import __version__
from cnnkit.errors import CheckpointError, DatasetError, FileFormatError, ModelFileError
from cnnkit.trainer import Trainer

__all__ = [
    "CheckpointError",
    "DatasetError",
    "FileFormatError",
    "ModelFileError",
    "Trainer",
    "__version__",
    "available_backends",
    "errors",
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


def __getattr__(name):
    """cnnkit.Sweep, imported on first use (the sweep's extras, Dask and Optuna, load only when it runs)."""
    if name == "Sweep":
        from cnnkit.sweep import Sweep

        return Sweep
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
