"""What `cnnkit bench` times: ops (conv, pooling) forward+backward, a training step, numpy's matmul.

Each case builds a zero-argument callable per contender ("reference", "fast", "torch"),
from arrays seeded the same way in every process, and checks fast against reference
outside the timed calls.
"""
import dataclasses

import numpy as np

from cnnkit import optim, use_backend
from cnnkit._backend import backend_module
from cnnkit.layers import Linear
from cnnkit.recipes import convnet

LEARNING_RATE = 3e-3  # `cnnkit train`'s default


def _out_hw(x_shape, kernel, stride, padding):
    """(OH, OW) of square windows over x (N, C, H, W)."""
    return tuple((size + 2 * padding - kernel) // stride + 1 for size in x_shape[2:])


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
    """conv2d of x (N, C, H, W) with `filters` square kernels."""

    x: tuple
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    op = "conv2d"

    def shapes(self):
        """Shapes of x, w, b, dout."""
        n, c = self.x[:2]
        return self.x, (self.filters, c, self.kernel, self.kernel), (self.filters,), (n, self.filters, *self._hw())

    def _hw(self):
        return _out_hw(self.x, self.kernel, self.stride, self.padding)

    def flops(self):
        """Forward + backward: three products of 2*N*F*C*KH*KW*OH*OW floating-point operations each."""
        n, c = self.x[:2]
        oh, ow = self._hw()
        return 3 * 2 * n * self.filters * c * self.kernel ** 2 * oh * ow

    def describe(self):
        return f"conv x{self.x} {self.filters}x{self.kernel}x{self.kernel} s{self.stride} p{self.padding}"

    def step(self, ops, x, w, b, dout):
        """Forward + backward with `ops` (cnnkit.reference or cnnkit.fast); returns (out, cache, grads)."""
        out, cache = ops.conv2d_forward(x, w, b, (self.stride,) * 2, (self.padding,) * 2)
        return out, cache, ops.conv2d_backward(dout, cache)

    def torch_step(self, torch, x, w, b, dout):
        for t in (x, w, b):
            t.grad = None
        torch.nn.functional.conv2d(x, w, b, self.stride, self.padding).backward(dout)


@dataclasses.dataclass(frozen=True)
class Pool(_Op):
    """max ("max") or average ("avg") pooling of x (N, C, H, W) with square windows."""

    x: tuple
    kernel: int
    stride: int
    padding: int = 0
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
        return f"{self.kind} pool x{self.x} {self.kernel}x{self.kernel} s{self.stride} p{self.padding}"

    def step(self, ops, x, dout):
        window = (self.kernel,) * 2, (self.stride,) * 2, (self.padding,) * 2
        out, cache = getattr(ops, f"{self.op}_forward")(x, *window)
        return out, cache, (getattr(ops, f"{self.op}_backward")(dout, cache),)

    def torch_step(self, torch, x, dout):
        x.grad = None
        getattr(torch.nn.functional, self.op)(x, self.kernel, self.stride, self.padding).backward(dout)


@dataclasses.dataclass(frozen=True)
class Net:
    """A training step of `cnnkit train`'s convnet (recipes.convnet) on a batch x (N, C, H, W).

    One step: forward, softmax loss, backward, Adam on every parameter (float32), as the
    Trainer takes it; PyTorch runs the same layers and weights with torch.optim.Adam.
    """

    x: tuple
    width: int
    classes: int = 10
    op = "train step"
    dtypes = ("float32",)

    def describe(self):
        return f"train step convnet width {self.width}, x{self.x}"

    def flops(self):
        return None

    def build(self):
        """(model, X, y): the convnet with its seeded initial weights, a random batch and labels."""
        model = convnet(self.x[1:], self.classes, width=self.width)
        (X,) = _random([self.x], np.float32)
        y = np.random.default_rng(1).integers(self.classes, size=self.x[0])
        return model, X, y

    def training(self):
        """(model, step): the convnet and a zero-argument callable taking one step on the active backend."""
        model, X, y = self.build()
        configs = {key: {"learning_rate": LEARNING_RATE} for key in model.params}
        return model, lambda: adam_step(model, X, y, configs)

    def contender(self, name, dtype="float32"):
        """Zero-argument callable taking one training step on "torch", or on the active backend."""
        if name == "torch":
            return torch_step(_import_torch(), *self.build())
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


def adam_step(model, X, y, configs):
    """One training step as cnnkit's Trainer takes it: loss and gradients, then Adam on every parameter."""
    loss, grads = model.loss(X, y)
    for key, weight in list(model.params.items()):
        model.params[key], configs[key] = optim.adam(weight, grads[key], configs[key])
    return loss


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


def torch_step(torch, model, X, y):
    """Zero-argument callable: one step of model's torch twin (cross-entropy, torch.optim.Adam); returns the loss."""
    net = torch_twin(torch, model)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
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
}
