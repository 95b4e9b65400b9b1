"""What `cnnkit bench` times: ops (conv, pooling) forward+backward, a training step, numpy's matmul.

Each case builds a zero-argument callable per contender ("reference", "fast", "torch"),
from arrays seeded the same way in every process, and checks fast against reference
outside the timed calls.
"""
import dataclasses

import numpy as np

from cnnkit import layers as nn
from cnnkit import optim, use_backend
from cnnkit._backend import backend_module
from cnnkit.layers import Linear
from cnnkit.models import Sequential, load
from cnnkit.recipes import convnet

LEARNING_RATE = 3e-3  # `cnnkit train`'s default


def _pair(value):
    """An int or a pair as a pair."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _out_hw(x_shape, kernel, stride, padding):
    """(OH, OW) of windows over x (N, C, H, W); kernel, stride and padding ints or pairs."""
    return tuple((size + 2 * p - k) // s + 1
                 for size, k, s, p in zip(x_shape[2:], _pair(kernel), _pair(stride), _pair(padding)))


def _window_text(kernel, stride, padding):
    """"3x3 s2 p1" for a window; pairs written "1x7 s1 p(0, 3)"."""
    def side(value):
        return str(value[0]) if value[0] == value[1] else str(tuple(value))
    (kh, kw), stride, padding = _pair(kernel), _pair(stride), _pair(padding)
    return f"{kh}x{kw} s{side(stride)} p{side(padding)}"


def _random(shapes, dtype):
    """Standard normal arrays of the given shapes in dtype, the same in every process."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def _import_torch():
    import torch

    return torch


class _Op:
    """Forward+backward of one op: subclasses give shapes(), step() and torch_step()."""

    dtypes = ("float32", "float64")

    def contender(self, name, dtype):
        """Zero-argument callable running forward+backward once on `name`'s implementation."""
        arrays = _random(self.shapes(), dtype)
        if name == "torch":
            torch = _import_torch()
            tensors = [torch.from_numpy(a).requires_grad_(i < len(arrays) - 1) for i, a in enumerate(arrays)]
            return lambda: self.torch_step(torch, *tensors)
        ops = backend_module(name)
        return lambda: self.step(ops, *arrays)

    def check(self, dtype):
        """True when the fast result (output and gradients) agrees with the reference one."""
        fast, reference = (self.contender(name, dtype)() for name in ("fast", "reference"))
        return agrees([fast[0], *fast[2]], [reference[0], *reference[2]], dtype)


@dataclasses.dataclass(frozen=True)
class Conv(_Op):
    """conv2d of x (N, C, H, W) with `filters` kernels; kernel, stride and padding ints or pairs."""

    x: tuple
    filters: int
    kernel: object
    stride: object = 1
    padding: object = 0
    op = "conv2d"

    def shapes(self):
        """Shapes of x, w, b, dout."""
        n, c = self.x[:2]
        return self.x, (self.filters, c, *_pair(self.kernel)), (self.filters,), (n, self.filters, *self._hw())

    def _hw(self):
        return _out_hw(self.x, self.kernel, self.stride, self.padding)

    def flops(self):
        """Forward + backward: three products of 2*N*F*C*KH*KW*OH*OW floating-point operations each."""
        n, c = self.x[:2]
        oh, ow = self._hw()
        kh, kw = _pair(self.kernel)
        return 3 * 2 * n * self.filters * c * kh * kw * oh * ow

    def describe(self):
        return f"conv x{self.x} {self.filters}x{_window_text(self.kernel, self.stride, self.padding)}"

    def step(self, ops, x, w, b, dout):
        """Forward + backward with `ops` (cnnkit.reference or cnnkit.fast); returns (out, cache, grads)."""
        out, cache = ops.conv2d_forward(x, w, b, _pair(self.stride), _pair(self.padding))
        return out, cache, ops.conv2d_backward(dout, cache)

    def torch_step(self, torch, x, w, b, dout):
        for t in (x, w, b):
            t.grad = None
        torch.nn.functional.conv2d(x, w, b, _pair(self.stride), _pair(self.padding)).backward(dout)


