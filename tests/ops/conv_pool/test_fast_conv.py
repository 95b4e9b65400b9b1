"""The fast conv2d agrees with the reference, forward and every gradient, on any window."""
import contextlib

import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info, threadpool_limits

import cnnkit
from cnnkit import _runtime, fast, reference
from cnnkit._ext import conv as conv_kernels
from cnnkit._ext._drivers import workspace
from cnnkit.fast import _threads

pytestmark = pytest.mark.usefixtures("tiny_grains")


@st.composite
def windows(draw, max_kernel=4, max_padding=2):
    """A random window over a random (N, C, H, W) input, with dtype and kernel thread count."""
    kernel = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    padding = draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding))
    h, w = (draw(st.integers(max(1, kernel[d] - 2 * padding[d]), 9)) for d in range(2))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), kernel=kernel,
                stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=padding,
                dtype=draw(st.sampled_from([np.float32, np.float64])), threads=draw(st.sampled_from([1, 2])))


def conv_arrays(rng, shape, filters, kernel, dtype):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,) of standard normals in `dtype`."""
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((filters, shape[1]) + tuple(kernel)).astype(dtype)
    return x, w, rng.standard_normal(filters).astype(dtype)


def assert_conv_agrees(x, w, b, stride, padding, rng, relu=False):
    """Fast forward and (dx, dw, db) match the reference's, in the input dtype.

    relu: of conv2d_relu instead, which must also give the fast conv2d then relu bit for bit.
    Without the input's gradient (input_grad=False), dw and db are the same bits.
    """
    op = "conv2d_relu" if relu else "conv2d"
    expected, ref_cache = getattr(reference, f"{op}_forward")(x, w, b, stride, padding)
    out, cache = getattr(fast, f"{op}_forward")(x, w, b, stride, padding)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    grads = getattr(fast, f"{op}_backward")(dout, cache)
    tolerance = TOLERANCE[np.dtype(x.dtype).type]
    np.testing.assert_allclose(out, expected, **tolerance)
    for got, want in zip(grads, getattr(reference, f"{op}_backward")(dout, ref_cache)):
        assert got.dtype == x.dtype
        np.testing.assert_allclose(got, want, **tolerance)
    assert out.dtype == x.dtype
    dx, *weight_grads = getattr(fast, f"{op}_backward")(dout, cache, input_grad=False)
    assert dx is None and all(np.array_equal(got, want) for got, want in zip(weight_grads, grads[1:]))
    if relu:
        conv_out, conv_cache = fast.conv2d_forward(x, w, b, stride, padding)
        relu_out, relu_cache = fast.relu_forward(conv_out)
        np.testing.assert_array_equal(out, relu_out)
        for got, want in zip(grads, fast.conv2d_backward(fast.relu_backward(dout, relu_cache), conv_cache)):
            np.testing.assert_array_equal(got, want)


@contextlib.contextmanager
def band_bytes(size):
    """Cut every image into bands of as few output rows as fit in `size` bytes (one row at least)."""
    kept = conv_kernels.BAND_BYTES
    conv_kernels.BAND_BYTES = size
    try:
        yield
    finally:
        conv_kernels.BAND_BYTES = kept


@contextlib.contextmanager
def whole_batch(positions_per_filter):
    """The batch is one work item where N*P <= positions_per_filter * F (cnnkit/_ext/conv.pyx, 9.), a pointwise
    convolution's backward included (7.)."""
    names = "BATCH_POSITIONS_PER_FILTER", "POINTWISE_BATCH_POSITIONS_PER_FILTER"
    kept = [getattr(conv_kernels, name) for name in names]
    for name in names:
        setattr(conv_kernels, name, positions_per_filter)
    try:
        yield
    finally:
        for name, value in zip(names, kept):
            setattr(conv_kernels, name, value)


