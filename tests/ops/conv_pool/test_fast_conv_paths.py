"""Every algorithm the fast conv2d picks agrees with the reference, on both sides of each boundary.

im2col's work items are bands of output rows or groups of whole images (cnnkit/_ext/conv.pyx, 1.),
or the whole batch where the weights outweigh it (9.); the backward of a few images groups bands (10.);
the pointwise path skips im2col; Winograd is tested at its boundary in test_fast_winograd.py.
"""
import numpy as np
import pytest
from test_fast_conv import assert_conv_agrees, band_bytes, conv_arrays

import cnnkit
from cnnkit import fast
from cnnkit._ext import conv as conv_kernels
from cnnkit.fast import conv as fast_conv
from cnnkit.gradcheck import check_gradients

pytestmark = pytest.mark.usefixtures("tiny_grains")

GROUPS = conv_kernels.GRADIENT_GROUPS
FILTERS = 32  # more than the output positions of an image below, except where said
# (x shape, kernel, stride, padding, band bytes, (R, B) expected in float64)
PATHS = [
    ((2 * GROUPS, 2, 5, 5), (3, 3), (1, 1), (1, 1), None, (5, 2)),  # two images per item: the fewest
    ((5 * GROUPS + 3, 3, 4, 6), (2, 3), (2, 1), (1, 0), None, (3, 5)),  # groups of 5 or 6: a short last item
    ((8 * GROUPS, 1, 8, 8), (5, 5), (1, 1), (0, 0), None, (4, 8)),  # 5x5 on 64 images: eight an item
    ((2 * GROUPS - 1, 2, 5, 5), (3, 3), (1, 1), (1, 1), None, (5, 1)),  # too few images for two an item
    ((2 * GROUPS, 2, 6, 6), (3, 3), (1, 1), (1, 1), None, (6, 1)),  # as many positions as filters: one an item
    ((2 * GROUPS, 2, 5, 5), (3, 3), (1, 1), (1, 1), 2 * 51 * 25 * 8 - 1, (5, 1)),  # two do not fit, one does
    ((2 * GROUPS, 2, 5, 5), (3, 3), (1, 1), (1, 1), 2 * 51 * 25 * 8, (5, 2)),  # two fit exactly
    ((2 * GROUPS, 2, 5, 5), (3, 3), (1, 1), (1, 1), 51 * 25 * 8 - 1, (4, 1)),  # one image does not fit: bands
    ((2 * GROUPS, 4, 6, 5), (1, 1), (1, 1), (0, 0), None, (6, 1)),  # pointwise: bands of whole images, no im2col
    ((2 * GROUPS, 4, 6, 5), (1, 1), (2, 1), (0, 0), None, (3, 2)),  # strided 1x1: im2col, several images
    ((1, 2, 9, 9), (3, 3), (1, 1), (1, 1), 2 * 51 * 9 * 8, (2, 1)),  # one image in 5 bands: 4 groups of bands (10.)
    ((3, 2, 9, 9), (3, 3), (1, 1), (1, 1), 3 * 51 * 9 * 8, (3, 1)),  # 9 bands of 3 images: 8 groups of bands
    ((3, 2, 9, 9), (3, 3), (1, 1), (1, 1), 51 * 9 * 8, (2, 1)),  # a row fits, two reach past the kernel (10.)
    ((2 * GROUPS, 2, 9, 9), (3, 3), (1, 1), (1, 1), 51 * 9 * 8, (1, 1)),  # as many images as groups: a row (4.)
    ((4, 3, 4, 4), (3, 3), (1, 1), (1, 1), None, (4, 4)),  # N*P = 2F: the whole batch is one item
    ((5, 3, 4, 4), (3, 3), (1, 1), (1, 1), None, (4, 1)),  # N*P > 2F: items of one image
    ((2, 5, 7, 6), (3, 2), (2, 1), (1, 0), None, (4, 2)),  # strided, non-square: one item of the batch
    ((1, 70, 2, 3), (3, 3), (1, 1), (1, 1), None, (2, 1)),  # one image, K = 630 > K_SLICE: two row slices
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, kernel, stride, padding, size, item", PATHS)
def test_every_work_item_agrees_with_reference(shape, kernel, stride, padding, size, item, relu, threads, dtype,
                                               rng):
    """Each path reached as planned (checked in float64), then conv2d or conv2d_relu agree, input_grad both ways."""
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, shape, FILTERS, kernel, dtype)
    x = np.ascontiguousarray(x[:, ::-1])[:, ::-1]  # non-contiguous input
    with band_bytes(size or conv_kernels.BAND_BYTES):
        if dtype == np.float64:
            assert conv_kernels.work_item(shape, FILTERS, *kernel, *stride, *padding, 8) == item
        assert_conv_agrees(x, w, b, stride, padding, rng, relu)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, kernel, stride, padding, size, item", PATHS[:2] + PATHS[8:12] + PATHS[-4:-1:2])