@dataclasses.dataclass(frozen=True)
class Pool(_Op):
    """max ("max") or average ("avg") pooling of x (N, C, H, W); kernel, stride and padding ints or pairs."""

    x: tuple
    kernel: object
    stride: object
    padding: object = 0
    kind: str = "max"

    @property
    def op(self):
        return f"{self.kind}_pool2d"

    def shapes(self):
        """Shapes of x, dout."""
        return self.x, self.x[:2] + _out_hw(self.x, self.kernel, self.stride, self.padding)

    def flops(self):
        return None

    def describe(self):
        return f"{self.kind} pool x{self.x} {_window_text(self.kernel, self.stride, self.padding)}"

    def step(self, ops, x, dout):
        window = _pair(self.kernel), _pair(self.stride), _pair(self.padding)
        out, cache = getattr(ops, f"{self.op}_forward")(x, *window)
        return out, cache, (getattr(ops, f"{self.op}_backward")(dout, cache),)

    def torch_step(self, torch, x, dout):
        x.grad = None
        getattr(torch.nn.functional, self.op)(x, _pair(self.kernel), _pair(self.stride),
                                              _pair(self.padding)).backward(dout)


def _lenet5(image_shape, classes, width, rng):
    """LeNet-5 on 28x28 images: 5x5 convs (the first padded by 2) and 2x2 average pools, three linears."""
    return Sequential([
        nn.Conv2d(image_shape[0], width, 5, padding=2, rng=rng), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(width, 16, 5, rng=rng), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120, rng=rng), nn.ReLU(), nn.Linear(120, 84, rng=rng), nn.ReLU(),
        nn.Linear(84, classes, rng=rng),
    ], input_shape=image_shape)


def _small(image_shape, classes, width, rng):
    """Issue 22's small net on 32x32 images: 5x5 conv, 3x3/2 average pool, 3x3/2 conv, one linear."""
    return Sequential([
        nn.Conv2d(image_shape[0], width, 5, padding=2, rng=rng), nn.ReLU(), nn.AvgPool2d(3, stride=2),
        nn.Conv2d(width, 2 * width, 3, stride=2, rng=rng), nn.ReLU(), nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, classes, rng=rng),
    ], input_shape=image_shape)


