"""Layers: the nodes of a network, each with forward/backward, params, grads and a mode.

Names and arguments follow PyTorch. `forward(x)` caches what `backward` needs;
`backward(dout)` returns the gradient with respect to x and stores the parameter
gradients in `grads`, keyed like `params`. Non-trainable state (batchnorm running
statistics, the dropout random stream) lives in `buffers` and is saved with the model.
Every op goes through cnnkit.functional, so layers run on the active backend.

Arrays are NCHW. A Linear weight is (in_features, out_features), as in the course
(`x @ W`), a Maxout weight is (in_features, out_features, pieces), and a Conv2d weight
is (out_channels, in_channels, KH, KW).

Containers are layers made of layers: `Sequential` applies its layers in order and
`Residual` adds a body's output to a shortcut's. They nest; the arrays of the layers
inside them are named by dotted paths (e.g. "body.0.weight"), as PyTorch names them.
"""
import contextlib
import math
import numbers
import threading
from typing import ClassVar

import numpy as np

from cnnkit import functional as F
from cnnkit._validation import FLOAT_DTYPES, output_size, window_args

__all__ = [
    "ELU",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Maxout",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Tanh",
]


class Layer:
    """Base class of all layers.

    Subclasses define `_forward(x) -> (out, cache)`, `_backward(dout, cache) -> dx`,
    `output_shape(input_shape)` when the layer changes or constrains the shape,
    `config()` (the constructor arguments, JSON-serialisable) and `extra_repr()`.
    """

    # {param name: axes holding one unit's incoming weights} for the weights that
    # regularisation (L2, L1) and the Trainer's max_norm apply to
    regularized: ClassVar[dict] = {}

    def __init__(self):
        self.params, self.grads, self.buffers = {}, {}, {}
        self.training = True
        self._cache = None
        self._out_shape = None

    def forward(self, x):
        """Output for input x (N, ...); remembers what backward needs."""
        self._out_shape = self.output_shape(np.shape(x))
        out, self._cache = self._forward(x)
        return out

    def backward(self, dout, input_grad=True):
        """Gradient with respect to the last forward's input; fills `grads`.

        input_grad=False: the caller has no use for the input's gradient (the first layer of
        a training step); Conv2d and Linear then skip computing it and return None.
        """
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        if np.shape(dout) != self._out_shape:
            raise ValueError(f"{self!r}: dout must have the output's shape {self._out_shape}, "
                             f"got {np.shape(dout)}")
        if input_grad:
            return self._backward(dout, self._cache)
        self._parameter_backward(dout, self._cache)
        return None

    def _parameter_backward(self, dout, cache):
        """Fill `grads` only; layers that can skip the input's gradient override this."""
        self._backward(dout, cache)

    def output_shape(self, input_shape):
        """Output shape for an input of shape (N, ...); ValueError naming the expected shape."""
        return tuple(input_shape)

    def named_arrays(self, kind):
        """(path, layer, name) of each array in `kind` ("params" or "buffers"), here and in the layers inside.

        `layer.<kind>[name]` is the array; path names it from this layer, e.g. "weight" or
        "body.0.weight" in a container.
        """
        for name in getattr(self, kind):
            yield name, self, name

    def summary_rows(self, input_shape, label, depth=0):
        """Rows (label, description, output shape, trainable scalars) of this layer and those inside it,
        for an input of shape input_shape; description is indented by `depth`."""
        return [(label, "  " * depth + repr(self), self.output_shape(input_shape), self.num_params)]

    def train(self):
        """Training mode (batch statistics, dropout active); returns self."""
        self.training = True
        return self

    def eval(self):
        """Evaluation mode (running statistics, no dropout); returns self."""
        self.training = False
        return self

    @property
    def num_params(self):
        """Number of trainable scalars."""
        return sum(int(p.size) for p in self.params.values())

    def config(self):
        """Constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    @classmethod
    def from_config(cls, config):
        """The layer that config() described."""
        return cls(**config)

    def extra_repr(self):
        """The arguments shown inside repr's parentheses."""
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def _expect(self, input_shape, ok, expected):
        if not ok:
            raise ValueError(f"{self!r} expects input of shape {expected}, got {tuple(input_shape)}")


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def init_weight(shape, fan_in, fan_out, init, dtype, rng):
    """Normal weights: std sqrt(2/fan_in) ("he"), sqrt(2/(fan_in+fan_out)) ("xavier") or `init`."""
    if init == "he":
        std = math.sqrt(2.0 / fan_in)
    elif init == "xavier":
        std = math.sqrt(2.0 / (fan_in + fan_out))
    elif isinstance(init, numbers.Real) and not isinstance(init, bool) and init > 0:
        std = float(init)
    else:
        raise ValueError(f"init must be 'he', 'xavier' or a positive float (the standard deviation), "
                         f"got {init!r}")
    return (std * np.random.default_rng(rng).standard_normal(shape)).astype(dtype)


