"""Readers for the official file formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10 pickles.

CIFAR-10's "python version" is a Python 2 pickle of a dict holding a numpy array. Plain
pickle.load would run whatever callable a file names, so batches are read with an
unpickler that resolves no global at all: the three numpy names such a file contains
(numpy's array reconstructor, ndarray and dtype) map to inert stand-ins that only
record their arguments, and the uint8 array is rebuilt here with np.frombuffer.
"""
import gzip
import pickle

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08


class DatasetError(ValueError):
    """A data file that is missing pieces, truncated, or not in the expected format."""


def read_idx(path):
    """Array stored in an IDX file (gzip-compressed or not).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray of uint8, of the shape the file's header gives, e.g. (N, 28, 28) or (N,)
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise DatasetError(f"{path}: not an IDX file (expected magic bytes 00 00, got {raw[:2].hex(' ')})")
    if raw[2] != IDX_UBYTE:
        raise DatasetError(f"{path}: expected unsigned byte data (IDX type 0x08), got type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: header gives shape {shape}, so {expected} bytes are expected, but the file holds {len(raw)}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _read_bytes(path):
    """Bytes of `path`, decompressed when it starts with the gzip magic number."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: corrupt gzip data ({error})") from error


class _Inert:
    """Stand-in for a numpy global: keeps its constructor arguments and pickled state."""

    def __init__(self, *args):
        self.args, self.state = args, None

    def __setstate__(self, state):
        self.state = state


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that maps numpy's array names to `_Inert` and refuses every other global."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    })

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}; a CIFAR-10 batch names only numpy arrays")
        return _Inert


def _uint8_array(value, path):
    """The uint8 array an `_Inert` array stand-in describes, checked against its byte count."""
    state = value.state if isinstance(value, _Inert) else None
    if not (isinstance(state, tuple) and len(state) == 5):
        raise DatasetError(f"{path}: b'data' is not a pickled numpy array")
    _, shape, dtype, _, raw = state
    if not (isinstance(dtype, _Inert) and dtype.args[:1] in ((b"u1",), ("u1",))):
        raise DatasetError(f"{path}: expected uint8 image data, got dtype {getattr(dtype, 'args', dtype)!r}")
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise DatasetError(f"{path}: malformed array shape {shape!r}")
    expected, got = int(np.prod(shape)), len(raw) if isinstance(raw, bytes) else type(raw).__name__
    if got != expected:
        raise DatasetError(f"{path}: an array of shape {shape} needs {expected} bytes of data, got {got}")
    return np.frombuffer(raw, np.uint8).reshape(shape)


def read_pickle(path):
    """Object stored in a Python 2 or 3 pickle, read without running any code from the file."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DatasetError(f"{path}: not a CIFAR-10 pickle ({error})") from error


def read_cifar_batch(path, num_classes=10):
    """Images and labels of one CIFAR-10 batch file (data_batch_1 ... test_batch).

    Returns
    -------
    images : ndarray of uint8, shape (N, 3, 32, 32)
    labels : ndarray of int64, shape (N,)
    """
    batch = read_pickle(path)
    if not (isinstance(batch, dict) and b"data" in batch and b"labels" in batch):
        raise DatasetError(f"{path}: expected a dict with b'data' and b'labels'")
    images = _uint8_array(batch[b"data"], path)
    labels = np.asarray(batch[b"labels"])
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or labels.shape != images.shape[:1]:
        raise DatasetError(
            f"{path}: expected data of shape (N, 3072) and N labels, got {images.shape} and {labels.shape}")
    check_labels(labels, num_classes, path)
    return images.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def float_dtype(dtype):
    """np.dtype(dtype) if it is float32 or float64, else TypeError."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_labels(labels, num_classes, path):
    """DatasetError unless every label is an integer in [0, num_classes)."""
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels must be integers in [0, {num_classes}), got {np.unique(labels)[:20]}")
