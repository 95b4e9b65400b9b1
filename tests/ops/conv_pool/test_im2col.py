import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import fast, reference
from cnnkit import functional as F


@st.composite
def geometries(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), h=h, w=w,
                kernel=(kh, kw), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=(ph, pw),
                dtype=draw(st.sampled_from([np.float32, np.float64])), threads=draw(st.sampled_from([1, 2])))


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1))
def test_fast_agrees_with_reference_and_is_adjoint(g, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g["n"], g["c"], g["h"], g["w"])).astype(g["dtype"])
    args = g["kernel"], g["stride"], g["padding"]
    cnnkit.set_num_threads(g["threads"])
    cols = reference.im2col(x, *args)
    np.testing.assert_array_equal(fast.im2col(x, *args), cols)
    y = rng.standard_normal(cols.shape).astype(g["dtype"])
    back = reference.col2im(y, x.shape, *args)
    np.testing.assert_allclose(fast.col2im(y, x.shape, *args), back, **TOLERANCE[g["dtype"]])
    assert back.dtype == cols.dtype == g["dtype"]
    # <im2col(x), y> == <x, col2im(y)>, up to rounding on the size of the terms (the sum may cancel)
    scale = np.vdot(np.abs(cols.astype(np.float64)), np.abs(y))
    np.testing.assert_allclose(np.vdot(cols.astype(np.float64), y), np.vdot(x.astype(np.float64), back), rtol=0,
                               atol=scale * (1e-6 if g["dtype"] == np.float32 else 1e-13))


@pytest.mark.parametrize("kernel, padding", [((3, 3), (1, 1)), ((5, 1), (2, 0)), ((1, 3), (3, 1)), ((3, 5), (0, 2))])
def test_windows_as_wide_as_the_input(kernel, padding, rng, dtype):
    """Stride 1 with OW == W: each kernel offset's rows are copied and added in one run."""
    x = rng.standard_normal((2, 3, 4, 6)).astype(dtype)
    args = kernel, (1, 1), padding
    cols = fast.im2col(x, *args)
    np.testing.assert_array_equal(cols, reference.im2col(x, *args))
    np.testing.assert_allclose(fast.col2im(cols, x.shape, *args), reference.col2im(cols, x.shape, *args),
                               **TOLERANCE[dtype])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((2, 3, 14, 14), (5, 5), (1, 1), (0, 0)),  # LeNet's second conv: a 5x5 window on a 10x10 output
    ((1, 2, 13, 11), (4, 3), (2, 3), (2, 1)),  # two phases of rows, a strided column, uneven padding
    ((2, 2, 9, 30), (7, 2), (3, 1), (3, 0)),  # rows of three phases, one of them read once only
    ((1, 1, 6, 20), (3, 3), (1, 1), (4, 0)),  # padding taller than the window: rows of zeros around
])
def test_narrow_maps_go_kernel_column_by_kernel_column(shape, kernel, stride, padding, threads, rng, dtype):
    """Windows at least twice as tall as their stride on narrow maps gather each kernel column's input rows once
    (cnnkit/_ext/_im2col.pxd): im2col exact, col2im the reference's sums, non-contiguous input."""
    from cnnkit._ext import im2col as kernels

    assert kernels.gathers_by_kernel_columns(shape, *kernel, *stride, *padding)
    cnnkit.set_num_threads(threads)
    x = np.ascontiguousarray(rng.standard_normal(shape).astype(dtype)[:, ::-1])[:, ::-1]
    cols = fast.im2col(x, kernel, stride, padding)
    np.testing.assert_array_equal(cols, reference.im2col(x, kernel, stride, padding))
    y = rng.standard_normal(cols.shape).astype(dtype)
    np.testing.assert_allclose(fast.col2im(y, shape, kernel, stride, padding),
                               reference.col2im(y, shape, kernel, stride, padding), **TOLERANCE[dtype])


def test_kernel_columns_only_where_they_pay():
    """Not for windows less than twice as tall as the stride, rows of one run already, or wide maps."""
    from cnnkit._ext import im2col as kernels

    assert not kernels.gathers_by_kernel_columns((1, 1, 16, 16), 3, 3, 2, 2, 1, 1)  # 3x3 at stride 2
    assert not kernels.gathers_by_kernel_columns((1, 1, 16, 16), 5, 5, 1, 1, 2, 2)  # "same": one run
    assert not kernels.gathers_by_kernel_columns((1, 1, 16, 16), 1, 5, 1, 1, 0, 0)  # one kernel row
    assert not kernels.gathers_by_kernel_columns((1, 1, 40, 40), 5, 5, 1, 1, 0, 0)  # 36 outputs a row


def test_layout_matches_weight_reshape(backend, rng):
    """conv as w.reshape(F, -1) @ cols[n] equals the direct sum."""
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 2, 3))
    cols = F.im2col(x, (2, 3), stride=(2, 1), padding=1)
    out = (w.reshape(4, -1) @ cols).reshape(2, 4, 3, 6)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    direct = np.array([[[[np.sum(xp[n, :, 2 * i:2 * i + 2, j:j + 3] * w[f]) for j in range(6)] for i in range(3)]
                        for f in range(4)] for n in range(2)])
    np.testing.assert_allclose(out, direct, rtol=1e-12)


def test_non_contiguous_and_read_only_input(backend, rng, dtype):
    x = rng.standard_normal((2, 3, 8, 10)).astype(dtype)[:, :, ::2, 1::2]
    x.flags.writeable = False
    expected = reference.im2col(np.ascontiguousarray(x), (3, 2), (1, 1), (1, 0))
    np.testing.assert_array_equal(F.im2col(x, (3, 2), padding=(1, 0)), expected)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: F.im2col(x[0], 3), ValueError, r"4-D \(N, C, H, W\)"),
    (lambda x: F.im2col(x.astype(np.int64), 3), TypeError, "int64"),
    (lambda x: F.im2col(x, 7), ValueError, "larger than the padded input"),
    (lambda x: F.im2col(x, 3, stride=0), ValueError, "stride must be >= 1"),
    (lambda x: F.im2col(x, 3, padding=-1), ValueError, "padding must be >= 0"),
    (lambda x: F.im2col(x, float("nan")), ValueError, "kernel_size must be an int"),
    (lambda x: F.im2col(x, (3, 3, 3)), ValueError, "pair of ints"),
    (lambda x: F.col2im(np.zeros((2, 5, 16)), x.shape, 3), ValueError, r"cols must have shape \(2, 27, 16\)"),
])
def test_bad_input(call, error, message):
    x = np.zeros((2, 3, 6, 6))
    with pytest.raises(error, match=message):
        call(x)
