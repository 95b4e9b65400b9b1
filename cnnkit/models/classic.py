"""The course's networks, built from layers, with the course's parameter keys (W1, b1, ...).

Each has a softmax loss with L2 regularisation 0.5 * reg * sum(W**2) over the weights
and, with l1 > 0, L1 regularisation l1 * sum(|W|) (elastic net with both; see Network),
and the course's defaults: weights drawn from a normal of standard deviation
weight_scale (or "he"/"xavier"), zero biases.
"""
import itertools

import numpy as np

from cnnkit import layers as nn
from cnnkit.models.network import Network


def _weights(index):
    return {"weight": f"W{index}", "bias": f"b{index}"}


class _CourseNet(Network):
    """A Network remembering its constructor arguments for save()."""

    def __init__(self, config, layers, keys, input_shape):
        self._config = config
        super().__init__(layers, reg=config["reg"], input_shape=input_shape, keys=keys, l1=config["l1"])

    def config(self):
        return dict(self._config)


class TwoLayerNet(_CourseNet):
    """affine - relu - affine - softmax.

    Parameters
    ----------
    input_dim : int
        Features per sample; X may be (N, input_dim) or (N, d1, ...) with that many.
    hidden_dim, num_classes : int
    weight_scale : float, "he" or "xavier"
    reg, l1 : float
        L2 and L1 regularisation strengths.
    dtype : float32 or float64
    rng : int, numpy.random.Generator or None
        Seed or generator for the initial weights.

    Params: W1 (input_dim, hidden_dim), b1, W2 (hidden_dim, num_classes), b2.
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0,
                 dtype=np.float32, rng=None, l1=0.0):
        rng = np.random.default_rng(rng)
        common = dict(init=weight_scale, dtype=dtype, rng=rng)
        layers = [nn.Linear(input_dim, hidden_dim, **common), nn.ReLU(), nn.Linear(hidden_dim, num_classes, **common)]
        config = dict(input_dim=input_dim, hidden_dim=hidden_dim, num_classes=num_classes,
                      weight_scale=weight_scale, reg=reg, l1=l1, dtype=np.dtype(dtype).name)
        super().__init__(config, layers, [_weights(1), {}, _weights(2)], (input_dim,))


class FullyConnectedNet(_CourseNet):
    """{affine - [batchnorm] - relu - [dropout]} x (L - 1) - affine - softmax.

    Parameters
    ----------
    hidden_dims : list of int
        Sizes of the L - 1 hidden layers (any number, including none).
    input_dim, num_classes : int
    dropout : float
        Probability of dropping a hidden unit; 0 means no dropout layers.
    normalization : None or "batchnorm"
    reg, l1, weight_scale, dtype, rng
        As for TwoLayerNet; rng also seeds the dropout masks.

    Params: W1, b1, ..., WL, bL and, with batchnorm, gamma1, beta1, ... (buffers
    running_mean1, running_var1, ...); with dropout, buffers dropout1_state, ...
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0.0, normalization=None,
                 reg=0.0, weight_scale=1e-2, dtype=np.float32, rng=None, l1=0.0):
        if normalization not in (None, "batchnorm"):
            raise ValueError(f"normalization must be None or 'batchnorm', got {normalization!r}")
        rng = np.random.default_rng(rng)
        dims = [input_dim, *hidden_dims, num_classes]
        layers, keys = [], []
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(dims), start=1):
            layers.append(nn.Linear(fan_in, fan_out, init=weight_scale, dtype=dtype, rng=rng))
            keys.append(_weights(index))
            if index == len(dims) - 1:
                break
            if normalization == "batchnorm":
                layers.append(nn.BatchNorm1d(fan_out, dtype=dtype))
                keys.append({"weight": f"gamma{index}", "bias": f"beta{index}",
                             "running_mean": f"running_mean{index}", "running_var": f"running_var{index}"})
            layers.append(nn.ReLU())
            keys.append({})
            if dropout:
                layers.append(nn.Dropout(dropout, rng=rng))
                keys.append({"state": f"dropout{index}_state"})
        config = dict(hidden_dims=list(hidden_dims), input_dim=input_dim, num_classes=num_classes,
                      dropout=dropout, normalization=normalization, reg=reg, l1=l1, weight_scale=weight_scale,
                      dtype=np.dtype(dtype).name)
        super().__init__(config, layers, keys, (input_dim,))


class ThreeLayerConvNet(_CourseNet):
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax.

    The convolution has stride 1 and padding (filter_size - 1) // 2, which keeps the
    spatial size for odd filter sizes.

    Parameters
    ----------
    input_dim : (C, H, W)
    num_filters, filter_size, hidden_dim, num_classes : int
    weight_scale, reg, l1, dtype, rng
        As for TwoLayerNet.

    Params: W1 (num_filters, C, filter_size, filter_size), b1, W2 (num_filters*H'*W',
    hidden_dim), b2, W3 (hidden_dim, num_classes), b3, with H', W' the pooled size.
    """

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32, rng=None, l1=0.0):
        rng = np.random.default_rng(rng)
        common = dict(init=weight_scale, dtype=dtype, rng=rng)
        conv = nn.Conv2d(input_dim[0], num_filters, filter_size, padding=(filter_size - 1) // 2, **common)
        pool = nn.MaxPool2d(2)
        _, channels, height, width = pool.output_shape(conv.output_shape((None, *input_dim)))
        layers = [conv, nn.ReLU(), pool, nn.Linear(channels * height * width, hidden_dim, **common), nn.ReLU(),
                  nn.Linear(hidden_dim, num_classes, **common)]
        config = dict(input_dim=list(input_dim), num_filters=num_filters, filter_size=filter_size,
                      hidden_dim=hidden_dim, num_classes=num_classes, weight_scale=weight_scale, reg=reg, l1=l1,
                      dtype=np.dtype(dtype).name)
        keys = [_weights(1), {}, {}, _weights(2), {}, _weights(3)]
        super().__init__(config, layers, keys, tuple(input_dim))