def test_work_items_match_numerical_gradients(shape, kernel, stride, padding, size, item, threads, rng):
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, shape, FILTERS, kernel, np.float64)
    report = check_gradients(lambda x, w, b: fast.conv2d_forward(x, w, b, stride, padding),
                             fast.conv2d_backward, dict(x=x, w=w, b=b))
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, kernel, stride, padding, size", [
    ((GROUPS, 3, 14, 14), (5, 5), (1, 1), (0, 0), None),  # LeNet's second conv, whole images
    ((3, 2, 17, 12), (5, 3), (2, 1), (2, 0), 2 * 36 * 12 * 8),  # bands of two rows at stride 2: two phases
])
def test_kernel_columns_in_bands_match_numerical_gradients(shape, kernel, stride, padding, size, threads, rng):
    """Bands whose im2col goes kernel column by kernel column (cnnkit/_ext/_im2col.pxd): the reference's forward
    and gradients in both dtypes, and float64's numerical gradients."""
    from cnnkit._ext import im2col as im2col_kernels

    assert im2col_kernels.gathers_by_kernel_columns(shape, *kernel, *stride, *padding)
    cnnkit.set_num_threads(threads)
    with band_bytes(size or conv_kernels.BAND_BYTES):
        for dtype in (np.float32, np.float64):
            assert_conv_agrees(*conv_arrays(rng, shape, 6, kernel, dtype), stride, padding, rng, relu=True)
        x, w, b = conv_arrays(rng, shape, 6, kernel, np.float64)
        report = check_gradients(lambda x, w, b: fast.conv2d_forward(x, w, b, stride, padding),
                                 fast.conv2d_backward, dict(x=x, w=w, b=b))
    assert report.worst < 1e-6, report  # sums of 75 products: the reference's own report reaches 1e-7 here


@pytest.mark.parametrize("shape, kernel, stride, padding, size, item", PATHS)
def test_every_work_item_is_reproducible(shape, kernel, stride, padding, size, item, rng):
    """The same bits from call to call at 1 and at 2 threads, and the weight gradients at either count."""
    x, w, b = conv_arrays(rng, shape, FILTERS, kernel, np.float32)
    with band_bytes(size or conv_kernels.BAND_BYTES):
        runs = {}
        for threads in (1, 2, 2, 1, 2):
            cnnkit.set_num_threads(threads)
            out, cache = fast.conv2d_relu_forward(x, w, b, stride, padding)
            run = (out,) + fast.conv2d_relu_backward(np.cos(out), cache)
            first = runs.setdefault(threads, run)
            assert all(np.array_equal(got, want) for got, want in zip(run, first))
        assert all(np.array_equal(got, want) for got, want in zip(runs[1][2:], runs[2][2:]))


def test_the_whole_batch_is_one_item_only_within_batch_bytes():
    shape, filters = (4, 3, 4, 4), FILTERS  # batch-wide by the positions: 4 * 16 <= 2 * 32
    columns = 4 * (3 * 9 + 1 + filters) * 16 * 8  # bytes of its columns and output in float64
    kept = conv_kernels.BATCH_BYTES
    try:
        conv_kernels.BATCH_BYTES = columns
        assert conv_kernels.work_item(shape, filters, 3, 3, 1, 1, 1, 1, 8) == (4, 4)
        conv_kernels.BATCH_BYTES = columns - 1
        assert conv_kernels.work_item(shape, filters, 3, 3, 1, 1, 1, 1, 8) == (4, 1)
    finally:
        conv_kernels.BATCH_BYTES = kept


def test_winograd_takes_3x3_stride_1_only():
    """Enough of everything (see test_fast_winograd.py for those boundaries), yet another window: im2col."""
    many = fast_conv.WINOGRAD_NARROW_CHANNELS, fast_conv.WINOGRAD_MIN_TILES, fast_conv.WINOGRAD_MIN_WIDTH
    x_shape, out_hw = (many[1], many[0], 2 * many[2], 2 * many[2]), (2 * many[2],) * 2
    assert fast_conv._uses_winograd(x_shape, (many[0], many[0], 3, 3), (3, 3), (1, 1), out_hw)
    assert not fast_conv._uses_winograd(x_shape, (many[0], many[0], 3, 3), (3, 3), (2, 1), out_hw)
    assert not fast_conv._uses_winograd(x_shape, (many[0], many[0], 3, 1), (3, 1), (1, 1), out_hw)
