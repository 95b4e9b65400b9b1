"""MNIST, Fashion-MNIST and CIFAR-10 from their official files, downloaded on request.

Every loader returns a dict ``{"X_train", "y_train", "X_test", "y_test", "classes"}``:
images as floats in [0, 1] laid out NCHW, labels as int64, and the class names.
"""
import tarfile
from pathlib import Path

import numpy as np

from cnnkit._files import atomic_write
from cnnkit.datasets._download import Source, default_cache_dir, fetch
from cnnkit.datasets._formats import check_labels, float_dtype, read_cifar_batch, read_cifar_meta, read_idx
from cnnkit.datasets.builtin import load_builtin
from cnnkit.errors import DatasetError

IDX_FILES = {
    "X_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = CIFAR_TRAIN + ("test_batch", "batches.meta")

SOURCES = {
    "mnist": Source(
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
        md5={"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion-mnist": Source(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        md5={"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
             "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
             "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar10": Source(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        md5={CIFAR_ARCHIVE: "c58f30108f718f92721af3b95e74349a"}),
}
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_mnist(root=None, download=False, dtype=np.float32):
    """MNIST digits from the four official IDX files (gzip-compressed or not).

    Parameters
    ----------
    root : str or Path, optional
        Folder holding the files; default ``default_cache_dir() / "mnist"``.
    download : bool
        Fetch missing files from the official mirrors (md5-checked) into `root`.
    dtype : float32 or float64

    Returns
    -------
    dict with X_train (60000, 1, 28, 28), y_train (60000,), X_test (10000, 1, 28, 28),
    y_test (10000,) and classes; pixels scaled to [0, 1].

    Raises
    ------
    FileNotFoundError
        A file is missing and download is False.
    DatasetError
        (A ValueError.) A file is damaged or not in the official format, or the images
        and labels do not match; the message names the file.
    DownloadError
        (An OSError.) download=True and every mirror failed.
    """
    return _load_idx("mnist", root, download, dtype, MNIST_CLASSES)


def load_fashion_mnist(root=None, download=False, dtype=np.float32):
    """Fashion-MNIST (Zalando) from its official IDX files; same layout and errors as `load_mnist`."""
    return _load_idx("fashion-mnist", root, download, dtype, FASHION_CLASSES)


def load_cifar10(root=None, download=False, dtype=np.float32):
    """CIFAR-10 from the official "python version" batches, read without running pickled code.

    Parameters
    ----------
    root : str or Path, optional
        Folder holding data_batch_1..5, test_batch and batches.meta, or the folder the
        official archive was extracted into (which holds cifar-10-batches-py/);
        default ``default_cache_dir() / "cifar10"``.
    download : bool
        Fetch and extract the official archive (md5-checked) into `root` if the batches
        are missing.
    dtype : float32 or float64

    Returns
    -------
    dict with X_train (N, 3, 32, 32), y_train (N,), X_test (M, 3, 32, 32), y_test (M,) and
    classes; pixels scaled to [0, 1]. N = 50000 and M = 10000 for the official files.

    Raises
    ------
    FileNotFoundError, DatasetError, DownloadError
        As for `load_mnist`; a pickle that names anything but numpy arrays is a DatasetError.
    """
    dtype = float_dtype(dtype)
    root = Path(root) if root is not None else default_cache_dir() / "cifar10"
    folder = _cifar_folder(root)
    if folder is None and download:
        _download_cifar(root)
        folder = root / CIFAR_FOLDER
    if folder is None:
        raise FileNotFoundError(
            f"CIFAR-10 batches ({', '.join(CIFAR_FILES)}) not found in {root} or {root / CIFAR_FOLDER}; "
            "pass download=True (--download) to fetch them")
    train = [read_cifar_batch(folder / name) for name in CIFAR_TRAIN]
    X_test, y_test = read_cifar_batch(folder / "test_batch")
    classes = read_cifar_meta(folder / "batches.meta")
    X_train, y_train = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    return _as_float({"X_train": X_train, "y_train": y_train,
                      "X_test": X_test, "y_test": y_test, "classes": classes}, dtype)


def load_dataset(name, root=None, download=False, dtype=np.float32):
    """Dataset `name` (one of DATASETS) as a dict like `load_mnist`'s; root is ignored for "builtin"."""
    if name == "builtin":
        return load_builtin(dtype=dtype)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name](root, download=download, dtype=dtype)


def _load_idx(name, root, download, dtype, classes):
    """The four IDX files of dataset `name`, checked against each other."""
    dtype = float_dtype(dtype)
    root = Path(root) if root is not None else default_cache_dir() / name
    arrays = {key: read_idx(_idx_path(name, root, stem, download)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"X_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"{root}: {split} images must be (N, H, W) with N labels, got {images.shape} and {labels.shape}")
        check_labels(labels, len(classes), root / IDX_FILES[f"y_{split}"])
        arrays[f"X_{split}"] = images[:, None]
        arrays[f"y_{split}"] = labels.astype(np.int64)
    return _as_float(dict(arrays, classes=classes), dtype)


def _idx_path(name, root, stem, download):
    """Path of IDX file `stem` in root, compressed or not, downloading it if asked."""
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    if download:
        return fetch(SOURCES[name], f"{stem}.gz", root)
    raise FileNotFoundError(f"{name} file {stem}.gz (or {stem}) not found in {root}; "
                            "pass download=True (--download) to fetch it")


def _cifar_folder(root):
    """root or root/cifar-10-batches-py, whichever holds all the batch files, else None."""
    for folder in (root, root / CIFAR_FOLDER):
        if all((folder / name).is_file() for name in CIFAR_FILES):
            return folder
    return None


def _download_cifar(root):
    """Fetch the official archive into root and extract the batch files into root/cifar-10-batches-py."""
    archive = fetch(SOURCES["cifar10"], CIFAR_ARCHIVE, root)
    folder = root / CIFAR_FOLDER
    folder.mkdir(exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in CIFAR_FILES:  # only these members, written by us: no path from the archive is trusted
                member = tar.extractfile(f"{CIFAR_FOLDER}/{name}")
                if member is None:
                    raise KeyError(f"{CIFAR_FOLDER}/{name} is not a regular file")
                with atomic_write(folder / name) as out:
                    out.write(member.read())
    except (tarfile.TarError, KeyError, OSError, EOFError) as error:
        raise DatasetError(f"{archive}: cannot extract the CIFAR-10 batches ({error}); delete it and retry") from error


DATASETS = {"builtin": load_builtin, "mnist": load_mnist, "fashion-mnist": load_fashion_mnist,
            "cifar10": load_cifar10}


def _as_float(data, dtype):
    """Images scaled from uint8 to [0, 1] in `dtype` (float32 or float64)."""
    for key in ("X_train", "X_test"):
        data[key] = data[key].astype(dtype) / dtype.type(255)
    return data
