"""Split, normalise and augment image batches (NCHW).

Normalisation statistics are fitted on training images only and then applied to every
split. The augmentations take ``(X_batch, rng)`` and return a new batch of the same shape
and dtype, the signature the Trainer's ``augment=`` option expects. Each draws all its
random numbers in one call ``rng.random((N, k))``, row i for image i: rng is a numpy
Generator, or the Trainer's per-example stream (cnnkit._random.KeyedRows), with which an
image's augmentation does not depend on the rest of its batch.
"""
import numpy as np

from cnnkit._validation import check_ndim


def train_val_split(X, y, num_val, seed=0):
    """Random split of (X, y) into training and validation parts.

    Parameters
    ----------
    X : ndarray of shape (N, ...)
    y : ndarray of shape (N,)
    num_val : int
        Number of validation samples, 0 < num_val < N.
    seed : int

    Returns
    -------
    X_train, y_train, X_val, y_val
    """
    if len(X) != len(y):
        raise ValueError(f"X and y must hold the same number of samples, got {len(X)} and {len(y)}")
    if not 0 < num_val < len(X):
        raise ValueError(f"num_val must be between 1 and {len(X) - 1} for {len(X)} samples, got {num_val}")
    order = np.random.default_rng(seed).permutation(len(X))
    val, train = order[:num_val], order[num_val:]
    return X[train], y[train], X[val], y[val]


def channel_stats(X):
    """Per-channel mean and standard deviation of training images.

    Parameters
    ----------
    X : ndarray of shape (N, C, H, W)

    Returns
    -------
    mean, std : ndarrays of shape (C,) in X's dtype; a constant channel gets std 1
    """
    check_ndim(X, 4, "X", "(N, C, H, W)")
    mean, std = X.mean(axis=(0, 2, 3)), X.std(axis=(0, 2, 3))
    return mean, np.where(std > 0, std, 1).astype(X.dtype)


def normalize(X, mean, std):
    """(X - mean) / std per channel; mean and std of shape (C,), cast to X's dtype.

    Returns
    -------
    ndarray of shape (N, C, H, W) and X's dtype
    """
    check_ndim(X, 4, "X", "(N, C, H, W)")
    if np.shape(mean) != X.shape[1:2] or np.shape(std) != X.shape[1:2]:
        raise ValueError(f"mean and std must have shape ({X.shape[1]},) for {X.shape[1]} channels, "
                         f"got {np.shape(mean)} and {np.shape(std)}")
    mean, std = (np.asarray(a, dtype=X.dtype)[:, None, None] for a in (mean, std))
    return (X - mean) / std


def random_crop(X, rng, padding=4):
    """Each image zero-padded by `padding` on every side, then cropped back at a random offset.

    Parameters
    ----------
    X : ndarray of shape (N, C, H, W)
    rng : numpy.random.Generator or per-example stream (see the module docstring)
    padding : int >= 0

    Returns
    -------
    ndarray of shape (N, C, H, W), X's dtype
    """
    check_ndim(X, 4, "X", "(N, C, H, W)")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    n, _, height, width = X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    top, left = (rng.random((n, 2)) * (2 * padding + 1)).astype(np.intp).T  # uniform in 0..2 * padding
    rows = top[:, None] + np.arange(height)  # (N, H)
    cols = left[:, None] + np.arange(width)  # (N, W)
    images = np.arange(n)[:, None, None, None]
    channels = np.arange(X.shape[1])[None, :, None, None]
    return padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(X, rng, p=0.5):
    """Each image mirrored left-right with probability `p`.

    Returns
    -------
    ndarray of shape (N, C, H, W), X's dtype
    """
    check_ndim(X, 4, "X", "(N, C, H, W)")
    flip = rng.random((len(X), 1))[:, 0] < p
    out = X.copy()
    out[flip] = X[flip, :, :, ::-1]
    return out