class _Weighted(Layer):
    """A layer with a weight and an optional bias (Linear, Conv2d, Maxout) on functional `{op}_*`."""

    op = None
    regularized: ClassVar[dict] = {"weight": (0,)}  # a column of an (in_features, ...) weight

    def __init__(self, weight_shape, outputs, fan_in, fan_out, bias, init, dtype, rng):
        super().__init__()
        self.dtype, self.init, self.bias = _float_dtype(dtype), init, bool(bias)
        self.params["weight"] = init_weight(weight_shape, fan_in, fan_out, init, self.dtype, rng)
        self._zero_bias = np.zeros(outputs, self.dtype)  # stands in for the bias when bias=False
        if self.bias:
            self.params["bias"] = self._zero_bias.copy()

    def _weight_and_bias(self):
        return self.params["weight"], self.params.get("bias", self._zero_bias)

    def _forward(self, x):
        return getattr(F, f"{self.op}_forward")(x, *self._weight_and_bias())

    def _backward(self, dout, cache):
        return self._gradients(dout, cache)

    def _parameter_backward(self, dout, cache):
        self._gradients(dout, cache, input_grad=False)

    def _gradients(self, dout, cache, **options):
        """dx (None with input_grad=False); the weight's and bias's gradients into `grads`."""
        dx, self.grads["weight"], db = getattr(F, f"{cache.op}_backward")(dout, cache, **options)  # the op forward ran
        if self.bias:
            self.grads["bias"] = db
        return dx

    def _base_config(self):
        return {"bias": self.bias, "init": self.init, "dtype": self.dtype.name}


class _Dense(_Weighted):
    """A weighted layer on flattened input: (N, in_features) or (N, d1, ..., dk) -> (N, out_features).

    The weight is (in_features, out_features, *pieces) and the bias (out_features, *pieces).
    """

    def __init__(self, in_features, out_features, pieces, bias, init, dtype, rng):
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        units = (self.out_features, *pieces)
        super().__init__((self.in_features, *units), units, self.in_features, math.prod(units), bias, init, dtype,
                         rng)

    def output_shape(self, input_shape):
        ok = len(input_shape) >= 2 and math.prod(input_shape[1:]) == self.in_features
        self._expect(input_shape, ok, f"(N, {self.in_features}) or (N, ...) with {self.in_features} "
                                      "features per sample")
        return (input_shape[0], self.out_features)


class Linear(_Dense):
    """Fully connected layer: x.reshape(N, -1) @ weight + bias.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    init : "he", "xavier" or float
        Weight initialisation: He or Xavier normal, or a normal with this standard deviation.
    dtype : float32 or float64
    rng : int, numpy.random.Generator or None
        Seed or generator for the initial weights.

    Input (N, in_features), or (N, d1, ..., dk) with d1*...*dk = in_features; output (N, out_features).
    """

    op = "affine"

    def __init__(self, in_features, out_features, bias=True, init="he", dtype=np.float32, rng=None):
        super().__init__(in_features, out_features, (), bias, init, dtype, rng)

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, **self._base_config()}

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias}"


