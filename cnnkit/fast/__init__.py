"""Fast ops on the Cython kernels in cnnkit._ext and BLAS; same signatures as cnnkit.reference.

Importing this module raises ImportError when the compiled extension is missing.
"""
from cnnkit.fast.conv import conv2d_backward, conv2d_forward
from cnnkit.fast.im2col import col2im, im2col
from cnnkit.fast.pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward

__all__ = [
    "avg_pool2d_backward", "avg_pool2d_forward", "col2im", "conv2d_backward", "conv2d_forward", "im2col",
    "max_pool2d_backward", "max_pool2d_forward",
]
