"""The Winograd F(2x2, 3x3) convolution agrees with the reference, forward and every gradient."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_conv import assert_conv_agrees, conv_arrays

import cnnkit
from cnnkit import fast, reference
from cnnkit._ext import conv as conv_kernels
from cnnkit._ext import cpu
from cnnkit._ext import winograd as winograd_kernels
from cnnkit._runtime import single_threaded_blas
from cnnkit.fast import conv as fast_conv
from cnnkit.gradcheck import check_gradients

pytestmark = pytest.mark.usefixtures("tiny_grains")


BANDS = {  # how the kernels cut a batch into bands of tile rows (a band may run across images)
    "one tile row": dict(BAND_BYTES=1, WHOLE_BATCH=0),
    "a few tile rows": dict(BAND_BYTES=2000, MIN_BANDS=1, WHOLE_BATCH=0),
    "the whole batch": dict(BAND_BYTES=1 << 20, MIN_BANDS=1, WHOLE_BATCH=0),
    "the whole batch, split by matrices": dict(WHOLE_BATCH=float("inf")),
    "as shipped": {},
}


TRANSFORMS = {  # how the transforms take a band's tiles (cnnkit/_ext/winograd.pyx, 2.)
    "by tile rows": 0,
    "as shipped": winograd_kernels.NARROW_TILES,
    "across tile rows": 1 << 30,
}


@contextlib.contextmanager
def bands(name, transforms="as shipped"):
    """Cut every batch into bands as BANDS[name] says, the transforms taking blocks of tiles as TRANSFORMS[transforms]
    says, in every build of the kernels (baseline, AVX2)."""
    with pytest.MonkeyPatch.context() as patch:
        for kernels in {winograd_kernels, fast_conv._winograd_kernels}:
            for setting, value in BANDS[name].items():
                patch.setattr(kernels, setting, value)
            patch.setattr(kernels, "NARROW_TILES", TRANSFORMS[transforms])
        yield


@st.composite
def problems(draw):
    """A random 3x3 stride-1 convolution: shape (N, C, H, W) (odd, even, smaller than a tile), filters, padding."""
    padding = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h, w = (draw(st.integers(max(1, 3 - 2 * padding[d]), 9)) for d in range(2))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w), filters=draw(st.integers(1, 4)),
                padding=padding, dtype=draw(st.sampled_from([np.float32, np.float64])),
                threads=draw(st.sampled_from([1, 2])), bands=draw(st.sampled_from(list(BANDS))),
                transforms=draw(st.sampled_from(list(TRANSFORMS))),
                strided=draw(st.booleans()), relu=draw(st.booleans()))


@pytest.mark.slow
@pytest.mark.usefixtures("winograd_everywhere")
@settings(max_examples=80, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_winograd_agrees_with_reference(p, seed):
    """Contiguous or strided x, bands of one tile row up to whole batches; a Fortran-ordered dout changes nothing."""
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(p["threads"])
    n, c, h, w = p["shape"]
    x, weights, b = conv_arrays(rng, (n, 2 * c if p["strided"] else c, h, w), p["filters"], (3, 3), p["dtype"])
    if p["strided"]:
        x, weights = x[:, ::2], weights[:, ::2]
    with bands(p["bands"], p["transforms"]):
        assert_conv_agrees(x, weights, b, (1, 1), p["padding"], rng, p["relu"])
        out, cache = fast.conv2d_forward(x, weights, b, (1, 1), p["padding"])
        dout = rng.standard_normal(out.shape).astype(out.dtype)
        for got, want in zip(fast.conv2d_backward(np.asfortranarray(dout), cache), fast.conv2d_backward(dout, cache)):
            assert np.array_equal(got, want)


@pytest.mark.usefixtures("winograd_everywhere")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, padding", [
    ((0, 3, 5, 5), (1, 1)),  # no images
    ((2, 3, 1, 1), (1, 1)),  # one output, less than a tile
    ((1, 2, 3, 3), (0, 0)),  # one output, no padding
    ((2, 3, 5, 6), (3, 4)),  # padding beyond the kernel: tiles of zeros only
    ((1, 2, 7, 40), (1, 0)),  # rows of more than one block of tiles, odd output width
    ((1, 2, 19, 35), (2, 1)),  # two blocks, odd output height and width
    ((2, 19, 5, 34), (1, 1)),  # backward's transposed V: channels 16 + 3, blocks of 16 + 1 tiles
    ((1, 37, 4, 20), (1, 0)),  # channels 16 + 16 + 5, a block of 9 tiles
    ((9, 18, 4, 4), (1, 1)),  # narrow: blocks of 16 tiles over 4 images, a last block of 4
    ((5, 3, 6, 13), (1, 0)),  # rows of 7 tiles, the last cropped; odd output height: blocks across images
    ((2, 3, 11, 14), (0, 1)),  # rows of 7 tiles: blocks of runs of 7, 7, 2; 5, 7, 4 tiles
])
@pytest.mark.parametrize("band", list(BANDS))
@pytest.mark.parametrize("transforms", list(TRANSFORMS))
def test_winograd_special_shapes(shape, padding, threads, band, transforms, dtype, rng):
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, shape, 5, (3, 3), dtype)
    with bands(band, transforms):
        assert_conv_agrees(x, w, b, (1, 1), padding, rng, relu=True)
        assert_conv_agrees(x, w, b, (1, 1), padding, rng)


@pytest.mark.usefixtures("winograd_everywhere")
@pytest.mark.parametrize("sliced", [True, False])
@pytest.mark.parametrize("filters", [70, 32])
def test_winograd_whole_batch_forward_takes_the_filters_in_slices(filters, sliced, rng, dtype):
    """A batch that is one band takes its filters 32 at a time, in the forward's transform and the weight gradient's
    products, where its V is small enough (cnnkit/_ext/winograd.pyx, 1.; else all at once): 70 filters in slices of
    32, 32 and 6, or one whole slice; the reference's outputs and gradients, the same bits at 1 and 2 threads."""
    x, w, b = conv_arrays(rng, (2, 6, 5, 4), filters, (3, 3), dtype)
    dout = rng.standard_normal((2, filters, 5, 4)).astype(dtype)
    outputs = []
    with bands("the whole batch, split by matrices"), pytest.MonkeyPatch.context() as patch:
        for kernels in {winograd_kernels, fast_conv._winograd_kernels}:
            patch.setattr(kernels, "SLICED_BYTES", kernels.SLICED_BYTES if sliced else 0)
        for threads in (1, 2):
            cnnkit.set_num_threads(threads)
            assert_conv_agrees(x, w, b, (1, 1), (1, 1), rng, relu=True)
            out, cache = fast.conv2d_forward(x, w, b, (1, 1), (1, 1))
            outputs.append((out,) + fast.conv2d_backward(dout, cache))
    assert all(np.array_equal(one, two) for one, two in zip(*outputs))