class Maxout(_Dense):
    """Maxout units (Goodfellow et al. 2013): out[n, j] = max_k (x[n] . weight[:, j, k] + bias[j, k]).

    Parameters
    ----------
    in_features, out_features : int
    pieces : int
        Affine pieces per unit (K); the gradient of a unit goes to its first largest piece.
    bias, init, dtype, rng
        As for Linear; fan-in is in_features, fan-out out_features*pieces.

    Params weight (in_features, out_features, pieces) and bias (out_features, pieces).
    Input (N, in_features), or (N, d1, ..., dk) with d1*...*dk = in_features; output (N, out_features).
    """

    op = "maxout"

    _parameter_backward = Layer._parameter_backward  # maxout_backward has no input_grad option

    def __init__(self, in_features, out_features, pieces=2, bias=True, init="he", dtype=np.float32, rng=None):
        self.pieces = _positive_int(pieces, "pieces")
        super().__init__(in_features, out_features, (self.pieces,), bias, init, dtype, rng)

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "pieces": self.pieces,
                **self._base_config()}

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}, "
                f"bias={self.bias}")


class Conv2d(_Weighted):
    """2-D convolution (cross-correlation) over NCHW input.

    Input (N, in_channels, H, W); output (N, out_channels, OH, OW) with
    OH = (H + 2*padding - KH) // stride + 1.

    `forward(x, relu=True)` returns the output's ReLU, computed in the same op
    (functional.conv2d_relu_forward); backward then takes that output's gradient. A
    network runs a Conv2d followed by a ReLU layer so.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output (the number of filters).
    kernel_size, stride, padding : int or pair of ints
        The window (KH, KW), its step and the zeros added on each side.
    bias, init, dtype, rng
        As for Linear; fan-in is in_channels*KH*KW.
    """

    op = "conv2d"
    regularized: ClassVar[dict] = {"weight": (1, 2, 3)}  # a filter w[f] is one unit's incoming weights

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init="he", dtype=np.float32, rng=None):
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size, self.stride, self.padding = window_args(kernel_size, stride, padding)
        kh, kw = self.kernel_size
        super().__init__((self.out_channels, self.in_channels, kh, kw), self.out_channels,
                         self.in_channels * kh * kw, self.out_channels * kh * kw, bias, init, dtype, rng)
        self._relu = False  # whether forward takes the output's ReLU too

    def forward(self, x, relu=False):
        """Output for input x (N, C, H, W), or its ReLU when relu; remembers what backward needs."""
        self._relu = bool(relu)
        return super().forward(x)

    def output_shape(self, input_shape):
        self._expect(input_shape, len(input_shape) == 4 and input_shape[1] == self.in_channels,
                     f"(N, {self.in_channels}, H, W)")
        return (input_shape[0], self.out_channels,
                *_window_output(input_shape, self.kernel_size, self.stride, self.padding))

    def _forward(self, x):
        op = F.conv2d_relu_forward if self._relu else F.conv2d_forward
        return op(x, *self._weight_and_bias(), self.stride, self.padding)

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                **self._base_config()}

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
        return text if self.bias else text + ", bias=False"


def _window_output(input_shape, kernel, stride, padding):
    """(OH, OW) of a sliding window over an (N, C, H, W) input."""
    return tuple(output_size(input_shape[2 + d], kernel[d], stride[d], padding[d]) for d in range(2))


class _Pool2d(Layer):
    """Pooling over kernel_size windows (stride defaults to kernel_size)."""

    op = None  # functional op prefix

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = window_args(kernel_size, stride, padding)

    def output_shape(self, input_shape):
        self._expect(input_shape, len(input_shape) == 4, "(N, C, H, W)")
        return (*input_shape[:2], *_window_output(input_shape, self.kernel_size, self.stride, self.padding))

    def _forward(self, x):
        return getattr(F, f"{self.op}_forward")(x, self.kernel_size, self.stride, self.padding)

    def _backward(self, dout, cache):
        return getattr(F, f"{self.op}_backward")(dout, cache)

    def config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}


class MaxPool2d(_Pool2d):
    """Max pooling over (N, C, H, W) input; padding counts as -inf.

    Parameters
    ----------
    kernel_size : int or pair of ints
    stride : int, pair of ints or None (the kernel size)
    padding : int or pair of ints, at most half the kernel size

    Ties send the gradient to the first maximum in row-major window order.
    """

    op = "max_pool2d"


class AvgPool2d(_Pool2d):
    """Average pooling over (N, C, H, W) input; padding counts as zeros. Arguments as for MaxPool2d."""

    op = "avg_pool2d"


