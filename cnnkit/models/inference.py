"""Inference plans: a network in eval mode run forward only on the fast kernels, without the training path's costs.

A plan turns the layers into steps once: a Conv2d or Linear takes a BatchNorm right after
it folded into its weights and the ReLU after those in the same step (a convolution's in
its output pass), and a Conv2d the 2x2 max pooling at stride 2 after those too (pooled in
its output pass where it runs on im2col, so its full output is never written), Dropout
(the identity in eval mode) is left out, Flatten is a view, and a layer the planner does
not know (a subclass included) runs its own eval forward. For each input shape and kernel
thread count the plan keeps, per Python thread, a program: the steps of
cnnkit.fast.inference made for that shape after the layers checked it (their
output_shape), each writing into a buffer of its own. Inputs of more than CHUNK samples
run CHUNK at a time; with SAMPLES_PER_THREAD samples per kernel thread or more, each thread
runs a share of the samples alone, on kernels of one thread. The weights are read (and
folded) again on every call, so changes to them, in place or by assignment, act at once.

`scores(model, X)` is what Network.loss(X) in eval mode and Network.predict run: the plan
on the fast backend, the layers' own forward on the reference backend, with a layer left
in training mode, or for input the plan does not take (another dtype, no samples), which
the layers then reject or run as usual.
"""
import concurrent.futures
import contextvars
import importlib
import itertools
import threading
import weakref

import numpy as np

from cnnkit import layers as nn
from cnnkit._backend import get_backend
from cnnkit._runtime import get_num_threads, set_num_threads

CHUNK = 256  # samples per run of a program; larger inputs run in chunks, so the buffers stay this size
KEPT_PROGRAMS = 4  # programs (their buffers: one chunk's activations) a plan keeps per Python thread
SAMPLES_PER_THREAD = 32  # from this many samples per kernel thread, each thread runs a share of them alone
_PLANS = weakref.WeakKeyDictionary()  # model -> its plan
_POOLS, _POOLS_LOCK = {}, threading.Lock()  # thread count -> the worker threads that run the shares


def scores(model, X):
    """Scores (N, num_classes) of model, all of whose layers are in eval mode, for X (N, ...).

    The model's own forward(X) to float rounding: the same bits without a batchnorm to fold
    (folded weights round apart) when the kernel threads share the batch (fewer than
    SAMPLES_PER_THREAD samples per thread), tested.
    """
    if get_backend() != "fast" or any(layer.training for layer in model.layers):
        return model.forward(X)
    plan = _PLANS.get(model)
    if plan is None or plan.layers != model.layers:
        plan = _PLANS[model] = Plan(model.layers)
    X = np.asarray(X)
    if not plan.takes(X):
        return model.forward(X)
    model.sync()
    return plan(np.ascontiguousarray(X))


def _workers(threads):
    """A pool of `threads` worker threads, made once per count and kept."""
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="cnnkit-inference")
        return _POOLS[threads]