@pytest.mark.usefixtures("winograd_everywhere")
@pytest.mark.parametrize("channels, filters", [(3, 0), (0, 3)])
def test_winograd_without_filters_or_channels(channels, filters, rng, dtype):
    """No filters: out empty, dx zero (not left as it was); no channels: dw empty, out the bias.

    Straight from the kernels, and through cnnkit.fast (which sends such shapes to im2col).
    """
    x, w, b = conv_arrays(rng, (2, channels, 5, 6), filters, (3, 3), dtype)
    out, cache = reference.conv2d_forward(x, w, b, (1, 1), (1, 1))
    dout = rng.standard_normal(out.shape).astype(dtype)
    for got, want in zip(winograd(x, w, b, (1, 1), dout), (out,) + reference.conv2d_backward(dout, cache)):
        assert got.shape == want.shape and np.allclose(got, want)
    assert_conv_agrees(x, w, b, (1, 1), (1, 1), rng)


@pytest.mark.usefixtures("winograd_everywhere")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("padding", [(0, 0), (1, 1), (2, 0), (3, 1)])
@pytest.mark.parametrize("band", ["one tile row", "the whole batch, split by matrices"])
def test_winograd_matches_numerical_gradients(padding, threads, band, rng):
    cnnkit.set_num_threads(threads)
    x, w, b = conv_arrays(rng, (2, 3, 5, 4), 2, (3, 3), np.float64)
    with bands(band):
        report = check_gradients(lambda x, w, b: fast.conv2d_forward(x, w, b, (1, 1), padding),
                                 fast.conv2d_backward, dict(x=x, w=w, b=b))
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("band", list(BANDS))
def test_winograd_is_reproducible(rng, band):
    """Weight gradients summed in groups fixed by the shapes: bitwise equal on every call, 2 threads or 1."""
    x, w, b = conv_arrays(rng, (16, 16, 10, 9), 16, (3, 3), np.float32)
    with bands(band):
        cnnkit.set_num_threads(2)
        out, cache = fast.conv2d_forward(x, w, b, (1, 1), (1, 1))
        dout = rng.standard_normal(out.shape).astype(np.float32)
        first = (out,) + fast.conv2d_backward(dout, cache)
        for threads in [2] * 10 + [1]:
            cnnkit.set_num_threads(threads)
            again = (fast.conv2d_forward(x, w, b, (1, 1), (1, 1))[0],) + fast.conv2d_backward(dout, cache)
            assert all(np.array_equal(a, b) for a, b in zip(again, first))