class GlobalAvgPool2d(Layer):
    """Mean over each channel's whole plane: (N, C, H, W) -> (N, C, 1, 1).

    As torch.nn.AdaptiveAvgPool2d(1) and ONNX's GlobalAveragePool, the output keeps its
    1 x 1 plane; a Linear after it takes (N, C, 1, 1) as (N, C), so no Flatten is needed.
    """

    def output_shape(self, input_shape):
        self._expect(input_shape, len(input_shape) == 4, "(N, C, H, W)")
        return (*input_shape[:2], 1, 1)

    def _forward(self, x):
        return F.avg_pool2d_forward(x, np.shape(x)[2:])

    def _backward(self, dout, cache):
        return F.avg_pool2d_backward(dout, cache)


class _Activation(Layer):
    """Elementwise activation: functional `{op}_forward(x, **config())`."""

    op = None

    def _forward(self, x):
        return getattr(F, f"{self.op}_forward")(x, **self.config())

    def _backward(self, dout, cache):
        return getattr(F, f"{self.op}_backward")(dout, cache)


class ReLU(_Activation):
    """max(x, 0)."""

    op = "relu"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    op = "sigmoid"


class Tanh(_Activation):
    """tanh(x)."""

    op = "tanh"


class LeakyReLU(_Activation):
    """x where x > 0, negative_slope * x elsewhere."""

    op = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def config(self):
        return {"negative_slope": self.negative_slope}


