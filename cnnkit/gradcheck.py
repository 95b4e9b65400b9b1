"""Numerical gradients by centred differences, and checks of analytic gradients against them.

Check in float64: with h = 1e-5 a float32 difference quotient keeps only a couple of
correct digits. Typical use::

    report = check_gradients(F.conv2d_forward, F.conv2d_backward, dict(x=x, w=w, b=b))
    assert report.worst < 1e-7, report

    report = check_loss_gradients(lambda: model.loss(X, y), model.params)
"""
from dataclasses import dataclass

import numpy as np


def numerical_gradient(f, x, h=1e-5):
    """Gradient of a scalar function by centred differences.

    Parameters
    ----------
    f : callable, f(x) -> scalar; it may ignore its argument and read x from a closure
    x : float ndarray, perturbed in place one element at a time and restored
    h : float, step

    Returns
    -------
    grad : float64 ndarray of the shape of x, (f(x + h e_i) - f(x - h e_i)) / (2h)
    """
    grad = np.zeros(np.shape(x))
    for index, plus, minus in _probe(f, x, h):
        grad[index] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient_array(f, x, dout, h=1e-5):
    """Gradient of sum(f(x) * dout) with respect to x by centred differences.

    Parameters
    ----------
    f : callable, f(x) -> ndarray of the shape of dout
    x : float ndarray, perturbed in place one element at a time and restored
    dout : ndarray, the upstream gradient
    h : float, step

    Returns
    -------
    grad : float64 ndarray of the shape of x, the vector-Jacobian product dout . df/dx
    """
    grad = np.zeros(np.shape(x))
    for index, plus, minus in _probe(f, x, h):
        grad[index] = np.sum((plus - minus) * dout) / (2 * h)
    return grad


def _probe(f, x, h):
    """Yield (index, f(x + h e_i), f(x - h e_i)) as float64 copies for each element i of x."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(f"x must be a float ndarray (it is perturbed in place), got {type(x).__name__} "
                        f"of dtype {np.asarray(x).dtype}")
    for index in np.ndindex(x.shape):
        old = x[index]
        try:
            x[index] = old + h
            plus = np.array(f(x), dtype=np.float64)
            x[index] = old - h
            minus = np.array(f(x), dtype=np.float64)
        finally:
            x[index] = old
        yield index, plus, minus


def rel_error(a, b):
    """Largest elementwise relative error |a - b| / max(1e-8, |a| + |b|) of arrays of one shape."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs arrays of one shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


@dataclass(frozen=True)
class GradientReport:
    """Relative error (rel_error) of each analytic gradient against its numerical estimate."""

    errors: dict  # input name -> relative error

    @property
    def worst(self):
        """The largest relative error (0.0 when nothing was checked)."""
        return max(self.errors.values(), default=0.0)

    def __str__(self):
        details = ", ".join(f"{name}: {error:.2e}" for name, error in self.errors.items())
        return f"worst relative error {self.worst:.2e} ({details})"


def check_gradients(forward, backward, inputs, h=1e-5, seed=12345):
    """Check every gradient of a forward/backward pair against numerical gradients.

    Parameters
    ----------
    forward : callable, forward(*inputs) (or forward(**inputs) for a dict) -> (out, cache)
    backward : callable, backward(dout, cache) -> the gradient of each input, in input
        order (a single array when there is one input)
    inputs : dict of name -> float ndarray, or sequence of float ndarrays (named "0", "1", ...)
    h : float, step of the centred differences
    seed : int, seeds the random upstream gradient dout (pick one unrelated to the seed
        that drew the inputs: a dout proportional to the input can hide errors)

    Returns
    -------
    GradientReport, with the relative error of each input's gradient and the worst one
    """
    names, arrays, call = _named(inputs, forward)
    out, cache = call()
    dout = np.random.default_rng(seed).standard_normal(np.shape(out)).astype(np.asarray(out).dtype)
    analytic = _as_tuple(backward(dout, cache))
    numeric = [numerical_gradient_array(lambda _: call()[0], a, dout, h) for a in arrays]
    return _report(names, analytic, numeric)


def check_loss_gradients(loss, params, h=1e-5):
    """Check the gradients a loss function returns against numerical gradients.

    Parameters
    ----------
    loss : callable, loss() -> (value, grads) with grads keyed like params when params is
        a dict, else in the order of params (a single array when there is one); it reads
        the arrays in params, e.g. ``lambda: model.loss(X, y)`` with ``model.params``
    params : dict of name -> float ndarray, or sequence of float ndarrays
    h : float, step of the centred differences

    Returns
    -------
    GradientReport, with the relative error of each parameter's gradient and the worst one
    """
    names, arrays, _ = _named(params)
    grads = loss()[1]
    analytic = [grads[name] for name in names] if isinstance(params, dict) else _as_tuple(grads)
    numeric = [numerical_gradient(lambda _: loss()[0], a, h) for a in arrays]
    return _report(names, analytic, numeric)


def _named(inputs, function=None):
    """(names, arrays, call) for a dict or sequence of inputs; call() applies function to them."""
    if isinstance(inputs, dict):
        return list(inputs), list(inputs.values()), lambda: function(**inputs)
    arrays = list(inputs)
    return [str(i) for i in range(len(arrays))], arrays, lambda: function(*arrays)


def _as_tuple(grads):
    return (grads,) if isinstance(grads, np.ndarray) else tuple(grads)


def _report(names, analytic, numeric):
    if len(analytic) != len(names):
        raise ValueError(f"expected one gradient per input ({len(names)}), got {len(analytic)}")
    return GradientReport({name: rel_error(a, n) for name, a, n in zip(names, analytic, numeric)})