def winograd(x, w, b, padding, dout, kernels=winograd_kernels, threads=1, relu=False):
    """out, dx, dw, db straight from the Winograd kernels (the baseline build unless told); with relu, fused."""
    out = np.empty((len(x), len(w), x.shape[2] + 2 * padding[0] - 2, x.shape[3] + 2 * padding[1] - 2), x.dtype)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    kernels.winograd_forward(x, w, b, out, *padding, threads, relu)
    kernels.winograd_backward(x, w, dout, dx, dw, db, *padding, threads, out if relu else None)
    return out, dx, dw, db


def avx2_build():
    """cnnkit._ext.winograd_avx2, or a skip where it is not built or this CPU has no AVX2."""
    if not cpu.has_avx2():
        pytest.skip("this CPU has no AVX2")
    return pytest.importorskip("cnnkit._ext.winograd_avx2", reason="the AVX2 build is made on x86-64 only")


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_avx2_build_gives_the_baseline_bits(p, seed):
    """The same drivers compiled for AVX2: every output and gradient bit for bit the baseline's."""
    avx2 = avx2_build()
    rng = np.random.default_rng(seed)
    x, w, b = conv_arrays(rng, p["shape"], p["filters"], (3, 3), p["dtype"])
    out_shape = (len(x), len(w), x.shape[2] + 2 * p["padding"][0] - 2, x.shape[3] + 2 * p["padding"][1] - 2)
    dout = rng.standard_normal(out_shape).astype(p["dtype"])
    with bands(p["bands"], p["transforms"]):
        baseline = winograd(x, w, b, p["padding"], dout, winograd_kernels, p["threads"], p["relu"])
        wide = winograd(x, w, b, p["padding"], dout, avx2, p["threads"], p["relu"])
    for got, want in zip(wide, baseline):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, filters, padding", [
    ((3, 16, 16, 16), 24, (1, 1)),  # a row of 8 tiles: one AVX2 vector
    ((2, 5, 19, 35), 7, (2, 1)),  # two blocks of tiles and a partial vector
    ((1, 3, 7, 40), 4, (3, 0)),  # padding beyond the kernel
    ((2, 19, 5, 34), 5, (1, 1)),  # backward's transposed V: whole squares and the rest
])
def test_avx2_build_gives_the_baseline_bits_on_wide_rows(shape, filters, padding, threads, dtype, rng):
    avx2 = avx2_build()
    x, w, b = conv_arrays(rng, shape, filters, (3, 3), dtype)
    dout = rng.standard_normal((shape[0], filters, shape[2] + 2 * padding[0] - 2,
                                shape[3] + 2 * padding[1] - 2)).astype(dtype)
    for got, want in zip(winograd(x, w, b, padding, dout, avx2, threads),
                         winograd(x, w, b, padding, dout, winograd_kernels, threads)):
        assert np.array_equal(got, want)


def test_fast_conv_runs_the_avx2_build_where_the_cpu_has_avx2():
    avx2 = avx2_build()
    assert fast_conv._winograd_kernels is avx2 and fast_conv.WINOGRAD_BUILD == "AVX2"


def im2col(x, w, b, padding, dout):
    """out, dx, dw, db straight from the im2col kernels on one thread, BLAS on one too (as cnnkit.fast runs them:
    OpenBLAS may pick another kernel, with other roundings, when it has more threads).
    """
    wb = np.concatenate([w.reshape(len(w), -1), b[:, None]], axis=1)
    out = np.empty(dout.shape, x.dtype)
    dx, dwb = np.empty_like(x), np.empty_like(wb)
    with single_threaded_blas():
        conv_kernels.conv_forward(x, wb, out.reshape(out.shape[:2] + (-1,)), 3, 3, 1, 1, *padding, 1)
        conv_kernels.conv_backward(x, wb, dout.reshape(out.shape[:2] + (-1,)), dx, dwb, 3, 3, 1, 1, *padding, 1)
    return out, dx, dwb[:, :-1].reshape(w.shape), dwb[:, -1]


