"""The direct convolution (cnnkit/_ext/direct_avx512.pyx): the reference's forward on any window at any stride, the
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
LANES = 16  # a vector of floats


@st.composite
def problems(draw):
    """A window at any stride over (N, C, H, W), with F, dtype, threads, ReLU and pooling."""
    kernel = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    out_hw = draw(st.integers(1, 7)), draw(st.integers(1, 2 * LANES + 3))
    h, w = (max(1, (out_hw[d] - 1) * stride[d] + kernel[d] - 2 * padding[d]) for d in range(2))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w), kernel=kernel, stride=stride,
                padding=padding, filters=draw(st.integers(1, 40)),
                dtype=draw(st.sampled_from([np.float32, np.float64])), threads=draw(st.sampled_from([1, 2, 3])),
                relu=draw(st.booleans()), pool=draw(st.booleans()),
                filter_lanes=draw(st.sampled_from([None, False, True])))


def run(x, w, b, padding, threads, relu=False, pool=False, stride=(1, 1), filter_lanes=None):
    """direct_forward's out (N, F, OH, OW), or pooled (N, F, OH // 2, OW // 2), into an array of NaNs."""
    out_hw = [(x.shape[2 + d] + 2 * padding[d] - w.shape[2 + d]) // stride[d] + 1 for d in range(2)]
    out = np.full((len(x), len(w), *(size // (1 + pool) for size in out_hw)), np.nan, x.dtype)
    direct.direct_forward(x, w, b, out, *stride, *padding, threads, relu, pool, filter_lanes)
    return out


def expected(x, w, b, padding, relu=False, pool=False, stride=(1, 1)):
    """The reference's conv2d_forward (conv2d_relu_forward with relu), then 2x2 max pooling at stride 2 with pool."""
    out = (reference.conv2d_relu_forward if relu else reference.conv2d_forward)(x, w, b, stride, padding)[0]
    return reference.max_pool2d_forward(out, (2, 2), (2, 2), (0, 0))[0] if pool else out


@settings(max_examples=200, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_direct_agrees_with_reference(p, seed):
    """Any F (blocks of 8, or of 32 with the filters in the lanes, and what is left), kernel, stride, padding
    (beyond the kernel too), width (a vector's lanes over several rows, whole vectors, a part of one), both dtypes,
    with and without its ReLU, pooled or not (odd sizes, bands of an image cut for the threads), either kernel
    (outputs or filters in the lanes, or the rule's choice); every output written."""
    rng = np.random.default_rng(seed)
    x, w, b = conv_arrays(rng, p["shape"], p["filters"], p["kernel"], p["dtype"])
    options = dict(relu=p["relu"], pool=p["pool"], stride=p["stride"])
    want = expected(x, w, b, p["padding"], relu=p["relu"], stride=p["stride"])
    if p["pool"] and min(want.shape[2:]) < 2:
        return  # no 2x2 window
    np.testing.assert_allclose(run(x, w, b, p["padding"], p["threads"], filter_lanes=p["filter_lanes"], **options),
                               expected(x, w, b, p["padding"], **options), **TOLERANCE[p["dtype"]])


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("shape, filters, kernel, stride, padding", [
    ((3, 3, 20, 37), 19, (3, 5), (1, 1), (1, 2)),  # three blocks, the last of 3 filters; rows of 37: three vectors
    ((1, 2, 41, 16), 8, (5, 1), (1, 1), (2, 0)),  # one image: cut into bands for the threads; an odd row left
    ((2, 1, 64, 64), 24, (7, 7), (1, 1), (3, 3)),  # many bands an image
    ((2, 5, 9, 7), 11, (3, 3), (1, 1), (1, 1)),  # rows of 7: a vector over two and a part of rows
    ((2, 3, 45, 70), 10, (7, 5), (2, 3), (3, 1)),  # strided: the input by phases
])
def test_direct_gives_the_same_bits_at_any_thread_count(shape, filters, kernel, stride, padding, pool, dtype, rng):
    x, w, b = conv_arrays(rng, shape, filters, kernel, dtype)
    once = run(x, w, b, padding, 1, pool=pool, stride=stride)
    for threads in (1, 2, 3):
        assert np.array_equal(run(x, w, b, padding, threads, pool=pool, stride=stride), once)
    np.testing.assert_allclose(once, expected(x, w, b, padding, pool=pool, stride=stride), **TOLERANCE[dtype])


@pytest.mark.parametrize("shape, filters, kernel, stride, padding", [
    ((3, 16, 14, 14), 32, (3, 3), (1, 1), (1, 1)),  # two whole vectors of filters, rows of 14: the pixels run on
    ((2, 5, 9, 7), 40, (3, 3), (1, 1), (1, 1)),  # a second block of 8 filters; 63 outputs: five passes and 3
    ((1, 3, 13, 21), 33, (5, 3), (2, 2), (2, 0)),  # strided; the second vector of one filter
    ((2, 1, 4, 4), 1, (1, 1), (1, 1), (0, 0)),  # one filter, fewer outputs than a pass
])
@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_filters_in_lanes_give_the_outputs_in_lanes_bits(shape, filters, kernel, stride, padding, pool, relu, dtype,
                                                         rng):
    """The two kernels (cnnkit/_ext/direct_avx512.pyx, 2. and 4.) make the same sums in the same order: the same
    bits, at any thread count."""
    x, w, b = conv_arrays(rng, shape, filters, kernel, dtype)
    if pool and min((shape[2 + d] + 2 * padding[d] - kernel[d]) // stride[d] + 1 for d in range(2)) < 2:
        pytest.skip("no 2x2 window")
    options = dict(relu=relu, pool=pool, stride=stride)
    outputs_in_lanes = run(x, w, b, padding, 1, filter_lanes=False, **options)
    for threads in (1, 2, 3):
        assert np.array_equal(run(x, w, b, padding, threads, filter_lanes=True, **options), outputs_in_lanes,
                              equal_nan=True)
    np.testing.assert_allclose(outputs_in_lanes, expected(x, w, b, padding, **options), **TOLERANCE[dtype])


@pytest.mark.parametrize("x_shape, w_shape, stride, dtype, chosen", [
    ((64, 16, 14, 14), (32, 16, 3, 3), 1, np.float32, True),  # rows of 14: 0.875 of the outputs' lanes, all filters'
    ((64, 16, 14, 14), (32, 16, 3, 3), 1, np.float64, False),  # float64: never
    ((64, 32, 32, 32), (32, 32, 3, 3), 1, np.float32, False),  # rows of 32: every output lane used
    ((64, 6, 14, 14), (16, 6, 3, 3), 1, np.float32, False),  # 16 filters fill half their block
    ((64, 6, 14, 14), (32, 6, 3, 3), 1, np.float32, False),  # 54 taps: too few to pay for the stores
    ((32, 32, 16, 16), (64, 32, 3, 3), 2, np.float32, True),  # strided to 8x8
    ((2, 128, 56, 56), (128, 128, 3, 3), 2, np.float32, False),  # strided to 28x28: 0.88 of the lanes, < 1 - margin
    ((2, 128, 56, 56), (128, 128, 3, 3), 1, np.float32, True),  # stride 1 on 56x56 (rows of 56): 0.875 of them
    ((8, 64, 28, 28), (48, 64, 3, 3), 1, np.float32, False),  # 48 filters: 0.75 of their blocks, 0.94 of the lanes
])
def test_filters_go_in_the_lanes_where_they_fill_more_of_them(x_shape, w_shape, stride, dtype, chosen):
    assert direct.filters_in_lanes(x_shape, w_shape, (stride, stride), (1, 1), dtype) is chosen


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, share", [
    ((1, 1, 6, 16), (8, 1, 1, 1), (1, 1), (0, 0), 1.0),  # rows of a vector
    ((1, 1, 6, 17), (8, 1, 1, 1), (1, 1), (0, 0), 6 * 17 / (16 * 7)),  # all 6 rows as one run of 102 lanes: 7 vectors
    ((1, 1, 6, 32), (8, 1, 3, 3), (1, 1), (1, 1), 1.0),  # row by row: 12 vectors (rows 34 apart: 13 at once)
    ((1, 1, 8, 8), (8, 1, 3, 3), (1, 1), (1, 1), 64 / 80),  # rows 10 apart in the padded input: 78 lanes, 5 vectors
    ((1, 1, 16, 16), (8, 1, 3, 3), (2, 2), (1, 1), 64 / 80),  # the same at stride 2 (phases 9 wide)
])
def test_lane_use_counts_the_kernels_vectors(x_shape, w_shape, stride, padding, share):
    assert direct.lane_use(x_shape, w_shape, stride, padding) == pytest.approx(share)


@pytest.mark.parametrize("filters, channels, kernel, stride, padding, width, path", [
    (fast_conv.DIRECT_MIN_FILTERS, 3, (5, 5), (1, 1), (2, 2), LANES, "direct"),
    (fast_conv.DIRECT_MIN_FILTERS - 1, 3, (5, 5), (1, 1), (2, 2), LANES, "im2col"),  # too few filters
    (8, 3, (3, 3), (1, 1), (1, 1), 8, "direct"),  # rows of 8, a vector's lanes over two rows (0.75 of them used)
    (8, 3, (3, 3), (1, 1), (1, 1), 2, "im2col"),  # rows of 2, 4 apart: too few lanes used
    (8, 3, (1, 7), (1, 1), (0, 3), LANES + 1, "direct"),  # 17 wide: 102 outputs in 144 lanes
    (8, 3, (3, 3), (2, 2), (1, 1), 2 * LANES, "direct"),  # strided, few taps
    (8, 3, (3, 3), (2, 2), (1, 1), 8, "im2col"),  # strided on rows of 8 (0.75 of the lanes used)
    (8, fast_conv.DIRECT_STRIDED_MAX_TAPS // 9 + 1, (3, 3), (2, 2), (1, 1), 2 * LANES, "direct"),  # strided, many
    #                                                                             taps: in float32 (float64: below)
    (8, 3, (1, 1), (1, 1), (0, 0), LANES, "im2col"),  # pointwise: a plain GEMM
    (8, 3, (1, 1), (1, 1), (1, 1), LANES, "direct"),  # 1x1 with padding
    (fast_conv.DIRECT_FEW_FILTERS + 1, 3, (5, 5), (1, 1), (2, 2), LANES, "direct"),  # 75 taps: many filters, too
    (fast_conv.DIRECT_FEW_FILTERS, fast_conv.DIRECT_MAX_TAPS // 9 + 1, (1, 9), (1, 1), (0, 4), LANES, "direct"),
    (fast_conv.DIRECT_FEW_FILTERS + 1, fast_conv.DIRECT_MAX_TAPS // 9 + 1, (1, 9), (1, 1), (0, 4),
     fast_conv.DIRECT_WIDE_OUTPUT - 1, "im2col"),
    (fast_conv.DIRECT_FEW_FILTERS + 1, fast_conv.DIRECT_MAX_TAPS // 9 + 1, (1, 9), (1, 1), (0, 4),
     fast_conv.DIRECT_WIDE_OUTPUT, "direct"),  # wide outputs: any taps and filters
    (fast_conv.WINOGRAD_MIN_CHANNELS, fast_conv.WINOGRAD_MIN_CHANNELS, (3, 3), (1, 1), (1, 1), 2 * LANES,
     "winograd"),  # Winograd's shapes stay its
])
def test_dispatch_gives_direct_few_taps_filled_lanes_and_enough_filters(filters, channels, kernel, stride, padding,
                                                                      width, path, rng):
    """Then conv2d and conv2d_relu agree with the reference, forward and backward (im2col's, or Winograd's).
    Beyond the most taps only with few filters or on wide outputs (the sixth to fourth from last rows), or at
    strides above 1 (in float32)."""
    shape = (40, channels, 6, (width - 1) * stride[1] + kernel[1] - 2 * padding[1])
    x, w, b = conv_arrays(rng, shape, filters, kernel, np.float64)
    x = np.ascontiguousarray(x[:, ::-1])[:, ::-1]  # non-contiguous input
    out_hw = fast.conv2d_forward(x, w, b, stride, padding)[0].shape[2:]
    assert out_hw[1] == width  # the float32 rule (float64 keeps wide outputs with many taps on im2col, tested below)
    assert fast_conv.forward_algorithm(x.shape, w.shape, kernel, stride, padding, out_hw, np.float32) == path
    for relu in (False, True):
        assert_conv_agrees(x, w, b, stride, padding, rng, relu)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, out_hw", [
    ((4, 128, 17, 17), (128, 128, 1, 7), (1, 1), (0, 3), (17, 17)),  # wide outputs: 896 taps, 128 filters, 17 wide
    ((2, 128, 56, 56), (128, 128, 3, 3), (2, 2), (1, 1), (28, 28)),  # strided: 1152 taps
])
def test_many_taps_go_direct_in_float32_only(x_shape, w_shape, stride, padding, out_hw):
    for dtype, path in ((np.float32, "direct"), (np.float64, "im2col")):
        assert fast_conv.forward_algorithm(x_shape, w_shape, w_shape[2:], stride, padding, out_hw, dtype) == path


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, stride, out_hw", [((2, 2, 5, 15), (1, 1), (5, 16)), ((2, 2, 7, 7), (1, 1), (7, 8)),
                                                   ((2, 2, 9, 29), (2, 2), (5, 16))])
def test_conv_on_the_direct_path_matches_numerical_gradients(shape, stride, out_hw, threads, rng):
    """Its forward (rows of a vector, rows of 8 two to a vector, strided), then im2col's backward: the reference's
    gradients in float64 differences."""
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, shape, 9, (3, 4), np.float64)
    assert fast_conv.forward_algorithm(x.shape, w.shape, (3, 4), stride, (1, 2), out_hw, x.dtype) == "direct"
    report = check_gradients(lambda x, w, b: fast.conv2d_forward(x, w, b, stride, (1, 2)),
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
    assert fast_conv.forward_algorithm(x.shape, w.shape, (3, 3), (1, 1), (1, 1), (10, 24), x.dtype) == "direct"
    cnnkit.set_num_threads(2)
    step = inference.conv2d(x.shape, w.shape, x.dtype, (1, 1), (1, 1), relu=True, pool=True)
    np.testing.assert_allclose(step(x, w, b), expected(x, w, b, (1, 1), relu=True, pool=True), **TOLERANCE[np.float32])


@pytest.mark.parametrize("call, message", [
    (lambda x, w, b, out: direct.direct_forward(x[:, :1].copy(), w, b, out, 1, 1, 1, 1, 1), "do not match"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b[:3], out, 1, 1, 1, 1, 1), "do not match"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out[:, :3].copy(), 1, 1, 1, 1, 1),
     r"out must have shape \(2, 4, 6, 20\)"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, 2, 1, 1, 1, 1), r"out must have shape \(2, 4, 3, 20\)"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, 1, 1, 1, 1, 0), "n_threads must be >= 1"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, 1, 1, 1, 1, 1, True, True),
     r"out must have shape \(2, 4, 3, 10\)"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, 1, 1, -1, 1, 1), "bad window"),
    (lambda x, w, b, out: direct.direct_forward(x, w, b, out, 1, 0, 1, 1, 1), "bad window"),
    (lambda x, w, b, out: direct.direct_forward(x[:, :, :1].copy(), w, b, out, 1, 1, 0, 1, 1),
     "larger than the padded input"),
])
def test_direct_bad_input_raises(call, message):
    x, w, b, out = np.zeros((2, 3, 6, 20)), np.zeros((4, 3, 3, 3)), np.zeros(4), np.zeros((2, 4, 6, 20))
    with pytest.raises(ValueError, match=message):
        call(x, w, b, out)