class ELU(_Activation):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere."""

    op = "elu"

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = float(alpha)

    def config(self):
        return {"alpha": self.alpha}


class _BatchNorm(Layer):
    """Batch normalisation; the subclasses document it."""

    op, layout = None, None  # functional op prefix; input layout with C for num_features

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        self.eps, self.momentum, self.dtype = float(eps), float(momentum), _float_dtype(dtype)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.params = {"weight": np.ones(num_features, self.dtype), "bias": np.zeros(num_features, self.dtype)}
        self.buffers = {"running_mean": np.zeros(num_features, self.dtype),
                        "running_var": np.ones(num_features, self.dtype)}
        self.sum_over_ranks = None

    def output_shape(self, input_shape):
        ok = len(input_shape) == len(self.layout) and input_shape[1] == self.num_features
        self._expect(input_shape, ok, "(" + ", ".join(self.layout).replace("C", str(self.num_features)) + ")")
        return tuple(input_shape)

    def _op(self, direction):
        return getattr(F, f"{self.op}_{direction}")

    def _forward(self, x):
        if self.training and self.sum_over_ranks is not None:
            return self._synchronized_forward(np.asarray(x))
        bn_param = {"mode": "train" if self.training else "test", "eps": self.eps,
                    "momentum": 1.0 - self.momentum, **self.buffers}
        out, cache = self._op("forward")(x, self.params["weight"], self.params["bias"], bn_param)
        self.buffers = {name: bn_param[name] for name in self.buffers}
        return out, (cache, None)

    def _synchronized_forward(self, x):
        """Normalise with the mean and variance of every rank's batch, from their row counts, sums and sums
        of squares (float64) summed by sum_over_ranks; update the running statistics with them."""
        rows = x.size // self.num_features
        x64 = np.asarray(x, dtype=np.float64)
        axes = (0, *range(2, x.ndim))
        total = self.sum_over_ranks(np.concatenate([[rows], x64.sum(axis=axes), np.square(x64).sum(axis=axes)]))
        all_rows, sums, squares = total[0], *total[1:].reshape(2, -1)
        if all_rows == 0:
            raise ValueError(f"batchnorm in train mode needs a non-empty batch on some rank, got x of shape {x.shape}")
        dtype, mean = x.dtype.type, sums / all_rows
        var = np.maximum(squares / all_rows - mean**2, 0)  # float64 sums: cancellation only for |mean| >> std
        statistics = {"running_mean": mean.astype(dtype), "running_var": var.astype(dtype)}
        out, cache = self._op("forward")(x, self.params["weight"], self.params["bias"],
                                         {"mode": "test", "eps": self.eps, **statistics})
        momentum = dtype(1.0 - self.momentum)
        self.buffers = {name: momentum * self.buffers[name] + (1 - momentum) * value
                        for name, value in statistics.items()}
        inv_std = 1 / np.sqrt(statistics["running_var"] + dtype(self.eps))
        return out, (cache, (x, statistics["running_mean"], inv_std, rows, all_rows))

    def _backward(self, dout, cache):
        cache, synchronized = cache
        dx, self.grads["weight"], self.grads["bias"] = self._op("backward")(dout, cache)
        return dx if synchronized is None else self._synchronized_dx(dx, *synchronized)

    def _synchronized_dx(self, dx, x, mean, inv_std, rows, all_rows):
        """The input's gradient through every rank's statistics, from dx = dout * gamma * inv_std (the op's with
        them held fixed): dx - inv_std * (a + x_hat * b), a and b the sums over the ranks of dout * gamma and
        dout * gamma * x_hat, each rank's times its rows (its dout is that of its rows' mean loss), over
        all_rows * rows."""
        local = np.concatenate([self.grads["bias"], self.grads["weight"]]).astype(np.float64)
        total = self.sum_over_ranks(rows * local)
        if rows == 0:
            return dx
        a, b = (self.params["weight"] * total.reshape(2, -1) / (all_rows * rows)).astype(dx.dtype)
        channel = (-1,) + (1,) * (dx.ndim - 2)
        a, b, mean, inv_std = (value.reshape(channel) for value in (a, b, mean, inv_std))
        return dx - inv_std * (a + (x - mean) * (inv_std * b))

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "dtype": self.dtype.name}

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, num_features) input, per feature.

    Parameters
    ----------
    num_features : int
    eps : float
        Added to the variance.
    momentum : float in [0, 1]
        PyTorch's meaning: running = (1 - momentum)*running + momentum*batch_statistic.
    dtype : float32 or float64

    Attributes
    ----------
    sum_over_ranks : callable or None
        None: training mode uses the statistics of this process's batch. In data-parallel
        training, a function returning the sum over the ranks of a 1-D float64 array, the
        same on every rank (cnnkit.distributed.synchronize_batchnorm sets it): training mode
        then uses the statistics of all ranks' rows (their counts, sums and sums of squares
        summed), and backward sums over the ranks what dx needs. With each rank's dout the
        gradient of its own mean loss, dx is that of the mean loss over all rows divided by
        this rank's share of them, so gradients weighted by the shares (as cnnkit.Trainer
        weights them) add up to one process's on the whole batch. Every rank takes part in
        each training forward and backward; one without rows may run an empty batch, or a
        stand-in whose sums it replaces by zeros.

    The learnable weight (gamma) starts at 1 and the bias (beta) at 0. Training mode
    normalises with batch statistics and updates the running ones (the `running_mean`
    and `running_var` buffers, starting at 0 and 1); evaluation mode uses the running ones.
    """

    op, layout = "batchnorm", "NC"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, num_features, H, W) input, per channel over N, H and W.

    Arguments, attributes and modes as for BatchNorm1d.
    """

    op, layout = "spatial_batchnorm", "NCHW"


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p).

    The masks come from a reproducible stream: buffer `state` = [seed, masks drawn so far],
    so a saved model or a training checkpoint carries it. Each row (example) of a batch
    draws its mask from its own key (seed, step, position): step counts the masks drawn and
    row i is position i, unless a `Dropout.keyed(step, first)` block (the Trainer's, one per
    update) gives the update's number and the position of row 0 in the whole batch, so an
    example's mask does not depend on how many processes share its batch. Evaluation mode
    is the identity.

    Parameters
    ----------
    p : float in [0, 1)
    rng : int, numpy.random.Generator or None
        Seed or generator for the mask stream.
    """

    _keys = threading.local()  # .step_first: (step, first) inside Dropout.keyed

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        seed = np.random.default_rng(rng).integers(2**63, dtype=np.uint64)
        self.buffers = {"state": np.array([seed, 0], dtype=np.uint64)}

    @classmethod
    @contextlib.contextmanager
    def keyed(cls, step, first):
        """In this thread, within the block, every Dropout keys row 0 of its batch as position `first`
        of update `step` (ints >= 0)."""
        outer = getattr(cls._keys, "step_first", None)
        cls._keys.step_first = (int(step), int(first))
        try:
            yield
        finally:
            cls._keys.step_first = outer

    def _forward(self, x):
        dropout_param = {"p": self.p, "mode": "train" if self.training else "test"}
        if self.training:
            seed, count = (int(v) for v in self.buffers["state"])
            step, first = getattr(self._keys, "step_first", None) or (count, 0)
            dropout_param["seed"] = int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
            dropout_param["row"] = first
            self.buffers["state"] = np.array([seed, count + 1], dtype=np.uint64)
        return F.dropout_forward(x, dropout_param)

    def _backward(self, dout, cache):
        return F.dropout_backward(dout, cache)

    def config(self):
        return {"p": self.p}


