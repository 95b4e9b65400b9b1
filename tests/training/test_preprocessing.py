"""Split, per-channel normalisation and augmentation."""
import numpy as np
import pytest
from scipy import ndimage

from cnnkit.datasets import (
    augmentation,
    channel_stats,
    normalize,
    random_affine,
    random_crop,
    random_flip,
    train_val_split,
)


def images(rng, dtype=np.float32, shape=(6, 3, 5, 7)):
    return rng.normal(2, 3, shape).astype(dtype)


def test_split_is_a_seeded_partition(rng):
    X, y = np.arange(20)[:, None] * np.ones((1, 3)), np.arange(20)
    X_train, y_train, X_val, y_val = train_val_split(X, y, num_val=5, seed=1)
    assert len(X_val) == 5 and len(X_train) == 15
    assert sorted(np.concatenate([y_train, y_val])) == list(range(20))
    np.testing.assert_array_equal(X_val[:, 0], y_val)  # rows stay with their labels
    assert not np.array_equal(y_val, np.arange(5))  # shuffled, not the first rows
    np.testing.assert_array_equal(train_val_split(X, y, 5, seed=1)[3], y_val)
    assert not np.array_equal(train_val_split(X, y, 5, seed=2)[3], y_val)


@pytest.mark.parametrize("num_val", [0, 20, -1])
def test_split_rejects_impossible_sizes(num_val):
    with pytest.raises(ValueError, match=f"num_val must be between 1 and 19 for 20 samples, got {num_val}"):
        train_val_split(np.zeros((20, 2)), np.zeros(20), num_val)


def test_split_rejects_length_mismatch():
    with pytest.raises(ValueError, match="same number of samples, got 4 and 3"):
        train_val_split(np.zeros((4, 2)), np.zeros(3), 1)


def test_channel_stats_and_normalize(rng, dtype):
    X = images(rng, dtype)
    X[:, 1] = 7  # a constant channel
    mean, std = channel_stats(X)
    assert mean.dtype == dtype and std.dtype == dtype and mean.shape == (3,)
    np.testing.assert_allclose(mean[2], X[:, 2].mean(), rtol=1e-5)
    np.testing.assert_allclose(std[0], X[:, 0].std(), rtol=1e-5)
    assert std[1] == 1
    out = normalize(X, mean, std)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), [1, 0, 1], rtol=1e-5)


def test_normalize_uses_the_given_training_statistics(rng):
    X_train, X_val = images(rng), images(rng) + 10
    out = normalize(X_val, *channel_stats(X_train))
    np.testing.assert_allclose(out[0, 0], (X_val[0, 0] - X_train[:, 0].mean()) / X_train[:, 0].std(), rtol=1e-4)


def test_normalize_names_the_expected_shapes(rng):
    with pytest.raises(ValueError, match=r"mean and std must have shape \(3,\) for 3 channels, got \(2,\) and \(3,\)"):
        normalize(images(rng), np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match=r"X must be 4-D \(N, C, H, W\), got shape \(5, 7\)"):
        channel_stats(np.zeros((5, 7)))


def windows(x, padding):
    """Every crop of x (C, H, W) after zero padding: the outputs random_crop may give."""
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    height, width = x.shape[1:]
    return [padded[:, i:i + height, j:j + width] for i in range(2 * padding + 1) for j in range(2 * padding + 1)]


def test_random_crop_gives_shifted_windows(rng, dtype):
    X = images(rng, dtype, (30, 2, 5, 7))
    out = random_crop(X, rng, padding=2)
    assert out.shape == X.shape and out.dtype == dtype
    chosen = [next(k for k, w in enumerate(windows(x, 2)) if np.array_equal(w, o)) for x, o in zip(X, out)]
    assert len(set(chosen)) > 5  # offsets differ from image to image


def test_random_crop_without_padding_is_identity(rng):
    X = images(rng)
    np.testing.assert_array_equal(random_crop(X, rng, padding=0), X)
    with pytest.raises(ValueError, match="padding must be an int >= 0, got -1"):
        random_crop(X, rng, padding=-1)


def test_random_flip_mirrors_some_images(rng, dtype):
    X = images(rng, dtype, (200, 2, 3, 4))
    before = X.copy()
    out = random_flip(X, rng)
    flipped = np.array([np.array_equal(o, x[:, :, ::-1]) for x, o in zip(X, out)])
    kept = np.array([np.array_equal(o, x) for x, o in zip(X, out)])
    assert np.all(flipped ^ kept) and 60 < flipped.sum() < 140
    assert out.dtype == dtype
    np.testing.assert_array_equal(X, before)  # input untouched
    np.testing.assert_array_equal(random_flip(X, rng, p=1), X[..., ::-1])


def test_augmentation_is_reproducible_and_configurable(rng):
    X = images(rng)
    augment = augmentation(crop_padding=1, flip=True)
    first = augment(X, np.random.default_rng(3))
    np.testing.assert_array_equal(augment(X, np.random.default_rng(3)), first)
    assert not np.array_equal(first, X) and first.shape == X.shape
    np.testing.assert_array_equal(augmentation(crop_padding=0, flip=False)(X, rng), X)


def affine_by_scipy(X, seed, degrees, scale, shift):
    """random_affine(X, default_rng(seed), ...) recomputed image by image with scipy.ndimage
    (bilinear, nearest-edge extension) from the same draws."""
    turn, zoom, shift_y, shift_x = 2 * np.random.default_rng(seed).random((len(X), 4)).T - 1  # in [-1, 1)
    angle, zoom = np.deg2rad(degrees * turn), 1 + scale * zoom
    shifts = shift * np.stack([shift_y, shift_x], axis=1)
    centre = (np.array(X.shape[2:]) - 1) / 2
    out = np.empty_like(X)
    for i, x in enumerate(X):
        matrix = np.array([[np.cos(angle[i]), -np.sin(angle[i])], [np.sin(angle[i]), np.cos(angle[i])]]) / zoom[i]
        offset = centre - matrix @ (centre + shifts[i])
        for c, plane in enumerate(x):
            out[i, c] = ndimage.affine_transform(plane, matrix, offset, order=1, mode="nearest")
    return out


@pytest.mark.parametrize("shape", [(7, 2, 9, 6), (3, 1, 28, 28), (4, 3, 1, 5)])
def test_random_affine_matches_scipy(rng, dtype, shape):
    X = images(rng, dtype, shape)
    out = random_affine(X[:, :, ::-1, :], np.random.default_rng(5), degrees=30, scale=0.2, shift=2.5)
    assert out.shape == X.shape and out.dtype == dtype
    tolerance = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(out, affine_by_scipy(X[:, :, ::-1, :].astype(np.float64), 5, 30, 0.2, 2.5),
                               atol=tolerance * 30)


def test_random_affine_without_movement_is_identity(rng, dtype):
    X = images(rng, dtype)
    np.testing.assert_allclose(random_affine(X, rng, degrees=0, scale=0, shift=0), X, atol=1e-5)


@pytest.mark.parametrize("option, value", [("degrees", -1), ("scale", 1.0), ("scale", -0.1), ("shift", float("nan"))])
def test_random_affine_rejects_bad_ranges(rng, option, value):
    with pytest.raises(ValueError, match=f"{option} must be >= 0"):
        random_affine(images(rng), rng, **{option: value})


def test_augmentation_with_rotations_uses_random_affine(rng):
    X = images(rng)
    out = augmentation(crop_padding=2, flip=False, degrees=10, scale=0.1)(X, np.random.default_rng(1))
    np.testing.assert_array_equal(out, random_affine(X, np.random.default_rng(1), 10, 0.1, 2))