@pytest.mark.parametrize("shape, filters, kernel, padding", [
    ((4, 16, 14, 14), 32, (3, 3), (1, 1)),  # MNIST's second convolution
    ((2, 16, 9, 20), 24, (3, 5), (1, 2)),  # non-square
    ((2, 32, 17, 17), 16, (1, 7), (0, 3)),  # Inception's 1x7
    ((2, 17, 8, 18), 5, (2, 3), (0, 0)),  # no padding: the flipped convolution pads by the kernel less one
])
def test_data_gradient_by_the_direct_forward_agrees_with_reference(shape, filters, kernel, padding, rng):
    """im2col's backward with the data gradient as the direct forward of dout with the flipped weights, for conv2d
    and conv2d_relu (dout through the output's mask), non-contiguous input; in float64, whose tolerance the sums of
    hundreds of products keep (float32's kernel is the same code, tested against the reference above)."""
    dtype = np.float64
    x, w, b = conv_arrays(rng, shape, filters, kernel, dtype)
    x = np.ascontiguousarray(x[:, ::-1])[:, ::-1]
    out_hw = tuple(size + 2 * p - k + 1 for size, p, k in zip(shape[2:], padding, kernel))
    assert fast_conv._direct_data_gradient(x.shape, w.shape, kernel, (1, 1), padding, dtype)
    assert not fast_conv._uses_winograd(x.shape, w.shape, kernel, (1, 1), out_hw)
    for relu in (False, True):
        assert_conv_agrees(x, w, b, (1, 1), padding, rng, relu)


