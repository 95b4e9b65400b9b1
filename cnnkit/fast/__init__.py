"""Fast ops on the Cython kernels in cnnkit._ext and BLAS; same signatures as cnnkit.reference.

Importing this module raises ImportError when the compiled extension is missing.
"""
from cnnkit.fast.activations import (
    elu_backward,
    elu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from cnnkit.fast.affine import affine_backward, affine_forward
from cnnkit.fast.conv import conv2d_backward, conv2d_forward, conv2d_relu_backward, conv2d_relu_forward
from cnnkit.fast.dropout import dropout_backward, dropout_forward
from cnnkit.fast.im2col import col2im, im2col
from cnnkit.fast.losses import softmax_loss, svm_loss
from cnnkit.fast.maxout import maxout_backward, maxout_forward
from cnnkit.fast.normalization import (
    batchnorm_backward,
    batchnorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from cnnkit.fast.optim import adam_update
from cnnkit.fast.pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward

__all__ = [
    "adam_update", "affine_backward", "affine_forward", "avg_pool2d_backward", "avg_pool2d_forward",
    "batchnorm_backward", "batchnorm_forward", "col2im", "conv2d_backward", "conv2d_forward",
    "conv2d_relu_backward", "conv2d_relu_forward", "dropout_backward",
    "dropout_forward", "elu_backward", "elu_forward", "im2col", "leaky_relu_backward", "leaky_relu_forward",
    "max_pool2d_backward", "max_pool2d_forward", "maxout_backward", "maxout_forward", "relu_backward",
    "relu_forward", "sigmoid_backward", "sigmoid_forward", "softmax_loss", "spatial_batchnorm_backward",
    "spatial_batchnorm_forward", "svm_loss", "tanh_backward", "tanh_forward",
]