class Plan:
    """The eval-mode forward of `layers` as steps on the fast kernels (see the module's docstring).

    Parameters
    ----------
    layers : list of Layer, all in eval mode when the plan runs
    """

    def __init__(self, layers):
        self.layers = list(layers)
        self.steps = _steps(self.layers)
        dtypes = {a.dtype for step in self.steps for layer in step.layers for a in layer.params.values()}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else None  # None: no plan for mixed (or no) weights
        self._kernels = importlib.import_module("cnnkit.fast.inference")  # plans are made on the fast backend only
        self._programs = threading.local()

    def takes(self, X):
        """Whether the plan runs X: a batch of at least one sample of the weights' dtype."""
        return X.dtype == self.dtype and X.ndim >= 2 and len(X) > 0

    def __call__(self, X):
        """Scores of a C-contiguous X (N, ...) that the plan takes, in a new array.

        With SAMPLES_PER_THREAD samples or more per kernel thread, each thread takes a share of the
        samples and runs the steps alone on it: no thread then waits for another between steps (on
        a busy machine, a descheduled thread held up every kernel's end).
        """
        arrays = [step.arrays() for step in self.steps]
        threads = min(get_num_threads(), len(X) // SAMPLES_PER_THREAD)
        with self._kernels.single_threaded_blas():
            if threads < 2:
                return self._run(X, arrays)
            bounds = [len(X) * share // threads for share in range(threads + 1)]
            shares = [_workers(threads).submit(contextvars.copy_context().run, self._run_alone, X[start:stop], arrays)
                      for start, stop in itertools.pairwise(bounds)]
            return np.concatenate([share.result() for share in shares])

    def _run(self, X, arrays):
        """Scores of X, CHUNK samples at a time, with the steps' arrays of this call."""
        out = None
        for start in range(0, len(X), CHUNK):
            y = X[start:start + CHUNK]
            for run, step_arrays in zip(self._program(y.shape), arrays):
                y = run(y, *step_arrays)
            if out is None:
                out = np.empty((len(X), *y.shape[1:]), y.dtype)
            out[start:start + len(y)] = y
        return out

    def _run_alone(self, X, arrays):
        """_run on one kernel thread; called in a worker thread, whose own setting that is."""
        set_num_threads(1)
        return self._run(X, arrays)

    def _program(self, x_shape):
        """The runs of the steps for input of x_shape at the current thread count, made once per Python thread."""
        key, kept = (x_shape, get_num_threads()), self._programs.__dict__.setdefault("programs", {})
        if key not in kept:
            if len(kept) >= KEPT_PROGRAMS:
                kept.clear()
            kept[key] = self._make(x_shape)
        return kept[key]

    def _make(self, x_shape):
        runs, shape = [], x_shape
        for step in self.steps:
            out_shape = shape
            for layer in step.layers:  # each raises ValueError naming the shape it expects
                out_shape = layer.output_shape(out_shape)
            runs.append(step.make(self._kernels, shape, self.dtype))
            shape = out_shape
        return runs


def _steps(layers):
    """The steps that run `layers` in eval mode, in order."""
    steps, index = [], 0
    while index < len(layers):
        layer, following = layers[index], layers[index + 1:]
        if type(layer) in (nn.Conv2d, nn.Linear):
            step = _Weighted(layer, *_taken_in(layer, following))
        elif type(layer) is nn.Maxout:
            step = _Weighted(layer, None, None, None)
        elif type(layer) in _SIMPLE:
            step = _SIMPLE[type(layer)](layer)
        elif type(layer) is nn.Dropout:
            step = _Skipped(layer)
        else:
            step = _Own(layer)
        steps.append(step)
        index += len(step.layers)
    return [step for step in steps if not isinstance(step, _Skipped)]


def _taken_in(layer, following):
    """The layers `following` layer (a Conv2d or Linear) that its step takes in, each None where absent: the
    BatchNorm right after it that folds into it, the ReLU next, then (a Conv2d's) a 2x2 max pooling at stride 2."""
    norm_type = nn.BatchNorm2d if type(layer) is nn.Conv2d else nn.BatchNorm1d
    norm = following[0] if following and type(following[0]) is norm_type else None
    rest = following[norm is not None:]
    relu = rest[0] if rest and type(rest[0]) is nn.ReLU else None
    rest = rest[relu is not None:]
    pool = rest[0] if type(layer) is nn.Conv2d and rest and _halves(rest[0]) else None
    return norm, relu, pool


def _halves(layer):
    """Whether layer is a MaxPool2d over 2x2 windows at stride 2 without padding."""
    return type(layer) is nn.MaxPool2d and (layer.kernel_size, layer.stride, layer.padding) == ((2, 2), (2, 2), (0, 0))


class _Step:
    """Runs `layers` (consecutive layers of the network): arrays() once per call, then make()'s run per chunk."""

    def __init__(self, *layers):
        self.layers = [layer for layer in layers if layer is not None]

    def arrays(self):
        """The arrays passed to each run in this call (the weights as they are now)."""
        return ()


class _Weighted(_Step):
    """A Conv2d or Linear, a BatchNorm after it folded into its weights, then its ReLU, then (a Conv2d's) 2x2 max
    pooling, in one kernel call; or a Maxout alone."""

    def __init__(self, layer, norm, relu, pool):
        super().__init__(layer, norm, relu, pool)
        self.layer, self.norm, self.relu, self.pool = layer, norm, relu is not None, pool is not None
        weight = layer.params["weight"]
        conv = type(layer) is nn.Conv2d
        self._units = (-1, 1, 1, 1) if conv else (1, -1)  # how a per-output-unit vector broadcasts on the weight
        self._zero_bias = np.zeros(weight.shape[:1] if conv else weight.shape[1:], weight.dtype)

    def arrays(self):
        weight, bias = self.layer.params["weight"], self.layer.params.get("bias", self._zero_bias)
        if self.norm is not None:
            weight, bias = _folded(weight, bias, self.norm, self._units)
        return np.ascontiguousarray(weight), np.ascontiguousarray(bias)

    def make(self, kernels, x_shape, dtype):
        weight_shape = self.layer.params["weight"].shape
        if type(self.layer) is nn.Conv2d:
            return kernels.conv2d(x_shape, weight_shape, dtype, self.layer.stride, self.layer.padding, self.relu,
                                  self.pool)
        if type(self.layer) is nn.Maxout:
            return kernels.maxout(x_shape, weight_shape, dtype)
        return kernels.affine(x_shape, weight_shape, dtype, self.relu)


def _folded(weight, bias, norm, units):
    """(weight, bias) of a layer followed by `norm` (a BatchNorm in eval mode) that compute both at once.

    norm(y) = (y - mean) * scale + beta with scale = gamma / sqrt(var + eps), per output unit; the folded
    values are computed in float64, then rounded to the weight's dtype.
    """
    gamma, beta = (norm.params[name].astype(np.float64) for name in ("weight", "bias"))
    mean, var = (norm.buffers[name].astype(np.float64) for name in ("running_mean", "running_var"))
    scale = gamma / np.sqrt(var + norm.eps)
    return ((weight * scale.reshape(units)).astype(weight.dtype),
            ((bias - mean) * scale + beta).astype(weight.dtype))


class _Pool(_Step):
    def make(self, kernels, x_shape, dtype):
        layer = self.layers[0]
        make = kernels.max_pool2d if type(layer) is nn.MaxPool2d else kernels.avg_pool2d
        return make(x_shape, dtype, layer.kernel_size, layer.stride, layer.padding)


class _ReLU(_Step):
    def make(self, kernels, x_shape, dtype):
        return kernels.relu(x_shape, dtype)


class _Flatten(_Step):
    def make(self, kernels, x_shape, dtype):
        return lambda x: x.reshape(len(x), -1)


class _Skipped(_Step):
    """Dropout: the identity in eval mode."""


class _Own(_Step):
    """A layer the planner does not know: its own eval forward."""

    def make(self, kernels, x_shape, dtype):
        layer = self.layers[0]
        return lambda x: np.ascontiguousarray(layer.forward(x))


_SIMPLE = {nn.MaxPool2d: _Pool, nn.AvgPool2d: _Pool, nn.ReLU: _ReLU, nn.Flatten: _Flatten}  # layer type -> step