def random_affine(X, rng, degrees=10.0, scale=0.1, shift=2.0):
    """Each image rotated, scaled and shifted at random about its centre (bilinear sampling;
    points outside the image take the nearest edge pixel, the background for digits).

    Parameters
    ----------
    X : ndarray of shape (N, C, H, W)
    rng : numpy.random.Generator or per-example stream (see the module docstring)
    degrees : float >= 0
        Rotations are uniform in [-degrees, degrees].
    scale : float in [0, 1)
        Zoom factors are uniform in [1 - scale, 1 + scale].
    shift : float >= 0
        Shifts in pixels, each axis uniform in [-shift, shift].

    Returns
    -------
    ndarray of shape (N, C, H, W), X's dtype
    """
    check_ndim(X, 4, "X", "(N, C, H, W)")
    for name, value, high in (("degrees", degrees, np.inf), ("scale", scale, 1.0), ("shift", shift, np.inf)):
        if not 0 <= value < high:
            raise ValueError(f"{name} must be >= 0{' and < 1' if high == 1 else ''}, got {value!r}")
    n, _, height, width = X.shape
    turn, zoom, shift_y, shift_x = 2 * rng.random((n, 4)).T - 1  # each uniform in [-1, 1)
    angle = np.deg2rad(degrees * turn)
    inverse_zoom = 1 / (1 + scale * zoom)
    shift_y, shift_x = shift * shift_y, shift * shift_x
    cos, sin = ((f(angle) * inverse_zoom).astype(X.dtype)[:, None, None] for f in (np.cos, np.sin))
    centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    rows = (np.arange(height, dtype=X.dtype) - centre_y)[None, :, None] - shift_y[:, None, None].astype(X.dtype)
    cols = (np.arange(width, dtype=X.dtype) - centre_x)[None, None, :] - shift_x[:, None, None].astype(X.dtype)
    src_rows = cos * rows - sin * cols + X.dtype.type(centre_y)  # (N, H, W): where each output pixel samples
    src_cols = sin * rows + cos * cols + X.dtype.type(centre_x)
    return _bilinear(np.ascontiguousarray(X), src_rows, src_cols)


def _bilinear(X, rows, cols):
    """X (N, C, H, W), C-contiguous, sampled at fractional (rows, cols) of shape (N, H', W'),
    clamped to the edges."""
    n, channels, height, width = X.shape
    top = np.clip(np.floor(rows), 0, max(height - 2, 0))
    left = np.clip(np.floor(cols), 0, max(width - 2, 0))
    dy = np.clip(rows - top, 0, 1)[:, None]  # (N, 1, H', W'); 1 at the bottom edge
    dx = np.clip(cols - left, 0, 1)[:, None]
    top, left = top.astype(np.intp), left.astype(np.intp)
    planes = (np.arange(n * channels) * (height * width)).reshape(n, channels, 1, 1)
    corner = planes + (top * width + left)[:, None]  # (N, C, H', W'): top-left of each 2x2 neighbourhood
    down, right = (width if height > 1 else 0), (1 if width > 1 else 0)
    flat = X.ravel()
    top_left, bottom_left = flat[corner], flat[corner + down]
    upper = top_left + (flat[corner + right] - top_left) * dx
    lower = bottom_left + (flat[corner + down + right] - bottom_left) * dx
    return upper + (lower - upper) * dy


def augmentation(crop_padding=4, flip=True, degrees=0.0, scale=0.0):
    """An ``augment(X_batch, rng) -> X_batch`` function: random crop (or affine), then random flip.

    Parameters
    ----------
    crop_padding : int
        Padding of `random_crop`; 0 turns cropping off.
    flip : bool
        Apply `random_flip` (leave it off for data such as digits, where mirroring
        changes the meaning).
    degrees, scale : float
        When either is not 0, `random_affine` with these and shifts of up to
        crop_padding pixels takes the crop's place.
    """
    def augment(X, rng):
        if degrees or scale:
            X = random_affine(X, rng, degrees, scale, crop_padding)
        elif crop_padding:
            X = random_crop(X, rng, crop_padding)
        return random_flip(X, rng) if flip else X
    return augment
