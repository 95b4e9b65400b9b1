"""softmax_loss and svm_loss: hand-computed values, stability, gradients."""
import warnings

import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit.gradcheck import check_loss_gradients


@pytest.mark.parametrize("loss, expected", [(F.softmax_loss, np.log(10)), (F.svm_loss, 9.0)])
def test_equal_scores_give_the_textbook_values(loss, expected, dtype):
    """Equal scores: softmax loss is log(C); hinge loss with margin 1 is C - 1."""
    value, dscores = loss(np.zeros((5, 10), dtype=dtype), np.arange(5))
    assert value.dtype == dscores.dtype == dtype
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_hand_computed_svm_example():
    """The course's three-example hinge loss: (2.9 + 0 + 12.9) / 3."""
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])  # cat, car, frog images
    loss, dscores = F.svm_loss(scores, np.array([0, 1, 2]))
    np.testing.assert_allclose(loss, (2.9 + 0 + 12.9) / 3, rtol=1e-12)
    np.testing.assert_allclose(dscores[0], np.array([-1, 1, 0]) / 3)


def test_hand_computed_softmax_example():
    scores = np.array([[np.log(1.0), np.log(3.0)]])
    loss, dscores = F.softmax_loss(scores, np.array([1]))
    np.testing.assert_allclose(loss, -np.log(0.75), rtol=1e-12)
    np.testing.assert_allclose(dscores, [[0.25, -0.25]], rtol=1e-12)


@pytest.mark.parametrize("loss", [F.softmax_loss, F.svm_loss])
def test_stable_at_huge_scores(loss, dtype):
    scores = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, dscores = loss(scores, np.array([0, 2]))
    assert np.isfinite(value) and np.all(np.isfinite(dscores))
    if loss is F.softmax_loss:  # row 0 is certain; row 1 is log(1 + e) / 2 per example
        np.testing.assert_allclose(value, np.log1p(np.e) / 2, rtol=1e-5)


@pytest.mark.parametrize("loss", [F.softmax_loss, F.svm_loss])
def test_gradient_matches_numerical_and_averages_over_the_batch(loss, rng):
    scores, y = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    report = check_loss_gradients(lambda: loss(scores, y), [scores])
    assert report.worst < 1e-7, report
    doubled, _ = loss(np.tile(scores, (2, 1)), np.tile(y, 2))
    np.testing.assert_allclose(doubled, loss(scores, y)[0], rtol=1e-12)