def _all_conv(image_shape, classes, width, rng):
    """All-convolutional net on 32x32 images: 3x3 convs, two of them at stride 2, a 1x1 conv to the
    classes, then global average pooling (an 8x8 average pool) instead of a linear layer."""
    return Sequential([
        nn.Conv2d(image_shape[0], width, 3, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(4 * width, classes, 1, rng=rng), nn.AvgPool2d(image_shape[1] // 4), nn.Flatten(),
    ], input_shape=image_shape)


def _convnet(image_shape, classes, width, rng):
    """`cnnkit train`'s convnet (recipes.convnet), seeded by rng."""

    return convnet(image_shape, classes, width=width, seed=rng)


ARCHITECTURES = {"convnet": _convnet, "lenet5": _lenet5, "small": _small, "all-conv": _all_conv}
RULES = {"adam": {"learning_rate": LEARNING_RATE}, "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9}}


@dataclasses.dataclass(frozen=True)
class Net:
    """A training step of a net (ARCHITECTURES) on a batch x (N, C, H, W).

    One step: forward, softmax loss, backward, then the update rule (RULES: Adam, or SGD
    with momentum) on every parameter, float32, as the Trainer takes it; PyTorch runs the
    same layers and weights with torch.optim's Adam or SGD(momentum).
    """

    x: tuple
    width: int
    classes: int = 10
    architecture: str = "convnet"
    rule: str = "adam"
    op = "train step"
    dtypes = ("float32",)

    def describe(self):
        rule = "" if self.rule == "adam" else ", SGD momentum"
        return f"train step {self.architecture} width {self.width}{rule}, x{self.x}"

    def flops(self):
        return None

    def build(self):
        """(model, X, y): the net with its seeded initial weights, a random batch and labels."""
        model = ARCHITECTURES[self.architecture](self.x[1:], self.classes, self.width, np.random.default_rng(0))
        (X,) = _random([self.x], np.float32)
        y = np.random.default_rng(1).integers(self.classes, size=self.x[0])
        return model, X, y

    def training(self):
        """(model, step): the net and a zero-argument callable taking one step on the active backend."""
        model, X, y = self.build()
        return model, training_step(model, X, y, self.rule)

    def contender(self, name, dtype="float32"):
        """Zero-argument callable taking one training step on "torch", or on the active backend."""
        if name == "torch":
            return torch_step(_import_torch(), *self.build(), self.rule)
        return self.training()[1]

    def check(self, dtype="float32"):
        """True when one step's loss and gradients on the fast backend agree with the reference ones."""
        results = []
        for name in ("fast", "reference"):
            model, X, y = self.build()
            with use_backend(name):
                loss, grads = model.loss(X, y)
            results.append([np.float32(loss), *grads.values()])
        return agrees(*results, dtype, tolerance=1e-3)


@dataclasses.dataclass(frozen=True)
class SavedModel:
    """A training step (Adam) of a saved model file (`cnnkit train`'s model.npz, Network.save) on a
    random batch of `batch` samples of the input shape the file records."""

    path: str
    batch: int = 64
    rule = "adam"

    def describe(self):
        return f"train step of {self.path}, batch {self.batch}"

    def training(self):
        """(model, step): the loaded model and a zero-argument callable taking one step on the active backend.

        Raises ValueError when the file does not record the model's input shape.
        """
        model = load(self.path)
        if model.input_shape is None:
            raise ValueError(f"{self.path}: the model records no input shape, so no batch can be made for it")
        dtype = next(iter(model.params.values())).dtype if model.params else np.float32
        (X,) = _random([(self.batch, *model.input_shape)], dtype)
        classes = model.loss(X[:1]).shape[1]
        y = np.random.default_rng(1).integers(classes, size=self.batch)
        return model, training_step(model, X, y)


def training_step(model, X, y, rule="adam"):
    """Zero-argument callable: one training step as cnnkit's Trainer takes it (loss and gradients,
    then the update rule on every parameter); returns the loss."""
    update = getattr(optim, rule)
    configs = {key: dict(RULES[rule]) for key in model.params}

    def step():
        loss, grads = model.loss(X, y)
        for key, weight in list(model.params.items()):
            model.params[key], configs[key] = update(weight, grads[key], configs[key])
        return loss
    return step


def torch_twin(torch, model):
    """torch.nn.Sequential with the layers and a copy of the weights of a cnnkit Sequential.

    Layers map by class name (Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d, Flatten), their
    config() giving PyTorch's constructor arguments; Linear weights are transposed.
    """
    twins = []
    for layer in model.layers:
        config = {key: value for key, value in layer.config().items() if key not in ("init", "dtype")}
        twin = getattr(torch.nn, type(layer).__name__)(**config)
        for name, array in layer.params.items():
            getattr(twin, name).data = torch.tensor(array.T if isinstance(layer, Linear) else array)
        twins.append(twin)
    return torch.nn.Sequential(*twins)


def torch_step(torch, model, X, y, rule="adam"):
    """Zero-argument callable: one step of model's torch twin (cross-entropy, then torch.optim's Adam or
    SGD with momentum as `rule` says, RULES' hyperparameters); returns the loss."""
    net = torch_twin(torch, model)
    settings = RULES[rule]
    optimizer = (torch.optim.Adam(net.parameters(), lr=settings["learning_rate"]) if rule == "adam" else
                 torch.optim.SGD(net.parameters(), lr=settings["learning_rate"], momentum=settings["momentum"]))
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(inputs), labels)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


@dataclasses.dataclass(frozen=True)
class Matmul:
    """numpy's product of two (size, size) matrices: the BLAS rate the fast conv is measured against."""

    size: int
    dtypes = ("float32", "float64")

    def flops(self):
        return 2 * self.size ** 3

    def contender(self, name, dtype):
        a, b = _random([(self.size, self.size)] * 2, dtype)
        return lambda: np.matmul(a, b)


def agrees(got, expected, dtype, tolerance=None):
    """True when two lists of arrays agree in dtype and to the dtype's rounding (1e-4 float32, 1e-10 float64)."""
    tolerance = tolerance or (1e-4 if np.dtype(dtype) == np.float32 else 1e-10)
    return all(np.asarray(g).dtype == np.asarray(e).dtype
               and np.allclose(g, e, rtol=tolerance, atol=tolerance * np.abs(e).max())
               for g, e in zip(got, expected))


ROWS = {
    "A": Conv((100, 3, 32, 32), 32, 3, padding=1),
    "B": Conv((64, 64, 32, 32), 64, 3, padding=1),
    "C": Conv((128, 32, 16, 16), 64, 3, padding=1),
    "P": Pool((100, 32, 32, 32), 2, 2),
    "Q": Pool((100, 32, 32, 32), 3, 2, padding=1, kind="avg"),
    "mnist": Net((64, 1, 28, 28), 16),
    "cifar": Net((64, 3, 32, 32), 32),
    "cifar-wide": Net((128, 3, 32, 32), 64),
    "lenet5": Net((64, 1, 28, 28), 6, architecture="lenet5"),
    "small": Net((50, 3, 32, 32), 32, architecture="small", rule="sgd_momentum"),
    "all-conv": Net((64, 3, 32, 32), 32, architecture="all-conv"),
}
