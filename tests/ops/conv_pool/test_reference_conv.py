"""Reference conv and pooling: hand-computed cases, a per-output-position oracle, gradients."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import distinct, geometries

from cnnkit import functional as F
from cnnkit import reference
from cnnkit.gradcheck import check_gradients


def windows(x, kernel, stride, padding, fill=0.0):
    """Yield (oh, ow, window of shape (N, C, KH, KW)) by walking the output positions."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    for oh in range((xp.shape[2] - kh) // sh + 1):
        for ow in range((xp.shape[3] - kw) // sw + 1):
            yield oh, ow, xp[:, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw]


def direct(x, kernel, stride, padding, reduce, fill=0.0, channels=None):
    """out[:, :, oh, ow] = reduce(window) for every output position."""
    cells = list(windows(x, kernel, stride, padding, fill))
    out = np.empty(x.shape[:1] + (channels or x.shape[1], cells[-1][0] + 1, cells[-1][1] + 1))
    for oh, ow, window in cells:
        out[:, :, oh, ow] = reduce(window)
    return out


@settings(max_examples=25, deadline=None)
@given(geometries(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_conv_matches_direct_sum_and_numerical_gradients(geometry, filters, seed):
    shape, kernel, stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((filters, shape[1]) + kernel)
    b = rng.standard_normal(filters)
    out, _ = reference.conv2d_forward(x, w, b, stride, padding)
    expected = direct(x, kernel, stride, padding, lambda win: np.einsum("nchw,fchw->nf", win, w) + b, channels=filters)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    # conv is linear in each input, so a large step has no truncation error and less rounding
    report = check_gradients(lambda x, w, b: reference.conv2d_forward(x, w, b, stride, padding),
                             reference.conv2d_backward, dict(x=x, w=w, b=b), h=1e-2)
    assert report.worst < 1e-7, report


@settings(max_examples=25, deadline=None)
@given(geometries(pool=True), st.sampled_from(["max", "avg"]), st.integers(0, 2**32 - 1))
def test_pool_matches_direct_reduction_and_numerical_gradients(geometry, kind, seed):
    shape, kernel, stride, padding = geometry
    x = distinct(np.random.default_rng(seed), np.float64, *shape)  # no ties
    forward, backward = getattr(reference, f"{kind}_pool2d_forward"), getattr(reference, f"{kind}_pool2d_backward")
    out, _ = forward(x, kernel, stride, padding)
    if kind == "max":
        expected = direct(x, kernel, stride, padding, lambda win: win.max(axis=(2, 3)), fill=-np.inf)
    else:
        expected = direct(x, kernel, stride, padding, lambda win: win.mean(axis=(2, 3)))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    report = check_gradients(lambda x: forward(x, kernel, stride, padding), backward, [x])
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("stride, padding, size", [(1, 0, 5), (2, 0, 3), (1, 1, 7)])
def test_seven_by_seven_input_three_by_three_filter(stride, padding, size):
    out, _ = F.conv2d_forward(np.ones((1, 1, 7, 7)), np.ones((1, 1, 3, 3)), np.zeros(1), stride, padding)
    assert out.shape == (1, 1, size, size)


def test_ones_filter_counts_the_real_pixels_under_it():
    out, _ = F.conv2d_forward(np.ones((1, 1, 7, 7)), np.ones((1, 1, 3, 3)), np.zeros(1), padding=1)
    edge = [4] + [6] * 5 + [4]
    np.testing.assert_array_equal(out[0, 0], [edge] + [[6] + [9] * 5 + [6]] * 5 + [edge])


def test_cifar_sized_layer_keeps_size_and_has_760_parameters(rng):
    x = rng.standard_normal((1, 3, 32, 32))
    w, b = rng.standard_normal((10, 3, 5, 5)), rng.standard_normal(10)
    out, _ = F.conv2d_forward(x, w, b, stride=1, padding=2)
    assert out.shape == (1, 10, 32, 32) and w.size + b.size == 760


def test_bias_gradient_distributes_and_one_pixel_routes_to_its_taps():
    """A single upstream 1 at output (0, 0) reaches exactly the weights its window saw."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, cache = F.conv2d_forward(x, np.ones((2, 1, 2, 2)), np.zeros(2), stride=2)
    dout = np.zeros_like(out)
    dout[0, 1, 0, 0] = 1
    dx, dw, db = F.conv2d_backward(dout, cache)
    np.testing.assert_array_equal(dw[1, 0], [[0, 1], [4, 5]])
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(db, [0, 1])


POOL_INPUT = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)[None, None]


def test_course_max_pool_example_and_its_routing():
    out, cache = F.max_pool2d_forward(POOL_INPUT, 2, stride=2)
    np.testing.assert_array_equal(out[0, 0], [[6, 8], [3, 4]])
    dx = F.max_pool2d_backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0, 0], [0, 10, 0, 20], [30, 0, 0, 0], [0, 0, 0, 40]])


def test_avg_pool_of_the_course_example():
    out, cache = F.avg_pool2d_forward(POOL_INPUT, 2)
    np.testing.assert_array_equal(out[0, 0], [[13 / 4, 21 / 4], [2, 2]])
    np.testing.assert_array_equal(F.avg_pool2d_backward(np.full((1, 1, 2, 2), 4.0), cache), np.ones((1, 1, 4, 4)))


def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.array([[1, 5, 5], [5, 0, 5], [5, 5, 5]], dtype=float)[None, None]
    out, cache = F.max_pool2d_forward(x, 2, stride=1)  # four overlapping windows, all max 5
    dx = F.max_pool2d_backward(np.array([[[[1.0, 2.0], [4.0, 8.0]]]]), cache)
    np.testing.assert_array_equal(out[0, 0], [[5, 5], [5, 5]])
    np.testing.assert_array_equal(dx[0, 0], [[0, 3, 0], [4, 0, 8], [0, 0, 0]])


def test_max_pool_padding_never_wins():
    x = -1 - np.arange(9.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    out, cache = F.max_pool2d_forward(x, 2, stride=2, padding=1)
    np.testing.assert_array_equal(out[0, 0], [[-1, -2], [-4, -5]])
    dx = F.max_pool2d_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape and dx.sum() == 4


def test_avg_pool_counts_padding_as_zeros_and_divides_by_the_window():
    out, _ = F.avg_pool2d_forward(np.ones((1, 1, 3, 3)), 3, stride=1, padding=1)
    np.testing.assert_allclose(out[0, 0], np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)
