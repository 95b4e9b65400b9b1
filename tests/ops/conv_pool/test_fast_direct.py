"""The direct convolution (cnnkit/_ext/direct_avx512.pyx): the reference's forward on any stride-1 window, the
same bits at any thread count, and the shapes cnnkit.fast.conv gives it. Skipped where it is not built or the
CPU has no AVX-512."""
import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_conv import assert_conv_agrees, conv_arrays

import cnnkit
from cnnkit import fast, reference
from cnnkit.fast import conv as fast_conv
from cnnkit.gradcheck import check_gradients

pytestmark = [pytest.mark.usefixtures("tiny_grains"),
              pytest.mark.skipif(fast_conv._direct_kernels is None, reason="no AVX-512 build of the direct kernel")]
direct = fast_conv._direct_kernels
LANES = 16 if direct is None else direct.MIN_WIDTH  # a vector of floats: the narrowest output the kernel takes


@st.composite
def problems(draw):
    """A stride-1 window over (N, C, H, W) whose output is at least a vector wide, with F, dtype and threads."""
    kernel = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    padding = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    out_hw = draw(st.integers(1, 7)), draw(st.integers(LANES, 2 * LANES + 3))
    h, w = (max(1, out_hw[d] + kernel[d] - 1 - 2 * padding[d]) for d in range(2))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w), kernel=kernel, padding=padding,
                filters=draw(st.integers(1, 19)), dtype=draw(st.sampled_from([np.float32, np.float64])),
                threads=draw(st.sampled_from([1, 2, 3])), relu=draw(st.booleans()), pool=draw(st.booleans()))


