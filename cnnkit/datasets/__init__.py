"""Datasets: the built-in shapes, MNIST, Fashion-MNIST and CIFAR-10, and their preprocessing.

Loaders return a dict with X_train, y_train, X_test, y_test (images as floats in [0, 1],
NCHW; labels int64) and classes. Official files are downloaded on request into
`default_cache_dir()` with an md5 check.
"""
from cnnkit.datasets._download import DownloadError, default_cache_dir
from cnnkit.datasets.builtin import load_builtin, make_shapes
from cnnkit.datasets.files import DATASETS, load_cifar10, load_dataset, load_fashion_mnist, load_mnist
from cnnkit.datasets.preprocessing import (
    augmentation,
    channel_stats,
    normalize,
    random_affine,
    random_crop,
    random_flip,
    train_val_split,
)
from cnnkit.errors import DatasetError

__all__ = [
    "DATASETS", "DatasetError", "DownloadError", "augmentation", "channel_stats", "default_cache_dir",
    "load_builtin", "load_cifar10", "load_dataset", "load_fashion_mnist", "load_mnist", "make_shapes",
    "normalize", "random_affine", "random_crop", "random_flip", "train_val_split",
]
