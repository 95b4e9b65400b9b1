"""Argument checks shared by functional, layers and both backends; errors say what was expected."""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pair(value, name):
    """(a, b) from an int or a pair of ints (PyTorch's convention)."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(values[0]), int(values[1])


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def window_args(kernel_size, stride, padding):
    """Normalise kernel_size, stride (None: kernel_size) and padding to pairs and check them."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if min(kernel) < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel}")
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    return kernel, stride, padding


def output_size(size, kernel, stride, padding):
    """(size + 2*padding - kernel) // stride + 1, or ValueError when no output fits."""
    if size + 2 * padding < kernel:
        raise ValueError(
            f"kernel size {kernel} is larger than the padded input size {size} + 2*{padding} = "
            f"{size + 2 * padding}; no output position fits")
    return (size + 2 * padding - kernel) // stride + 1


def check_float(*arrays, names=None):
    """All arrays float32, or all float64; TypeError naming the dtypes otherwise."""
    names = names or [f"argument {i}" for i in range(len(arrays))]
    dtypes = [np.asarray(a).dtype for a in arrays]
    described = ", ".join(f"{n}: {d}" for n, d in zip(names, dtypes))
    if any(d not in FLOAT_DTYPES for d in dtypes):
        raise TypeError(f"expected float32 or float64 arrays, got {described}")
    if len(set(dtypes)) > 1:
        raise TypeError(f"expected one dtype for all arrays (no silent upcast), got {described}")
    return dtypes[0]


def check_ndim(x, ndim, name, layout):
    """x must have `ndim` dimensions (laid out as `layout`, e.g. "(N, C, H, W)")."""
    if np.ndim(x) != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {np.shape(x)}")
