"""Every functional op: gradients, dtypes, non-contiguous input, and the backward's checks."""
import numpy as np
import pytest
from helpers import TOLERANCE
from op_cases import CASES

from cnnkit import functional as F
from cnnkit.gradcheck import check_gradients


def _run(name, dtype, transform=lambda key, a: a):
    """Forward and backward of CASES[name] on its inputs transformed: (out, grads, inputs)."""
    forward, backward, inputs = CASES[name](np.random.default_rng(0), dtype)
    inputs = {key: transform(key, a) for key, a in inputs.items()}
    out, cache = forward(**inputs)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    grads = backward(dout, cache)
    return out, grads if isinstance(grads, tuple) else (grads,), inputs


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_numerical_gradient(name, backend):
    forward, backward, inputs = CASES[name](np.random.default_rng(0), np.float64)
    report = check_gradients(forward, backward, inputs)
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("name", CASES)
def test_dtype_is_kept(name, backend, dtype):
    out, grads, inputs = _run(name, dtype)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert [g.shape for g in grads] == [a.shape for a in inputs.values()]
    if dtype == np.float32:  # the same computation in float64 agrees to float32 rounding
        out64, grads64, _ = _run(name, np.float64)
        for got, expected in zip((out, *grads), (out64, *grads64)):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _strided(_, a):
    """A non-contiguous, read-only view with the values of a."""
    view = np.repeat(a, 2, axis=-1)[..., ::2]
    view.flags.writeable = False
    return view


@pytest.mark.parametrize("name", CASES)
def test_non_contiguous_read_only_input(name, backend):
    out, grads, inputs = _run(name, np.float64, _strided)
    assert not next(iter(inputs.values())).flags.c_contiguous
    expected_out, expected_grads, _ = _run(name, np.float64)
    for got, expected in zip((out, *grads), (expected_out, *expected_grads)):
        np.testing.assert_allclose(got, expected, **TOLERANCE[np.float64])


def test_backward_checks_dout_and_cache(rng):
    x = rng.standard_normal((2, 3))
    out, cache = F.relu_forward(x)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3\) \(the output of relu_forward\)"):
        F.relu_backward(np.ones((3, 2)), cache)
    with pytest.raises(TypeError, match="dout must be float64 like the output of relu_forward, got float32"):
        F.relu_backward(np.ones((2, 3), dtype=np.float32), cache)
    with pytest.raises(TypeError, match="cache must be the one tanh_forward returned, got the cache of relu_forward"):
        F.tanh_backward(out, cache)
    with pytest.raises(TypeError, match="cache must be the one relu_forward returned, got a tuple"):
        F.relu_backward(out, (x,))


def test_same_names_in_both_backends_and_functional():
    from cnnkit import reference
    assert set(F.__all__) == set(reference.__all__)
    assert all(callable(getattr(F, name)) for name in F.__all__)


@pytest.mark.parametrize("name", [name for name in CASES if "batchnorm_train" not in name])
def test_empty_batch(name, backend):
    out, grads, inputs = _run(name, np.float64, transform=lambda key, a: a[:0] if key == "x" else a)
    assert len(out) == 0 and [g.shape for g in grads] == [a.shape for a in inputs.values()]


@pytest.mark.parametrize("name", ["conv2d", "conv2d_relu", "affine"])
def test_backward_without_the_input_gradient(name, backend, dtype):
    forward, backward, inputs = CASES[name](np.random.default_rng(0), dtype)
    out, cache = forward(**inputs)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    dx, *weight_grads = backward(dout, cache, input_grad=False)
    assert dx is None
    for got, want in zip(weight_grads, backward(dout, cache)[1:]):
        np.testing.assert_array_equal(got, want)


def test_ops_without_weights_have_no_input_grad_option(rng):
    out, cache = F.relu_forward(rng.standard_normal((2, 3)))
    with pytest.raises(TypeError, match="input_grad"):
        F.relu_backward(out, cache, input_grad=False)
