"""The fast max/avg pooling agrees with the reference: ties, overlapping windows, padding, NaN,
on every path of cnnkit._ext.pool (by rows, by windows, whole-row windows, 2x2/2), and its
gradients with numerical ones."""
import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_conv import windows

import cnnkit
from cnnkit import fast, functional, reference
from cnnkit.gradcheck import check_gradients

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


@st.composite
def wide_windows(draw):
    """Windows over maps up to 40 wide, kernels up to 10: outputs narrower and wider than a row's
    minimum (ROW_MIN, 8), window rows of LANES (8) and more, whole-row windows."""
    kernel = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    h, w = (draw(st.integers(max(1, kernel[d] - 2 * padding[d]), 40)) for d in range(2))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel=kernel,
                stride=(draw(st.integers(1, 4)), draw(st.integers(1, 4))), padding=padding)


INF_MINUS_INF = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the reference's


@INF_MINUS_INF
@settings(max_examples=80, deadline=None)
@given(wide_windows(), st.sampled_from(OPS), st.sampled_from(["normal", "ties", "nan and inf"]),
       st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 2**32 - 1))
def test_pool_on_wide_maps_agrees_with_reference_on_any_threads(g, op, values, dtype, strided, seed):
    """Every path of the kernels, contiguous or strided input; the same bits on 1 and 2 threads and on reruns."""
    rng = np.random.default_rng(seed)
    x = special_values(rng, (g["shape"][0] * 2, *g["shape"][1:]), values).astype(dtype)
    x = x[::2] if strided else x[: g["shape"][0]]
    results = []
    for threads in (1, 2, 1, 2):
        cnnkit.set_num_threads(threads)
        results.append(pool_forward_backward(op, x, g, rng=np.random.default_rng(seed)))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_array_equal(a, b)
    if values == "normal":
        assert_pool_agrees(op, x, g["kernel"], g["stride"], g["padding"], rng)
    else:  # NaN and ties: max pooling exactly the reference's; average pooling's NaN where the reference's
        expected, ref_cache = getattr(reference, op + "_forward")(x, g["kernel"], g["stride"], g["padding"])
        out, dx = results[0]
        np.testing.assert_allclose(out, expected, **TOLERANCE[np.dtype(dtype).type])
        dout = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
        np.testing.assert_allclose(dx, getattr(reference, op + "_backward")(dout, ref_cache),
                                   **TOLERANCE[np.dtype(dtype).type])


def special_values(rng, shape, values):
    """Standard normals; with "ties" small integers; with "nan and inf" a fifth NaN, a fifth -inf, a tenth inf."""
    x = rng.integers(-2, 3, shape).astype(float) if values == "ties" else rng.standard_normal(shape)
    if values == "nan and inf":
        x[rng.random(shape) < 0.2] = np.nan
        x[rng.random(shape) < 0.2] = -np.inf
        x[rng.random(shape) < 0.1] = np.inf
    return x


def pool_forward_backward(op, x, g, rng):
    """(out, dx) of the fast op on x, with dout drawn from rng."""
    out, cache = getattr(fast, op + "_forward")(x, g["kernel"], g["stride"], g["padding"])
    dout = rng.standard_normal(out.shape).astype(x.dtype)
    return out, getattr(fast, op + "_backward")(dout, cache)


@INF_MINUS_INF
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(3, 5, 8, 8), (2, 3, 7, 7), (1, 4, 4, 4), (2, 2, 1, 1), (2, 3, 5, 9), (1, 2, 13, 3)])
def test_global_pooling_agrees_with_reference(op, shape, rng, dtype):
    """A window the size of the map (as GlobalAvgPool2d asks through functional), ties and NaN included."""
    for values in ["normal", "ties", "nan and inf"]:
        x = special_values(rng, shape, values).astype(dtype)
        window = dict(kernel=shape[2:], stride=shape[2:], padding=(0, 0))
        out, dx = pool_forward_backward(op, x, window, np.random.default_rng(1))
        expected, cache = getattr(reference, op + "_forward")(x, shape[2:], shape[2:], (0, 0))
        expected_dx = getattr(reference, op + "_backward")(
            np.random.default_rng(1).standard_normal(out.shape).astype(dtype), cache)
        if op == "max_pool2d":
            np.testing.assert_array_equal(out, expected)
            np.testing.assert_array_equal(dx, expected_dx)
        np.testing.assert_allclose(out, expected, **TOLERANCE[np.dtype(dtype).type])
        np.testing.assert_allclose(dx, expected_dx, **TOLERANCE[np.dtype(dtype).type])
        with cnnkit.use_backend("fast"):
            through_functional, _ = getattr(functional, op + "_forward")(x, shape[2:])
        np.testing.assert_array_equal(through_functional, out)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("x_shape, kernel, stride, padding", [
    ((2, 3, 7, 7), (7, 7), (7, 7), (0, 0)),  # global: one run per plane
    ((2, 2, 9, 10), (9, 3), (1, 2), (1, 1)),  # by windows, window rows of 3, padding
    ((1, 2, 6, 20), (3, 3), (1, 1), (1, 1)),  # by rows (18 outputs a row), overlapping
    ((1, 2, 11, 23), (2, 9), (2, 1), (0, 4)),  # by rows, window rows of 9 (lanes), padding
    ((1, 1, 3, 1030), (2, 3), (1, 2), (0, 1)),  # by rows, input rows longer than ROW_BUFFER (1024)
    ((2, 2, 8, 8), (2, 2), (2, 2), (0, 0)),  # the 2x2/2 loop
    ((2, 2, 7, 11), (3, 2), (3, 2), (0, 0)),  # windows that tile the plane, a row and a column beyond them
])
@pytest.mark.parametrize("threads", [1, 2])
def test_pool_backward_matches_numerical_gradient(op, x_shape, kernel, stride, padding, threads, rng):
    """float64 numerical gradients; distinct values, so that no max window has a tie within the step."""
    cnnkit.set_num_threads(threads)
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape) / np.prod(x_shape)
    report = check_gradients(lambda x: getattr(fast, op + "_forward")(x, kernel, stride, padding),
                             getattr(fast, op + "_backward"), {"x": x})
    assert report.worst < 1e-7, report