@settings(max_examples=160, deadline=None)
@given(windows(), st.integers(1, 4), st.sampled_from([1, 600, conv_kernels.BAND_BYTES]),
       st.sampled_from([0, conv_kernels.BATCH_POSITIONS_PER_FILTER, 10**6]), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_agrees_with_reference(g, filters, band_size, positions_per_filter, relu, seed):
    """Any window, cut into bands of one output row, a few rows or whole images, or the whole batch as one
    item (never, by the rule, always); conv2d or conv2d_relu."""
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(g["threads"])
    x, w, b = conv_arrays(rng, g["shape"], filters, g["kernel"], g["dtype"])
    with band_bytes(band_size), whole_batch(positions_per_filter):
        assert_conv_agrees(x, w, b, g["stride"], g["padding"], rng, relu)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((3, 5, 6, 7), (1, 1), (1, 1), (0, 0)),  # pointwise: no im2col
    ((2, 3, 7, 8), (1, 1), (2, 1), (0, 1)),  # 1x1 that still needs im2col
    ((1, 2, 9, 9), (3, 3), (1, 1), (1, 1)),  # fewer images than threads
    ((3, 2, 4, 5), (2, 3), (1, 2), (3, 4)),  # padding larger than the kernel
    ((1, 3, 1, 2), (1, 1), (3, 3), (4, 0)),  # bands of padding rows only, below and above
    ((2, 3, 7, 6), (5, 3), (1, 1), (2, 1)),  # output as wide as the input: one run per kernel offset
    ((2, 2, 3, 4), (3, 5), (1, 1), (3, 2)),  # as wide, padding rows above and below
    ((2, 3, 32, 32), (3, 3), (1, 1), (1, 1)),  # rows of 4 or 8 KiB: the buffers' rows get padded
    ((2, 3, 16, 15), (3, 3), (2, 2), (1, 1)),  # strided, 64 outputs: the largest map on an index table
    ((2, 3, 17, 15), (3, 3), (2, 2), (1, 1)),  # 72 outputs: the rectangles again
])
@pytest.mark.parametrize("band_size", [600, conv_kernels.BAND_BYTES])
def test_conv_special_windows(shape, kernel, stride, padding, threads, band_size, dtype, rng):
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, shape, 4, kernel, dtype)
    with band_bytes(band_size):
        assert_conv_agrees(x, w, b, stride, padding, rng)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, filters", [
    ((16, 6, 2, 3), 16),  # N*P = 96 <= 8 * 16: the backward on the whole batch, the forward by image
    ((5, 7, 1, 1), 3),  # 5 <= 8 * 3, a single position an image
    ((16, 6, 2, 3), 8),  # 96 > 8 * 8: by image both ways
])
def test_pointwise_backward_of_small_maps(shape, filters, relu, dtype, rng):
    """A pointwise convolution's backward on small maps takes the whole batch as one item (cnnkit/_ext/conv.pyx,
    7.): the reference's gradients, and the same dw and db bits at 1 and 2 threads."""
    x, w, b = conv_arrays(rng, shape, filters, (1, 1), dtype)
    grads = []
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        assert_conv_agrees(x, w, b, (1, 1), (0, 0), np.random.default_rng(0), relu)
        op = "conv2d_relu" if relu else "conv2d"
        out, cache = getattr(fast, f"{op}_forward")(x, w, b, (1, 1), (0, 0))
        grads.append(getattr(fast, f"{op}_backward")(np.ones_like(out), cache))
    assert all(np.array_equal(one, two) for one, two in zip(grads[0][1:], grads[1][1:]))


@pytest.mark.parametrize("winograd", [False, True])
def test_conv_relu_keeps_nan_and_passes_no_gradient_through_it(winograd, request, rng, dtype):
    if winograd:
        request.getfixturevalue("winograd_everywhere")
    x, w, b = conv_arrays(rng, (2, 2, 6, 6), 3, (3, 3), dtype)
    x[0, 0, 2, 3] = np.nan
    out, cache = fast.conv2d_relu_forward(x, w, b, (1, 1), (1, 1))
    expected, ref_cache = reference.conv2d_relu_forward(x, w, b, (1, 1), (1, 1))
    assert np.isnan(out).sum() == 3 * 9 and np.array_equal(np.isnan(out), np.isnan(expected))
    dout = np.ones_like(out)
    dx, dw, db = fast.conv2d_relu_backward(dout, cache)
    want_dx, want_dw, want_db = reference.conv2d_relu_backward(dout, ref_cache)
    np.testing.assert_allclose(db, want_db, **TOLERANCE[dtype])  # the NaN outputs pass no gradient
    assert np.array_equal(np.isnan(dw), np.isnan(want_dw)) and np.array_equal(np.isnan(dx), np.isnan(want_dx))


