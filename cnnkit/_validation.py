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
    if any(d not in FLOAT_DTYPES for d in dtypes):
        raise TypeError(f"expected float32 or float64 arrays, got {_describe(names, dtypes)}")
    if len(set(dtypes)) > 1:
        raise TypeError(f"expected one dtype for all arrays (no silent upcast), got {_describe(names, dtypes)}")
    return dtypes[0]


def _describe(names, dtypes):
    return ", ".join(f"{n}: {d}" for n, d in zip(names, dtypes))


def check_ndim(x, ndim, name, layout):
    """x must have `ndim` dimensions (laid out as `layout`, e.g. "(N, C, H, W)")."""
    if np.ndim(x) != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {np.shape(x)}")


def check_shape(x, expected, name, meaning):
    """x.shape must equal `expected`; `meaning` says where it comes from, e.g. "(F,) with F = 4"."""
    if np.shape(x) != tuple(expected):
        raise ValueError(f"{name} must have shape {meaning}, got {np.shape(x)}")


def check_state(state, w, name):
    """state must be a writable, C-contiguous ndarray of w's shape and dtype (an optimiser's
    moving average, updated in place)."""
    ok = (isinstance(state, np.ndarray) and state.shape == np.shape(w) and state.dtype == np.asarray(w).dtype
          and state.flags.c_contiguous and state.flags.writeable)
    if not ok:
        got = (f"shape {state.shape}, dtype {state.dtype}, C-contiguous {state.flags.c_contiguous}, writable "
               f"{state.flags.writeable}" if isinstance(state, np.ndarray) else f"a {type(state).__name__}")
        raise ValueError(f"{name} must be a writable C-contiguous array of w's shape {np.shape(w)} and dtype "
                         f"{np.asarray(w).dtype} (it is updated in place), got {got}")


def check_dims(shape, name, ndim):
    """shape must be `ndim` positive ints (NaN, floats, zeros and negatives are refused)."""
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else None
    if dims is None or len(dims) != ndim or not all(_is_int(d) and d > 0 for d in dims):
        raise ValueError(f"{name} must be {ndim} positive ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def check_real(value, name, expected="a finite number", condition=None):
    """value as a float: a finite real number for which `condition` holds (NaN is refused)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or (condition is not None and not condition(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def check_param_dict(param, name, modes=("train", "test")):
    """param must be a dict whose "mode" is one of `modes`; returns the mode."""
    if not isinstance(param, dict):
        raise TypeError(f"{name} must be a dict, got {type(param).__name__}")
    mode = param.get("mode")
    if mode not in modes:
        raise ValueError(f"{name}['mode'] must be one of {', '.join(map(repr, modes))}, got {mode!r}")
    return mode


def check_labels(y, n, classes):
    """y must be integer class labels of shape (n,) with values in [0, classes)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    check_shape(y, (n,), "y", f"(N,) with N = {n} (one label per row of scores)")
    if n and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must be in [0, {classes}) for {classes} classes, got values in "
                         f"[{y.min()}, {y.max()}]")
    return y


def check_seed(seed, name):
    """seed must be None or an int >= 0 (what numpy.random.default_rng accepts)."""
    if seed is not None and not (_is_int(seed) and seed >= 0):
        raise ValueError(f"{name} must be None or an int >= 0, got {seed!r}")