class Flatten(Layer):
    """Reshape (N, d1, ..., dk) input to (N, d1*...*dk)."""

    def output_shape(self, input_shape):
        self._expect(input_shape, len(input_shape) >= 2, "(N, ...) with at least 2 dimensions")
        return (input_shape[0], math.prod(input_shape[1:]))

    def _forward(self, x):
        x = np.asarray(x)
        return x.reshape(len(x), math.prod(x.shape[1:])), x.shape  # not -1: that fails on an empty batch

    def _backward(self, dout, cache):
        return dout.reshape(cache)


def layer_config(layer):
    """{"class": name, "config": arguments} of a layer (JSON-serialisable), for a model's architecture."""
    return {"class": type(layer).__name__, "config": layer.config()}


def layer_from_config(entry):
    """The layer that layer_config described (containers with the layers inside them)."""
    name = entry["class"]
    if name not in __all__ or name == "Layer":
        raise ValueError(f"unknown layer class {name!r}")
    return globals()[name].from_config(entry["config"])


def _indent(text):
    """text with every line after the first indented by two spaces (a child's repr in its parent's)."""
    return text.replace("\n", "\n  ")


class _Container(Layer):
    """A layer made of named layers (`children`, name -> Layer).

    Its params, grads and buffers are views of the children's, keyed by dotted paths
    ("<child>.<name>"); its mode is theirs. Subclasses define `_child_inputs(input_shape)`,
    `output_shape`, `_forward` and `_run_backward(dout, input_grad)`.
    """

    def __init__(self, children):  # not Layer.__init__: a container's arrays are its children's
        self.training, self._cache, self._out_shape = True, None, None
        bad = {name: child for name, child in children.items() if not isinstance(child, Layer)}
        if bad:
            raise TypeError(f"{type(self).__name__} holds cnnkit.layers.Layer objects, got {bad}")
        self.children = children

    params = property(lambda self: self._gather("params"), doc="{dotted path: trainable array}")
    buffers = property(lambda self: self._gather("buffers"), doc="{dotted path: non-trainable array}")
    grads = property(lambda self: self._gather("grads"), doc="{dotted path: gradient of the last backward}")

    def _gather(self, kind):
        return {f"{name}.{path}": value for name, child in self.children.items()
                for path, value in getattr(child, kind).items()}

    def named_arrays(self, kind):
        for name, child in self.children.items():
            for path, layer, key in child.named_arrays(kind):
                yield f"{name}.{path}", layer, key

    def train(self):
        for child in self.children.values():
            child.train()
        return super().train()

    def eval(self):
        for child in self.children.values():
            child.eval()
        return super().eval()

    def summary_rows(self, input_shape, label, depth=0):
        rows = [(label, "  " * depth + type(self).__name__, self.output_shape(input_shape), self.num_params)]
        for name, child, shape in self._child_inputs(input_shape):
            rows += child.summary_rows(shape, f"{label}.{name}", depth + 1)
        return rows

    def _backward(self, dout, cache):
        return self._run_backward(dout, input_grad=True)

    def _parameter_backward(self, dout, cache):
        self._run_backward(dout, input_grad=False)

    def __repr__(self):
        lines = [f"  ({name}): {_indent(repr(child))}" for name, child in self.children.items()]
        return "\n".join([f"{type(self).__name__}(", *lines, ")"])


