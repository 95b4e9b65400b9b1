"""The built-in dataset: ten shapes drawn at random position, scale and colours.

No files and no network: images are rendered from a seed. A class is a shape only: its
position, size, foreground and background colours (and so the sign of the contrast) are
drawn independently of it, so a linear classifier on pixels does little better than
chance while a small convnet, whose filters and pooling see local shape wherever it is,
learns it well. Shapes are rendered at twice the resolution and averaged 2x2
(anti-aliased), then noise is added.
"""
import numpy as np

from cnnkit.datasets._formats import float_dtype

SUPERSAMPLE = 2
NOISE = 0.05
SCALE_RANGE = (0.22, 0.42)  # shape radius as a fraction of the image side


def _disc(u, v):
    return u * u + v * v <= 1


def _ring(u, v):
    return (u * u + v * v <= 1) & (u * u + v * v >= 0.55 ** 2)


def _square(u, v):
    return np.maximum(abs(u), abs(v)) <= 0.85


def _frame(u, v):
    return (np.maximum(abs(u), abs(v)) <= 0.85) & (np.maximum(abs(u), abs(v)) >= 0.45)


def _plus(u, v):
    return (np.minimum(abs(u), abs(v)) <= 0.25) & (np.maximum(abs(u), abs(v)) <= 1)


def _cross(u, v):
    return (abs(abs(u) - abs(v)) <= 0.3) & (np.maximum(abs(u), abs(v)) <= 0.85)


def _triangle(u, v):
    return (abs(u) <= (v + 1) / 1.8) & (v <= 0.8)


def _diamond(u, v):
    return abs(u) + abs(v) <= 1


def _bar(u, v):
    return (abs(u) <= 1) & (abs(v) <= 0.3)


def _dots(u, v):
    return (abs(u) - 0.55) ** 2 + v * v <= 0.42 ** 2


SHAPES = {"disc": _disc, "ring": _ring, "square": _square, "frame": _frame, "plus": _plus,
          "cross": _cross, "triangle": _triangle, "diamond": _diamond, "bar": _bar, "dots": _dots}
CLASSES = tuple(SHAPES)


def make_shapes(n, rng, image_size=16, channels=3):
    """`n` shape images with balanced classes, in random order.

    Parameters
    ----------
    n : int
    rng : numpy.random.Generator
    image_size : int
        Side of the square images, >= 8.
    channels : int
        3 for colour images, 1 for grey.

    Returns
    -------
    X : ndarray of float32, shape (n, channels, image_size, image_size), values in [0, 1]
    y : ndarray of int64, shape (n,), index into CLASSES
    """
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 to draw the shapes, got {image_size}")
    y = rng.permutation(np.arange(n) % len(SHAPES))
    coverage = _coverage(y, rng, image_size)[:, None]
    foreground = rng.random((n, channels, 1, 1), dtype=np.float32)
    background = (foreground + rng.uniform(0.3, 0.7, (n, 1, 1, 1)).astype(np.float32)) % 1  # |contrast| >= 0.3
    X = background + (foreground - background) * coverage
    X += NOISE * rng.standard_normal(X.shape, dtype=np.float32)
    return np.clip(X, 0, 1, out=X), y.astype(np.int64)


def _coverage(y, rng, image_size):
    """Fraction of each pixel the shape of class y[i] covers, shape (n, image_size, image_size)."""
    n, side = len(y), image_size * SUPERSAMPLE
    radius = rng.uniform(*SCALE_RANGE, n) * image_size
    centre = rng.uniform(radius[:, None], image_size - radius[:, None], (n, 2))
    grid = (np.arange(side, dtype=np.float32) + 0.5) / SUPERSAMPLE  # sample positions in pixels
    mask = np.empty((n, side, side), dtype=bool)
    for label, draw in enumerate(SHAPES.values()):
        idx = np.flatnonzero(y == label)
        u = (grid[None, None, :] - centre[idx, 0, None, None]) / radius[idx, None, None]
        v = (grid[None, :, None] - centre[idx, 1, None, None]) / radius[idx, None, None]
        mask[idx] = draw(u, v)
    return mask.reshape(n, image_size, SUPERSAMPLE, image_size, SUPERSAMPLE).mean(axis=(2, 4), dtype=np.float32)


def load_builtin(num_train=10000, num_test=2000, image_size=16, channels=3, seed=0, dtype=np.float32):
    """The built-in shapes dataset, identical for identical arguments.

    Returns
    -------
    dict with X_train (num_train, channels, image_size, image_size), y_train (num_train,),
    X_test, y_test and classes, images in [0, 1] of `dtype`.
    """
    dtype = float_dtype(dtype)
    rng = np.random.default_rng(seed)
    X_train, y_train = make_shapes(num_train, rng, image_size, channels)
    X_test, y_test = make_shapes(num_test, rng, image_size, channels)
    return {"X_train": X_train.astype(dtype), "y_train": y_train, "X_test": X_test.astype(dtype),
            "y_test": y_test, "classes": CLASSES}