@pytest.mark.parametrize("x_shape, w_shape, kernel, stride, padding, chosen", [
    ((4, 16, 14, 14), (32, 16, 3, 3), (3, 3), (1, 1), (1, 1), True),
    ((4, 15, 14, 14), (32, 15, 3, 3), (3, 3), (1, 1), (1, 1), False),  # too few channels (LeNet's 6: 1.1-1.25)
    ((4, 16, 14, 14), (32, 16, 3, 3), (3, 3), (2, 2), (1, 1), False),  # strided
    ((4, 16, 14, 14), (32, 16, 3, 3), (3, 3), (1, 1), (3, 3), False),  # padding beyond the kernel
    ((4, 16, 4, 4), (32, 16, 3, 3), (3, 3), (1, 1), (1, 1), False),  # rows of 4: the flipped forward is im2col's
])
def test_data_gradient_goes_direct_where_its_forward_would(x_shape, w_shape, kernel, stride, padding, chosen):
    assert fast_conv._direct_data_gradient(x_shape, w_shape, kernel, stride, padding, np.float32) is chosen


@pytest.mark.parametrize("threads", [1, 2])
def test_data_gradient_by_the_direct_forward_matches_numerical_gradients(threads, rng):
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, (2, 16, 6, 16), 4, (3, 3), np.float64)
    assert fast_conv._direct_data_gradient(x.shape, w.shape, (3, 3), (1, 1), (1, 1), np.float64)
    report = check_gradients(lambda x, w, b: fast.conv2d_forward(x, w, b, (1, 1), (1, 1)), fast.conv2d_backward,
                             dict(x=x, w=w, b=b))  # the ReLU's mask: against the reference above (its kinks blur
    assert report.worst < 1e-6, report  # centred differences); im2col's data gradient: the same errors here
