"""The fast max/avg pooling agrees with the reference: ties, overlapping windows, padding, NaN."""
import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_conv import windows

import cnnkit
from cnnkit import fast, reference

OPS = ["max_pool2d", "avg_pool2d"]
pytestmark = pytest.mark.usefixtures("tiny_grains")


def assert_pool_agrees(op, x, kernel, stride, padding, rng):
    """Fast forward and dx match the reference's, in the input dtype (max pooling exactly)."""
    expected, ref_cache = getattr(reference, op + "_forward")(x, kernel, stride, padding)
    out, cache = getattr(fast, op + "_forward")(x, kernel, stride, padding)
    dout = rng.standard_normal(out.shape).astype(x.dtype)
    dx = getattr(fast, op + "_backward")(dout, cache)
    tolerance = TOLERANCE[np.dtype(x.dtype).type]
    if op == "max_pool2d":
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out, expected, **tolerance)
    np.testing.assert_allclose(dx, getattr(reference, op + "_backward")(dout, ref_cache), **tolerance)
    assert out.dtype == dx.dtype == x.dtype


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(windows(max_kernel=4, max_padding=3), st.sampled_from(OPS), st.booleans(), st.integers(0, 2**32 - 1))
def test_pool_agrees_with_reference(g, op, ties, seed):
    """Random windows (overlapping when stride < kernel); integer-valued inputs force ties."""
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(g["threads"])
    x = rng.integers(-2, 3, g["shape"]) if ties else rng.standard_normal(g["shape"])
    assert_pool_agrees(op, x.astype(g["dtype"]), g["kernel"], g["stride"], g["padding"], rng)


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 11), st.integers(2, 140)),
       st.sampled_from(["normal", "ties", "nan and inf"]), st.sampled_from([np.float32, np.float64]),
       st.sampled_from([1, 2]), st.integers(0, 2**32 - 1))
def test_max_pool_2x2_stride_2_agrees_with_reference(shape, values, dtype, threads, seed):
    """The loop of 2x2 windows at stride 2 (odd sizes, rows of more than one block): maxima, first-maximum
    indices (ties, the first NaN) and gradients exactly the reference's."""
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(threads)
    x = rng.integers(-2, 3, shape) if values == "ties" else rng.standard_normal(shape)
    if values == "nan and inf":
        x[rng.random(shape) < 0.2] = np.nan
        x[rng.random(shape) < 0.2] = -np.inf
        x[rng.random(shape) < 0.1] = np.inf
    x = x.astype(dtype)
    expected, ref_cache = reference.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    out, cache = fast.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(out, expected)
    dout = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_array_equal(fast.max_pool2d_backward(dout, cache), reference.max_pool2d_backward(dout, ref_cache))


@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool_ties_go_to_the_first_maximum(threads):
    cnnkit.set_num_threads(threads)
    x = np.array([[[[1, 3, 3], [3, 0, 3]]]], dtype=np.float32)  # 2x3, one 2x3 window with four 3s
    out, cache = fast.max_pool2d_forward(x, (2, 3), (1, 1), (0, 0))
    dx = fast.max_pool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx, [[[[0, 1, 0], [0, 0, 0]]]])


@pytest.mark.parametrize("op", OPS)
def test_pool_windows_made_of_padding(op, rng, dtype):
    """Padding wider than the kernel: some windows see only padding (-inf for max, 0 for avg)."""
    x = rng.standard_normal((2, 3, 3, 4)).astype(dtype)
    assert_pool_agrees(op, x, (2, 1), (1, 2), (3, 2), rng)


@pytest.mark.parametrize("op", OPS)
def test_pool_nan_and_inf(op, rng):
    """NaN wins a max window (the first NaN takes the gradient); -inf-only windows match the reference."""
    x = rng.standard_normal((1, 2, 5, 6))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = np.nan
    x[0, 1, :3, :3] = -np.inf
    for padding in [(0, 0), (1, 1)]:
        expected, ref_cache = getattr(reference, op + "_forward")(x, (3, 3), (1, 1), padding)
        out, cache = getattr(fast, op + "_forward")(x, (3, 3), (1, 1), padding)
        np.testing.assert_array_equal(out, expected)
        dout = rng.standard_normal(out.shape)
        np.testing.assert_allclose(getattr(fast, op + "_backward")(dout, cache),
                                   getattr(reference, op + "_backward")(dout, ref_cache), **TOLERANCE[np.float64])


@pytest.mark.parametrize("op", OPS)
def test_pool_accepts_non_contiguous_read_only_input(op, rng, dtype):
    x = rng.standard_normal((3, 4, 9, 11)).astype(dtype)[::2, 1::2, :, ::-2]
    x.flags.writeable = False
    assert_pool_agrees(op, x, (3, 2), (2, 1), (1, 1), rng)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("call, error, message", [
    (lambda f, b, x: f(x[0], (2, 2), (2, 2), (0, 0)), ValueError, r"4-D \(N, C, H, W\)"),
    (lambda f, b, x: f(x.astype(np.int32), (2, 2), (2, 2), (0, 0)), TypeError, "int32"),
    (lambda f, b, x: f(x, (7, 2), (2, 2), (0, 0)), ValueError, "larger than the padded input"),
    (lambda f, b, x: f(x, (2, 2), (2, 2), (-1, 0)), ValueError, "padding must be >= 0"),
    (lambda f, b, x: b(np.ones((2, 3, 2, 2)), f(x, (2, 2), (2, 2), (0, 0))[1]), ValueError,
     r"dout must have shape \(2, 3, 3, 3\)"),
    (lambda f, b, x: b(np.ones((2, 3, 3, 3), np.float32), f(x, (2, 2), (2, 2), (0, 0))[1]), TypeError, "float64"),
])
def test_pool_bad_input_raises(op, call, error, message):
    forward, backward = getattr(fast, op + "_forward"), getattr(fast, op + "_backward")
    with pytest.raises(error, match=message):
        call(forward, backward, np.zeros((2, 3, 6, 6)))