def test_conv_accepts_non_contiguous_read_only_input(rng, dtype):
    x, w, b = conv_arrays(rng, (2, 6, 10, 12), 8, (3, 2), dtype)
    x, w, b = x[:, ::2, ::2, 1::2], w[::2, ::2], b[::2]
    for array in (x, w, b):
        array.flags.writeable = False
    assert_conv_agrees(x, w, b, (2, 1), (1, 0), rng)
    out, cache = fast.conv2d_forward(x, w, b, (2, 1), (1, 0))
    dout = np.asfortranarray(np.ones_like(out))
    dout.flags.writeable = False
    expected = reference.conv2d_backward(np.ones_like(out), reference.conv2d_forward(x, w, b, (2, 1), (1, 0))[1])
    for got, want in zip(fast.conv2d_backward(dout, cache), expected):
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype])


def test_conv_cache_keeps_no_columns(rng):
    """The cache holds the inputs (the caller's own arrays), not an N*C*KH*KW*OH*OW buffer."""
    x, w, b = conv_arrays(rng, (4, 3, 16, 16), 8, (3, 3), np.float32)
    _, cache = fast.conv2d_forward(x, w, b, (1, 1), (1, 1))
    held = [a for a in cache if isinstance(a, np.ndarray)]
    assert sum(a.nbytes for a in held) == x.nbytes + w.nbytes + b.nbytes
    assert all(any(np.shares_memory(a, given) for given in (x, w, b)) for a in held)


@pytest.mark.parametrize("size", [1, 7, 100_003])
def test_workspace_starts_a_cache_line_and_is_kept(size, dtype):
    """The kernels' buffers start cache lines (their rows are whole lines apart), and a call reuses them."""
    buffer = workspace(dtype, size)
    assert buffer.dtype == dtype and len(buffer) >= size and buffer.ctypes.data % 64 == 0
    buffer[:] = 0
    assert workspace(dtype, size) is buffer
    grown = workspace(dtype, len(buffer) + 1)
    assert len(grown) > len(buffer) and grown.ctypes.data % 64 == 0


def test_conv_layers_interleaved_share_the_kept_weight_matrix(rng, dtype):
    """Each call writes [w | b] into one kept array (no new one per call): two layers' forwards, then their
    backwards in reverse, as in a network, each agree with the reference."""
    layers = [conv_arrays(rng, (2, 3, 9, 8), 5, (3, 2), dtype), conv_arrays(rng, (2, 5, 7, 7), 4, (2, 2), dtype)]
    runs = [tuple(op.conv2d_forward(*arrays, (1, 1), (1, 0)) for op in (fast, reference)) for arrays in layers]
    kept = workspace(dtype, 1, slot="weights")
    assert len(kept) >= max(w.shape[0] * (w[0].size + 1) for _, w, _ in layers)
    for (out, cache), (expected, ref_cache) in reversed(runs):
        np.testing.assert_allclose(out, expected, **TOLERANCE[dtype])
        dout = rng.standard_normal(out.shape).astype(dtype)
        for got, want in zip(fast.conv2d_backward(dout, cache), reference.conv2d_backward(dout, ref_cache)):
            np.testing.assert_allclose(got, want, **TOLERANCE[dtype])
    assert workspace(dtype, 1, slot="weights") is kept


def blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("work, kernel_threads", [
    (10, 1),  # small work: one thread
    (10**9, 2),  # bands of one image feed every thread
])
def test_conv_threads_with_blas_on_one_thread(work, kernel_threads, monkeypatch):
    monkeypatch.setattr(_threads, "CONV_GRAIN", 100)
    cnnkit.set_num_threads(2)
    with _runtime.single_threaded_blas():
        assert _threads.kernel_threads(work, _threads.CONV_GRAIN) == kernel_threads
        assert set(blas_threads()) == {1}


def test_single_threaded_blas_nests_and_restores():
    """Every BLAS library (numpy's and scipy's) at one thread until the outermost scope closes."""
    with threadpool_limits(limits=2, user_api="blas"):
        assert len(blas_threads()) >= 2 and set(blas_threads()) == {2}
        with _runtime.single_threaded_blas():
            with _runtime.single_threaded_blas():
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {2}


def test_pool_threads_need_a_grain_of_work(monkeypatch):
    monkeypatch.setattr(_threads, "POOL_GRAIN", 100)
    cnnkit.set_num_threads(2)
    assert [_threads.pool_threads(n) for n in (0, 199, 200, 10**6)] == [1, 1, 2, 2]


