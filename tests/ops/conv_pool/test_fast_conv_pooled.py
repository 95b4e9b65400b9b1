"""2x2 max pooling fused into the im2col convolution's output pass (cnnkit/_ext/conv.pyx, 11.): the
unfused convolution, ReLU and pooling bit for bit, on every work item and window."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_conv import band_bytes, conv_arrays, whole_batch, windows
from test_fast_conv_paths import FILTERS, PATHS

import cnnkit
from cnnkit import fast
from cnnkit._ext import conv as conv_kernels
from cnnkit.fast import conv as fast_conv
from cnnkit.fast import inference as steps
from cnnkit.fast._checks import checked_window
from cnnkit.fast.conv import _weights_with_bias

pytestmark = pytest.mark.usefixtures("tiny_grains")


def unfused(x, w, b, stride, padding, relu):
    """The fast conv2d (its ReLU when relu), then the fast 2x2 max pooling at stride 2 (nothing below 2x2)."""
    out = (fast.conv2d_relu_forward if relu else fast.conv2d_forward)(x, w, b, stride, padding)[0]
    if min(out.shape[2:]) < 2:
        return np.empty(out.shape[:2] + tuple(size // 2 for size in out.shape[2:]), out.dtype)
    return fast.max_pool2d_forward(out, (2, 2), (2, 2), (0, 0))[0]


def fused(x, w, b, stride, padding, relu, threads):
    """conv_forward with pool=True, straight on the kernel."""
    n, f, (kh, kw) = len(x), len(w), w.shape[2:]
    oh, ow = checked_window(x.shape, (kh, kw), stride, padding)[3]
    out = np.full((n, f, oh // 2, ow // 2), 7, x.dtype)
    conv_kernels.conv_forward(x, _weights_with_bias(w, b), out.reshape(n, f, -1), kh, kw, *stride, *padding,
                              threads, relu, True)
    return out


@pytest.mark.usefixtures("no_direct")  # the unfused convolution on im2col (or Winograd) too
@settings(max_examples=160, deadline=None)
@given(windows(), st.integers(1, 5), st.sampled_from([1, 600, conv_kernels.BAND_BYTES]),
       st.sampled_from([0, conv_kernels.BATCH_POSITIONS_PER_FILTER, 10**6]), st.booleans(), st.integers(0, 2),
       st.integers(0, 2**32 - 1))
def test_fused_pooling_equals_the_unfused_ops(g, filters, band_size, positions_per_filter, relu, nans, seed):
    """Any window (not pointwise), in bands of one row (made two), a few rows or whole images, or the whole
    batch as one item; with NaNs in the input, which reach whole windows."""
    if g["kernel"] == g["stride"] == (1, 1) and g["padding"] == (0, 0):
        g["padding"] = (1, 0)
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(g["threads"])
    x, w, b = conv_arrays(rng, g["shape"], filters, g["kernel"], g["dtype"])
    x.reshape(-1)[rng.integers(0, x.size, nans)] = np.nan
    with band_bytes(band_size), whole_batch(positions_per_filter):
        np.testing.assert_array_equal(fused(x, w, b, g["stride"], g["padding"], relu, g["threads"]),
                                      unfused(x, w, b, g["stride"], g["padding"], relu))


@pytest.mark.usefixtures("no_direct")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape, kernel, stride, padding, size, item", [p for p in PATHS if p[1:4] != ((1, 1),
                                                                                                       (1, 1), (0, 0))])
def test_every_work_item_pools_as_the_unfused_ops(shape, kernel, stride, padding, size, item, threads, dtype, rng):
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, shape, FILTERS, kernel, dtype)
    with band_bytes(size or conv_kernels.BAND_BYTES):
        for relu in (False, True):
            np.testing.assert_array_equal(fused(x, w, b, stride, padding, relu, threads),
                                          unfused(x, w, b, stride, padding, relu))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, filters, kernel, stride, padding", [
    ((1, 1, 28, 28), 16, (3, 3), (1, 1), (1, 1)),  # one image: thin bands, 14 rows each
    ((1, 16, 14, 14), 32, (3, 3), (1, 1), (1, 1)),  # one image: 14 rows in bands of 8 and 6, not 7 and 7
    ((3, 2, 9, 7), 4, (3, 3), (1, 1), (0, 0)),  # odd output height and width: the last row and column dropped
    ((2, 3, 5, 6), 8, (1, 1), (1, 1), (0, 0)),  # pointwise: pooled in a step after the convolution
    ((2, 16, 8, 8), 16, (3, 3), (1, 1), (1, 1)),  # Winograd (made so for this shape below): likewise
])
def test_plan_step_pools_as_the_unfused_ops(shape, filters, kernel, stride, padding, threads, dtype, rng,
                                            request):
    if shape == (2, 16, 8, 8):
        request.getfixturevalue("winograd_everywhere")
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, shape, filters, kernel, dtype)
    for relu in (False, True):
        step = steps.conv2d(x.shape, w.shape, x.dtype, stride, padding, relu, pool=True)
        with steps.single_threaded_blas():
            out = step(x, w, b)
        np.testing.assert_array_equal(out, unfused(x, w, b, stride, padding, relu))


def test_fused_pooling_checks_its_output_and_path():
    x, wb = np.zeros((2, 3, 6, 6)), np.zeros((4, 3 * 9 + 1))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 4, 9\)"):
        conv_kernels.conv_forward(x, wb, np.zeros((2, 4, 36)), 3, 3, 1, 1, 1, 1, 1, False, True)
    with pytest.raises(ValueError, match="not a pointwise one"):
        conv_kernels.conv_forward(x, np.zeros((4, 4)), np.zeros((2, 4, 9)), 1, 1, 1, 1, 0, 0, 1, False, True)


@pytest.mark.parametrize("algorithm, kernel, padding", [("winograd", (3, 3), (1, 1)), ("im2col", (1, 1), (0, 0))])
def test_run_forward_refuses_pooling_an_algorithm_does_not_fuse(algorithm, kernel, padding):
    x, w, b = np.zeros((2, 16, 6, 6)), np.zeros((16, 16, *kernel)), np.zeros(16)
    with pytest.raises(ValueError, match=f"the {algorithm} forward of this window pools in a step of its own"):
        fast_conv.run_forward(algorithm, x, w, b, np.zeros((2, 16, 3, 3)), kernel, (1, 1), padding, 1, False, True)
