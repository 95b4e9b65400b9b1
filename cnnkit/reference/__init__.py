"""Pure-numpy reference ops: the canonical definition of every cnnkit op.

Callable directly whatever the active backend; they expect arguments already checked
by cnnkit.functional (pairs for kernel_size/stride/padding, matching float dtypes).
"""
from cnnkit.reference.activations import (
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
from cnnkit.reference.affine import affine_backward, affine_forward
from cnnkit.reference.conv import conv2d_backward, conv2d_forward, conv2d_relu_backward, conv2d_relu_forward
from cnnkit.reference.dropout import dropout_backward, dropout_forward
from cnnkit.reference.im2col import col2im, im2col
from cnnkit.reference.losses import softmax_loss, svm_loss
from cnnkit.reference.maxout import maxout_backward, maxout_forward
from cnnkit.reference.normalization import (
    batchnorm_backward,
    batchnorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from cnnkit.reference.optim import adam_update
from cnnkit.reference.pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward

__all__ = [
    "adam_update", "affine_backward", "affine_forward", "avg_pool2d_backward", "avg_pool2d_forward",
    "batchnorm_backward", "batchnorm_forward", "col2im", "conv2d_backward", "conv2d_forward",
    "conv2d_relu_backward", "conv2d_relu_forward",
    "dropout_backward", "dropout_forward", "elu_backward", "elu_forward", "im2col",
    "leaky_relu_backward", "leaky_relu_forward", "max_pool2d_backward", "max_pool2d_forward",
    "maxout_backward", "maxout_forward",
    "relu_backward", "relu_forward", "sigmoid_backward", "sigmoid_forward", "softmax_loss",
    "spatial_batchnorm_backward", "spatial_batchnorm_forward", "svm_loss", "tanh_backward",
    "tanh_forward",
]