@pytest.mark.parametrize("size", [600, conv_kernels.BAND_BYTES])
def test_conv_gradients_are_reproducible(rng, size):
    """Fixed groups of images summed in a fixed order: bitwise equal dw, db on 2 threads and on 1."""
    x, w, b = conv_arrays(rng, (16, 3, 6, 6), 4, (3, 3), np.float32)
    with band_bytes(size):
        out, cache = fast.conv2d_forward(x, w, b, (1, 1), (1, 1))
        dout = rng.standard_normal(out.shape).astype(np.float32)
        cnnkit.set_num_threads(2)
        first = fast.conv2d_backward(dout, cache)
        for threads in [2] * 10 + [1]:
            cnnkit.set_num_threads(threads)
            assert all(np.array_equal(a, b) for a, b in zip(fast.conv2d_backward(dout, cache), first))


def test_conv_of_an_empty_batch(dtype):
    x, w, b = np.zeros((0, 3, 5, 5), dtype), np.ones((4, 3, 3, 3), dtype), np.ones(4, dtype)
    out, cache = fast.conv2d_forward(x, w, b, (1, 1), (1, 1))
    dx, dw, db = fast.conv2d_backward(np.zeros_like(out), cache)
    assert out.shape == (0, 4, 5, 5) and dx.shape == x.shape
    assert not dw.any() and not db.any() and dw.dtype == db.dtype == dtype


def test_conv_restores_blas_threads(rng):
    before = blas_threads()
    cnnkit.set_num_threads(2)
    x, w, b = conv_arrays(rng, (3, 2, 6, 6), 3, (3, 3), np.float64)
    out, cache = fast.conv2d_forward(x, w, b, (1, 1), (0, 0))
    fast.conv2d_backward(out, cache)
    assert blas_threads() == before


@pytest.mark.parametrize("call, error, message", [
    (lambda x, w, b: fast.conv2d_forward(x[0], w, b, (1, 1), (0, 0)), ValueError, r"4-D \(N, C, H, W\)"),
    (lambda x, w, b: fast.conv2d_forward(x, w[0], b, (1, 1), (0, 0)), ValueError, r"4-D \(F, C, KH, KW\)"),
    (lambda x, w, b: fast.conv2d_forward(x, w, b.astype(np.float32), (1, 1), (0, 0)), TypeError, "float32"),
    (lambda x, w, b: fast.conv2d_forward(x.astype(int), w, b, (1, 1), (0, 0)), TypeError, "int64"),
    (lambda x, w, b: fast.conv2d_forward(x[:, :2], w, b, (1, 1), (0, 0)), ValueError, "do not match"),
    (lambda x, w, b: fast.conv2d_forward(x, w, b[:2], (1, 1), (0, 0)), ValueError, "do not match"),
    (lambda x, w, b: fast.conv2d_forward(x, w, b, (0, 1), (0, 0)), ValueError, "stride must be >= 1"),
    (lambda x, w, b: fast.conv2d_forward(x[:, :, :2], w, b, (1, 1), (0, 0)), ValueError, "larger than the padded"),
    (lambda x, w, b: fast.conv2d_backward(np.ones((2, 4, 3, 3)), fast.conv2d_forward(x, w, b, (1, 1), (0, 0))[1]),
     ValueError, r"dout must have shape \(2, 4, 4, 4\)"),
    (lambda x, w, b: fast.conv2d_backward(np.ones((2, 4, 4, 4), np.float32),
                                          fast.conv2d_forward(x, w, b, (1, 1), (0, 0))[1]), TypeError, "float64"),
    (lambda x, w, b: fast.conv2d_relu_forward(x[:, :2], w, b, (1, 1), (0, 0)), ValueError, "do not match"),
    (lambda x, w, b: conv_kernels.conv_backward(x, np.zeros((4, 19)), np.zeros((2, 4, 20)), np.empty_like(x),
                                                np.zeros((4, 19)), 3, 2, 1, 1, 0, 0, 1, np.zeros((2, 4, 19))),
     ValueError, r"out must have shape \(2, 4, 20\)"),
])
def test_conv_bad_input_raises(call, error, message):
    x, w, b = np.zeros((2, 3, 6, 6)), np.zeros((4, 3, 3, 3)), np.zeros(4)
    with pytest.raises(error, match=message):
        call(x, w, b)
