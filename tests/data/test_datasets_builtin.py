"""The built-in shapes dataset: deterministic, balanced, and not linearly separable."""
import numpy as np
import pytest

from cnnkit.datasets import load_builtin, load_dataset, make_shapes
from cnnkit.datasets.builtin import CLASSES


def test_same_seed_same_data():
    a, b = load_builtin(200, 50, seed=4), load_builtin(200, 50, seed=4)
    for key in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(load_builtin(200, 50, seed=5)["X_train"], a["X_train"])


def test_shapes_dtypes_and_balance(dtype):
    data = load_builtin(300, 100, image_size=12, channels=1, dtype=dtype)
    assert data["X_train"].shape == (300, 1, 12, 12) and data["X_test"].shape == (100, 1, 12, 12)
    assert data["X_train"].dtype == dtype and data["y_train"].dtype == np.int64
    assert 0 <= data["X_train"].min() and data["X_train"].max() <= 1
    assert np.bincount(data["y_train"]).tolist() == [30] * 10
    assert data["classes"] == CLASSES and len(set(CLASSES)) == 10


def test_too_small_images_are_refused(rng):
    with pytest.raises(ValueError, match="image_size must be >= 8 to draw the shapes, got 6"):
        make_shapes(10, rng, image_size=6)


def test_colour_does_not_tell_the_class(rng):
    X, y = make_shapes(4000, rng)
    class_means = np.array([X[y == k].mean(axis=(0, 2, 3)) for k in range(10)])  # (10, 3)
    assert np.ptp(class_means, axis=0).max() < 0.05


def ridge_accuracy(data, features):
    """Test accuracy of a least-squares linear classifier on features(X)."""
    A = np.c_[features(data["X_train"]), np.ones(len(data["X_train"]))]
    W = np.linalg.solve(A.T @ A + 1e-1 * np.eye(A.shape[1]), A.T @ np.eye(10)[data["y_train"]])
    B = np.c_[features(data["X_test"]), np.ones(len(data["X_test"]))]
    return np.mean((B @ W).argmax(1) == data["y_test"])


def sorted_gradients(X):
    """Sorted |horizontal| and |vertical| pixel differences: blind to position and contrast sign."""
    dx, dy = np.abs(np.diff(X[:, 0], axis=2)), np.abs(np.diff(X[:, 0], axis=1))
    return np.c_[np.sort(dx.reshape(len(X), -1), axis=1), np.sort(dy.reshape(len(X), -1), axis=1)]


@pytest.mark.slow
def test_a_linear_classifier_on_pixels_is_weak_but_shape_features_work():
    data = load_builtin(3000, 1000, channels=1, seed=1)
    linear = ridge_accuracy(data, lambda X: X.reshape(len(X), -1))
    assert linear < 0.25  # chance is 0.1
    assert ridge_accuracy(data, sorted_gradients) > linear + 0.1


@pytest.mark.slow
def test_load_dataset_builtin():
    assert load_dataset("builtin")["X_train"].shape == (10000, 3, 16, 16)