def run(x, w, b, padding, threads, relu=False, pool=False):
    """direct_forward's out (N, F, OH, OW), or pooled (N, F, OH // 2, OW // 2), into an array of NaNs."""
    out_hw = [x.shape[2 + d] + 2 * padding[d] - w.shape[2 + d] + 1 for d in range(2)]
    out = np.full((len(x), len(w), *(size // (1 + pool) for size in out_hw)), np.nan, x.dtype)
    direct.direct_forward(x, w, b, out, *padding, threads, relu, pool)
    return out


def expected(x, w, b, padding, relu=False, pool=False):
    """The reference's conv2d_forward (conv2d_relu_forward with relu), then 2x2 max pooling at stride 2 with pool."""
    out = (reference.conv2d_relu_forward if relu else reference.conv2d_forward)(x, w, b, (1, 1), padding)[0]
    return reference.max_pool2d_forward(out, (2, 2), (2, 2), (0, 0))[0] if pool else out


@settings(max_examples=150, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_direct_agrees_with_reference(p, seed):
    """Any F (blocks of 8 and what is left), kernel, padding (beyond the kernel too), width (whole vectors or an
    overlapping last one), both dtypes, with and without its ReLU, pooled or not (odd sizes, bands of an image cut
    for the threads); every output written."""
    rng = np.random.default_rng(seed)
    x, w, b = conv_arrays(rng, p["shape"], p["filters"], p["kernel"], p["dtype"])
    out_hw = [x.shape[2 + d] + 2 * p["padding"][d] - p["kernel"][d] + 1 for d in range(2)]
    if out_hw[1] < LANES or (p["pool"] and out_hw[0] < 2):
        return  # the padding alone made the input wide enough: the output is narrower than a vector; no window
    options = dict(relu=p["relu"], pool=p["pool"])
    np.testing.assert_allclose(run(x, w, b, p["padding"], p["threads"], **options),
                               expected(x, w, b, p["padding"], **options), **TOLERANCE[p["dtype"]])


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("shape, filters, kernel, padding", [
    ((3, 3, 20, 37), 19, (3, 5), (1, 2)),  # three blocks, the last of 3 filters; rows of 37: two vectors and a part
    ((1, 2, 41, 16), 8, (5, 1), (2, 0)),  # one image: cut into bands for the threads; an odd row left
    ((2, 1, 64, 64), 24, (7, 7), (3, 3)),  # many bands an image
])
def test_direct_gives_the_same_bits_at_any_thread_count(shape, filters, kernel, padding, pool, dtype, rng):
    x, w, b = conv_arrays(rng, shape, filters, kernel, dtype)
    once = run(x, w, b, padding, 1, pool=pool)
    for threads in (1, 2, 3):
        assert np.array_equal(run(x, w, b, padding, threads, pool=pool), once)
    np.testing.assert_allclose(once, expected(x, w, b, padding, pool=pool), **TOLERANCE[dtype])


@pytest.mark.parametrize("filters, kernel, stride, padding, width, path", [
    (fast_conv.DIRECT_MIN_FILTERS, (5, 5), (1, 1), (2, 2), LANES, "direct"),
    (fast_conv.DIRECT_MIN_FILTERS - 1, (5, 5), (1, 1), (2, 2), LANES, "im2col"),  # too few filters
    (8, (5, 5), (1, 1), (2, 2), LANES - 1, "im2col"),  # narrower than a vector
    (8, (1, 7), (1, 1), (0, 3), LANES + 1, "im2col"),  # 17 outputs in 32 lanes: too few of them used
    (8, (1, 7), (1, 1), (0, 3), LANES + LANES // 2, "direct"),  # 24 of 32
    (8, (3, 3), (2, 2), (1, 1), 2 * LANES, "im2col"),  # strided
    (8, (1, 1), (1, 1), (0, 0), LANES, "im2col"),  # pointwise: a plain GEMM
    (8, (1, 1), (1, 1), (1, 1), LANES, "direct"),  # 1x1 with padding
    (fast_conv.DIRECT_FEW_FILTERS + 1, (5, 5), (1, 1), (2, 2), LANES, "direct"),  # 75 taps: many filters, too
    (fast_conv.DIRECT_FEW_FILTERS, (1, 9), (1, 1), (0, 4), LANES, "direct"),  # more than the most taps: few filters
    (fast_conv.DIRECT_FEW_FILTERS + 1, (1, 9), (1, 1), (0, 4), LANES, "im2col"),  # but not many
    (fast_conv.WINOGRAD_MIN_CHANNELS, (3, 3), (1, 1), (1, 1), 2 * LANES, "winograd"),  # Winograd's shapes stay its
])
def test_dispatch_gives_direct_stride_1_rows_of_a_vector_and_enough_filters(filters, kernel, stride, padding,
                                                                            width, path, rng):
    """Then conv2d and conv2d_relu agree with the reference, forward and backward (im2col's, or Winograd's)."""
    channels = filters if path == "winograd" else 3 if kernel != (1, 9) else fast_conv.DIRECT_MAX_TAPS // 9 + 1
    shape = (40, channels, 6, (width - 1) * stride[1] + kernel[1] - 2 * padding[1])
    x, w, b = conv_arrays(rng, shape, filters, kernel, np.float64)
    x = np.ascontiguousarray(x[:, ::-1])[:, ::-1]  # non-contiguous input
    out_hw = fast.conv2d_forward(x, w, b, stride, padding)[0].shape[2:]
    forward = {"direct": direct.direct_forward, "winograd": fast_conv._winograd_kernels.winograd_forward}.get(path)
    assert out_hw[1] == width and fast_conv.forward_kernel(x.shape, w.shape, kernel, stride, padding, out_hw) is forward
    for relu in (False, True):
        assert_conv_agrees(x, w, b, stride, padding, rng, relu)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv_on_the_direct_path_matches_numerical_gradients(threads, rng):
    """Its forward, then im2col's backward: the reference's gradients in float64 differences."""
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, (2, 2, 5, 15), 9, (3, 4), np.float64)
    assert fast_conv.forward_kernel(x.shape, w.shape, (3, 4), (1, 1), (1, 2), (5, 16)) is direct.direct_forward
    report = check_gradients(lambda x, w, b: fast.conv2d_forward(x, w, b, (1, 1), (1, 2)),
                             fast.conv2d_backward, dict(x=x, w=w, b=b))
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("pool", [False, True])
def test_direct_relu_keeps_nan(pool, rng, dtype):
    x, w, b = conv_arrays(rng, (2, 2, 6, 18), 9, (3, 3), dtype)
    x[0, 0, 2, 3] = np.nan
    out, want = run(x, w, b, (1, 1), 2, relu=True, pool=pool), expected(x, w, b, (1, 1), relu=True, pool=pool)
    assert np.isnan(out).sum() == 9 * (4 if pool else 9) and np.array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_allclose(out, want, **TOLERANCE[dtype])


def test_inference_plan_pools_in_the_direct_convolution(rng):
    """The plan's convolution with 2x2 max pooling after it runs direct, pooled in its output pass."""
    from cnnkit.fast import inference

    x, w, b = conv_arrays(rng, (3, 2, 10, 24), 8, (3, 3), np.float32)
    assert fast_conv.forward_kernel(x.shape, w.shape, (3, 3), (1, 1), (1, 1), (10, 24)) is direct.direct_forward
    cnnkit.set_num_threads(2)
    step = inference.conv2d(x.shape, w.shape, x.dtype, (1, 1), (1, 1), relu=True, pool=True)
    np.testing.assert_allclose(step(x, w, b), expected(x, w, b, (1, 1), relu=True, pool=True), **TOLERANCE[np.float32])


@pytest.mark.parametrize("call, message", [
    (lambda x, w, b, out: direct.direct_forward(x[..., :15].copy(), w, b, out[..., :15].copy(), 1, 1, 1),
     f"output width \\(OW\\) of at least {LANES}, got 15"),
    (lambda x, w, b, out: direct.direct_forward(x[:, :1].copy(), w, b, out, 1, 1, 1), "do not match"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b[:3], out, 1, 1, 1), "do not match"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out[:, :3].copy(), 1, 1, 1),
     r"out must have shape \(2, 4, 6, 20\)"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, 1, 1, 0), "n_threads must be >= 1"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, 1, 1, 1, True, True),
     r"out must have shape \(2, 4, 3, 10\)"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, -1, 1, 1), "bad window"),
    (lambda x, w, b, out: direct.direct_forward(x[:, :, :1].copy(), w, b, out, 0, 1, 1),
     "larger than the padded input"),
])
def test_direct_bad_input_raises(call, message):
    x, w, b, out = np.zeros((2, 3, 6, 20)), np.zeros((4, 3, 3, 3)), np.zeros(4), np.zeros((2, 4, 6, 20))
    with pytest.raises(ValueError, match=message):
        call(x, w, b, out)