ENOUGH = fast_conv.WINOGRAD_MIN_CHANNELS
NARROW = fast_conv.WINOGRAD_MIN_WIDTH - 1
# images of 5 x width with padding 1: 3 tile rows of width/2 tiles
TILES_AT = -(-fast_conv.WINOGRAD_MIN_TILES // (3 * (fast_conv.WINOGRAD_MIN_WIDTH // 2)))  # images for enough tiles
WIDE, FEW_AT = fast_conv.WINOGRAD_WIDE_CHANNELS, -(-fast_conv.WINOGRAD_FEW_TILES // (3 * 2))  # images of width 4


@pytest.mark.parametrize("images, channels, width, kernels", [
    (TILES_AT, ENOUGH, fast_conv.WINOGRAD_MIN_WIDTH, winograd),  # enough channels, width and tiles: Winograd
    (TILES_AT, ENOUGH - 1, fast_conv.WINOGRAD_MIN_WIDTH, im2col),  # too few channels
    (TILES_AT - 1, ENOUGH, fast_conv.WINOGRAD_MIN_WIDTH, im2col),  # too few tiles
    (2 * TILES_AT, ENOUGH, NARROW, im2col),  # too narrow for so few channels
    (2 * TILES_AT, fast_conv.WINOGRAD_NARROW_CHANNELS, NARROW, winograd),  # narrow, but channels enough
    (2 * TILES_AT, fast_conv.WINOGRAD_NARROW_CHANNELS - 1, NARROW, im2col),
    (FEW_AT, WIDE, 4, winograd),  # so many channels that few tiles on a narrow map are enough
    (FEW_AT - 1, WIDE, 4, im2col),  # but not fewer
    (FEW_AT, WIDE - 1, 4, im2col),
])
@pytest.mark.usefixtures("no_direct")  # which takes some of these shapes from im2col: see test_fast_direct.py
def test_dispatch_picks_winograd_from_enough_channels_width_and_tiles(images, channels, width, kernels, rng, dtype):
    cnnkit.set_num_threads(1)
    x, w, b = conv_arrays(rng, (images, channels, 5, width), channels, (3, 3), dtype)
    assert fast_conv._uses_winograd(x.shape, w.shape, (3, 3), (1, 1), (5, width)) == (kernels is winograd)
    out, cache = fast.conv2d_forward(x, w, b, (1, 1), (1, 1))
    dout = rng.standard_normal(out.shape).astype(dtype)
    expected = kernels(x, w, b, (1, 1), dout)
    for got, want in zip((out,) + fast.conv2d_backward(dout, cache), expected):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("call, message", [
    (lambda x, w, b, out: winograd_kernels.winograd_forward(x, np.zeros((4, 3, 2, 3)), b, out, 1, 1, 1),
     r"\(F, C, 3, 3\)"),
    (lambda x, w, b, out: winograd_kernels.winograd_forward(x, np.zeros((4, 2, 3, 3)), b, out, 1, 1, 1),
     r"with C = 3"),
    (lambda x, w, b, out: winograd_kernels.winograd_forward(x, w, b[:2], out, 1, 1, 1), r"b must have shape \(4,\)"),
    (lambda x, w, b, out: winograd_kernels.winograd_forward(x, w, b, out, -1, 1, 1), "padding must be >= 0"),
    (lambda x, w, b, out: winograd_kernels.winograd_forward(x, w, b, out, 0, 1, 1), r"out must have shape"),
    (lambda x, w, b, out: winograd_kernels.winograd_forward(np.zeros((2, 3, 1, 6)), w, b, out, 0, 0, 1),
     "does not fit"),
    (lambda x, w, b, out: winograd_kernels.winograd_forward(x, w, b, out, 1, 1, 0), "n_threads must be >= 1"),
    (lambda x, w, b, out: winograd_kernels.winograd_backward(x, np.zeros((4, 2, 3, 3)), out, np.empty_like(x),
                                                             np.empty_like(w), np.empty_like(b), 1, 1, 1),
     r"with C = 3"),
    (lambda x, w, b, out: winograd_kernels.winograd_backward(x, w, out, np.empty_like(x), np.empty_like(w),
                                                             np.empty_like(b), 3, -1, 1), "padding must be >= 0"),
    (lambda x, w, b, out: winograd_kernels.winograd_backward(x, w, out[:1], np.empty_like(x), np.empty_like(w),
                                                             np.empty_like(b), 1, 1, 1), r"must have shape"),
    (lambda x, w, b, out: winograd_kernels.winograd_backward(x, w, out, np.empty((2, 4, 6, 6)), np.empty_like(w),
                                                             np.empty_like(b), 1, 1, 1), r"dx must have shape"),
    (lambda x, w, b, out: winograd_kernels.winograd_backward(x, w, out, np.empty_like(x), np.empty_like(w),
                                                             np.empty_like(b), 1, 1, 1, np.zeros((2, 4, 6, 5))),
     r"out must have shape \(2, 4, 6, 6\)"),
])
def test_winograd_kernels_reject_bad_shapes(call, message):
    x, w, b, out = np.zeros((2, 3, 6, 6)), np.zeros((4, 3, 3, 3)), np.zeros(4), np.zeros((2, 4, 6, 6))
    with pytest.raises(ValueError, match=message):
        call(x, w, b, out)