def assert_max_pool_2x2_exact(x, rng):
    """2x2 max pooling at stride 2: forward and dx exactly the reference's."""
    expected, ref_cache = reference.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    out, cache = fast.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(out, expected)
    dout = rng.standard_normal(out.shape).astype(x.dtype)
    np.testing.assert_array_equal(fast.max_pool2d_backward(dout, cache), reference.max_pool2d_backward(dout, ref_cache))


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 11), st.integers(2, 140)),
       st.sampled_from(["normal", "ties", "nan and inf"]), st.sampled_from([np.float32, np.float64]),
       st.sampled_from([1, 2]), st.integers(0, 2**32 - 1))
def test_max_pool_2x2_stride_2_agrees_with_reference(shape, values, dtype, threads, seed):
    """The loops of 2x2 windows at stride 2 (odd sizes, by segments and by rows): maxima, first-maximum
    indices (ties, the first NaN) and gradients exactly the reference's."""
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(threads)
    x = special_values(rng, shape, values).astype(dtype)
    assert_max_pool_2x2_exact(x, rng)


@pytest.mark.parametrize("values", ["ties", "nan and inf"])
@pytest.mark.parametrize("shape", [
    (1, 2, 1031, 5),  # two outputs a row: segments of 256 output rows (float32), the last one short
    (2, 3, 29, 29),  # 14 outputs a row, the last input row and column in no window
    (1, 1, 3, 2101),  # rows of more than one BLOCK of outputs (1050 a row)
])
def test_max_pool_2x2_stride_2_segments_and_blocks(shape, values, rng, dtype):
    """The 2x2/2 loops' segments of whole output rows (float32's on narrow maps) and blocks of long rows
    (cnnkit/_ext/pool.pyx, 5.): maxima, first-maximum indices and gradients exactly the reference's."""
    x = special_values(rng, shape, values).astype(dtype)
    assert_max_pool_2x2_exact(x, rng)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("values", ["ties", "nan and inf"])
@pytest.mark.parametrize("shape", [
    (600, 1, 4, 4),  # 128 planes a work item as one tall plane, the last item 88 (segments in both dtypes)
    (7, 50, 8, 8),  # 32 planes an item, the last 30 (float64 by rows)
    (33, 17, 6, 7),  # rows of 3 outputs, the last column in no window (float64's widest segments)
    (40, 13, 5, 4),  # an odd height: the last row in no window, a plane an item
])
def test_max_pool_2x2_stride_2_many_small_planes(shape, values, threads, rng, dtype):
    """Small planes taken many at a time as one tall plane (cnnkit/_ext/pool.pyx, 5.): each window's index is its
    own plane's, and backward scatters into as many planes per item; exactly the reference's."""
    cnnkit.set_num_threads(threads)
    x = special_values(rng, shape, values).astype(dtype)
    assert_max_pool_2x2_exact(x, rng)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [
    (600, 1, 4, 4),  # 128 planes a work item as one tall plane, the last item 88
    (7, 50, 10, 10),  # 20 planes an item, the last 10
    (33, 17, 6, 7),  # the last column in no window: zero gradient there
    (40, 13, 5, 4),  # an odd height: the last row in no window, a plane an item
    (1, 1, 2, 3),  # one window
])
def test_avg_pool_2x2_stride_2(shape, threads, rng, dtype):
    """2x2 windows at stride 2 on loops of their own (cnnkit/_ext/pool.pyx, 9.), small planes many at a time: the
    reference's averages and gradients, non-contiguous input included, and nothing past the last window."""
    cnnkit.set_num_threads(threads)
    x = rng.standard_normal(shape[:1] + (2 * shape[1],) + shape[2:]).astype(dtype)[:, ::2]
    assert_pool_agrees("avg_pool2d", x, (2, 2), (2, 2), (0, 0), rng)
    out, cache = fast.avg_pool2d_forward(x, 2, 2, 0)
    dx = fast.avg_pool2d_backward(np.ones_like(out), cache)
    assert np.all(dx[:, :, : 2 * out.shape[2], : 2 * out.shape[3]] == 0.25)
    assert not dx[:, :, 2 * out.shape[2]:].any() and not dx[:, :, :, 2 * out.shape[3]:].any()


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
    """NaN wins a max window (the first NaN takes the gradient) and makes an average NaN; windows of -inf give
    -inf. Outputs 4 and 6 wide: average pooling by windows and by rows (whose sums round otherwise)."""
    x = rng.standard_normal((1, 2, 5, 6))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = np.nan
    x[0, 1, :3, :3] = -np.inf
    for padding in [(0, 0), (1, 1)]:
        expected, ref_cache = getattr(reference, op + "_forward")(x, (3, 3), (1, 1), padding)
        out, cache = getattr(fast, op + "_forward")(x, (3, 3), (1, 1), padding)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
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
