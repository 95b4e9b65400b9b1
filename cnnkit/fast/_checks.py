"""Cheap argument checks that keep the kernels safe when cnnkit.fast is called directly.

cnnkit.functional validates everything first; these repeat only what a kernel needs to
not read or write out of bounds: dtypes, ndim, matching sizes, C-contiguous buffers.
"""
import numpy as np

from cnnkit._validation import check_float, check_ndim, output_size, window_args


def checked_float_arrays(arrays, names, layouts):
    """C-contiguous versions of `arrays` after checking one float dtype and the ndim of each layout.

    A layout is written like "(N, C, H, W)" or "(F,)"; its number of axes is the ndim expected.
    """
    for array, name, layout in zip(arrays, names, layouts):
        check_ndim(array, len([axis for axis in layout.strip("()").split(",") if axis.strip()]), name, layout)
    check_float(*arrays, names=names)
    return [np.ascontiguousarray(a) for a in arrays]


def checked_window(x_shape, kernel_size, stride, padding):
    """(kernel, stride, padding, (OH, OW)) for an (N, C, H, W) input; ValueError if nothing fits."""
    kernel, stride, padding = window_args(kernel_size, stride, padding)
    out_hw = tuple(output_size(x_shape[2 + d], kernel[d], stride[d], padding[d]) for d in range(2))
    return kernel, stride, padding, out_hw


def check_shape(array, expected, name):
    """ValueError unless array.shape == expected."""
    if array.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {array.shape}")


def checked_gradient(dout, dtype, shape):
    """C-contiguous dout after checking it has the forward pass's dtype and output shape."""
    dout = np.asarray(dout)
    if dout.dtype != dtype:
        raise TypeError(f"dout must have the forward input's dtype {dtype} (no silent upcast), got {dout.dtype}")
    check_shape(dout, shape, "dout")
    return np.ascontiguousarray(dout)