class Sequential(_Container):
    """Layers applied in order, like torch.nn.Sequential; a layer, so it nests in Residual and itself.

    Parameters
    ----------
    layers : list of Layer
        Their arrays are named "<index>.<name>", e.g. "0.weight".

    A ReLU right after a Conv2d runs inside it (functional.conv2d_relu: one op; see `fused`).
    (cnnkit.models.Sequential is the whole network: these layers with a loss on top.)
    """

    def __init__(self, layers):
        self.layers = list(layers)
        super().__init__({str(index): layer for index, layer in enumerate(self.layers)})

    def fused(self):
        """Indices of the layers that run inside the layer before them: each ReLU right after a
        Conv2d (the pair runs as functional.conv2d_relu: one op, no pass of ReLU's own).
        """
        return {index for index in range(1, len(self.layers))
                if type(self.layers[index - 1]) is Conv2d and type(self.layers[index]) is ReLU}

    def _child_inputs(self, input_shape):
        shape, entries = tuple(input_shape), []
        for name, child in self.children.items():
            entries.append((name, child, shape))
            shape = child.output_shape(shape)
        return entries

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def _forward(self, x):
        fused = self.fused()
        for index, layer in enumerate(self.layers):
            if index not in fused:
                x = layer.forward(x, relu=True) if index + 1 in fused else layer.forward(x)
        return x, True

    def _run_backward(self, dout, input_grad):
        """dout through the layers backwards; the first one computes its input's gradient only with input_grad."""
        fused = self.fused()
        for index in reversed(range(len(self.layers))):
            if index not in fused:
                dout = self.layers[index].backward(dout, input_grad or index > 0)
        return dout if input_grad else None

    def config(self):
        return {"layers": [layer_config(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config):
        return cls([layer_from_config(entry) for entry in config["layers"]])


class Residual(_Container):
    """A residual block (He et al. 2016): out = body(x) + shortcut(x).

    Parameters
    ----------
    body : Layer
        Usually a Sequential, e.g. conv3x3 - batchnorm - relu - conv3x3 - batchnorm.
    shortcut : Layer or None
        None: the identity, for a body that keeps the input's shape. Where the body
        changes the shape (a strided first conv, more channels), a layer that maps the
        input to the body's output shape, e.g. `Residual.projection(...)`.

    The gradient of x is the sum of the body's and the shortcut's. Arrays are named
    "body.<path>" and "shortcut.<path>". The ReLU that follows a ResNet block's sum is a
    layer after the Residual.
    """

    def __init__(self, body, shortcut=None):
        self.body, self.shortcut = body, shortcut
        super().__init__({"body": body} if shortcut is None else {"body": body, "shortcut": shortcut})

    @staticmethod
    def projection(in_channels, out_channels, stride=1, dtype=np.float32, rng=None):
        """The shortcut of a block whose body changes the shape: 1x1 conv with stride (no bias) - batchnorm."""
        return Sequential([Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, dtype=dtype, rng=rng),
                           BatchNorm2d(out_channels, dtype=dtype)])

    def _child_inputs(self, input_shape):
        return [(name, child, tuple(input_shape)) for name, child in self.children.items()]

    def output_shape(self, input_shape):
        out = self.body.output_shape(input_shape)
        skipped = tuple(input_shape) if self.shortcut is None else self.shortcut.output_shape(input_shape)
        if out != skipped:
            what = "the input" if self.shortcut is None else "the shortcut's output"
            hint = (" (give a shortcut that maps the input to the body's shape, e.g. Residual.projection)"
                    if self.shortcut is None else "")
            raise ValueError(f"Residual: the body's output has shape {out} but {what} has {skipped}; "
                             f"they must match to be added{hint}")
        return out

    def _forward(self, x):
        out = self.body.forward(x)
        return out + (x if self.shortcut is None else self.shortcut.forward(x)), True

    def _run_backward(self, dout, input_grad):
        dx = self.body.backward(dout, input_grad)
        if self.shortcut is None:
            return dx + dout if input_grad else None
        dskipped = self.shortcut.backward(dout, input_grad)
        return dx + dskipped if input_grad else None

    def config(self):
        return {"body": layer_config(self.body),
                "shortcut": None if self.shortcut is None else layer_config(self.shortcut)}

    @classmethod
    def from_config(cls, config):
        shortcut = config["shortcut"]
        return cls(layer_from_config(config["body"]), None if shortcut is None else layer_from_config(shortcut))
