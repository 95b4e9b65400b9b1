"""Readers for the official file formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10 pickles.

CIFAR-10's "python version" is a Python 2 pickle of a dict holding a numpy array. Plain
pickle.load would run whatever callable a file names, so batches are read with an
unpickler that resolves no global at all: the three numpy names such a file contains
(numpy's array reconstructor, ndarray and dtype) map to inert stand-ins that only
record their arguments, and the uint8 array is rebuilt here with np.frombuffer.
"""
import gzip
import io
import math
import os
import pickle
import struct
import zlib
from types import MappingProxyType

import numpy as np

from cnnkit.errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08
DEFLATE_RATIO = 1032  # the most deflate can expand: a gzip file holds at most this much per byte
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                 OverflowError, RecursionError, struct.error)  # what a damaged pickle raises


def read_idx(path):
    """Array stored in an IDX file (gzip-compressed or not).

    The header's claimed size is checked against what the file can hold before any
    data is read.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray of uint8, of the shape the file's header gives, e.g. (N, 28, 28) or (N,)

    Raises
    ------
    DatasetError
        (A ValueError.) Not an IDX file of unsigned bytes, truncated, longer than its
        header says, or corrupt gzip data.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        compressed = file.read(2) == GZIP_MAGIC
        file.seek(0)
        try:
            if not compressed:
                return _parse_idx(file, size, path, compressed)
            with gzip.GzipFile(fileobj=file) as stream:
                return _parse_idx(stream, size, path, compressed)
        except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            raise DatasetError(f"{path}: corrupt gzip data ({type(error).__name__}: {error})") from error


def _parse_idx(stream, size, path, compressed):
    """The array an IDX stream from a file of `size` bytes holds, its header checked against that size."""
    most = size * DEFLATE_RATIO if compressed else size
    magic = stream.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0":
        raise DatasetError(f"{path}: not an IDX file (expected magic bytes 00 00, got {magic[:2].hex(' ')})")
    if magic[2] != IDX_UBYTE:
        raise DatasetError(f"{path}: expected unsigned byte data (IDX type 0x08), got type 0x{magic[2]:02x}")
    ndim = magic[3]
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header ({4 + len(dims)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    header, count = 4 + len(dims), math.prod(shape)
    data = stream.read(count + 1) if header + count <= most else b""  # one more byte shows trailing data
    if len(data) != count:
        if header + count > most:
            holds = f"at most {most}" if compressed else most
        else:
            holds = "more" if len(data) > count else header + len(data)
        raise DatasetError(f"{path}: header gives shape {shape}, so {header + count} bytes are expected, "
                           f"but the file holds {holds}")
    return np.frombuffer(data, np.uint8).reshape(shape)


class _Inert:
    """Stand-in for a numpy global: keeps its constructor arguments and pickled state."""

    def __init__(self, *args):
        self.args, self.state = args, None

    def __setstate__(self, state):
        self.state = state


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that maps numpy's array names to `_Inert` and refuses every other global.

    It extends pickle's pure-Python unpickler, whose memo is a dict: the C one sizes its
    memo array by the largest index, so one opcode saying "remember this as item
    175399797" would make it allocate 2.8 GB. Of that unpickler's opcodes, only BYTEARRAY8
    allocates what it claims before reading it; it is refused.
    """

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    })

    def _refuse_bytearray(self):
        raise pickle.UnpicklingError("BYTEARRAY8 (it allocates the length it claims) is not in a CIFAR-10 pickle")

    dispatch = MappingProxyType({**pickle._Unpickler.dispatch, pickle.BYTEARRAY8[0]: _refuse_bytearray})

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
    if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
        raise DatasetError(f"{path}: malformed array shape {shape!r}")
    expected, got = math.prod(shape), len(raw) if isinstance(raw, bytes) else type(raw).__name__
    if got != expected:
        raise DatasetError(f"{path}: an array of shape {shape} needs {expected} bytes of data, got {got}")
    return np.frombuffer(raw, np.uint8).reshape(shape)


def read_pickle(path):
    """Object stored in a Python 2 or 3 pickle, read without running any code from the file.

    Raises DatasetError (a ValueError) for a damaged pickle or one naming anything but numpy arrays.
    """
    with open(path, "rb") as file:
        raw = file.read()  # unpickled from memory: a claimed length never allocates more than the file
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except PICKLE_ERRORS as error:
        raise DatasetError(f"{path}: not a CIFAR-10 pickle ({type(error).__name__}: {error})") from error


def read_cifar_batch(path, num_classes=10):
    """Images and labels of one CIFAR-10 batch file (data_batch_1 ... test_batch).

    Returns
    -------
    images : ndarray of uint8, shape (N, 3, 32, 32)
    labels : ndarray of int64, shape (N,)

    Raises
    ------
    DatasetError
        (A ValueError.) A damaged pickle, or not a dict of N x 3072 uint8 pixels and N labels
        in [0, num_classes).
    """
    batch = read_pickle(path)
    if not (isinstance(batch, dict) and b"data" in batch and b"labels" in batch):
        raise DatasetError(f"{path}: expected a dict with b'data' and b'labels'")
    images = _uint8_array(batch[b"data"], path)
    labels = batch[b"labels"]
    if not (isinstance(labels, list) and all(type(label) is int and 0 <= label < num_classes for label in labels)):
        raise DatasetError(f"{path}: labels must be integers in [0, {num_classes}), in a list")
    labels = np.array(labels, dtype=np.int64)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or labels.shape != images.shape[:1]:
        raise DatasetError(
            f"{path}: expected data of shape (N, 3072) and N labels, got {images.shape} and {labels.shape}")
    return images.reshape(-1, 3, 32, 32), labels


def read_cifar_meta(path, num_classes=10):
    """The class names in a CIFAR-10 batches.meta file, a tuple of num_classes str.

    Raises DatasetError (a ValueError) unless it holds num_classes UTF-8 names under b'label_names'.
    """
    meta = read_pickle(path)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not (isinstance(names, list) and len(names) == num_classes and all(isinstance(n, bytes) for n in names)):
        raise DatasetError(f"{path}: expected {num_classes} names (bytes) under b'label_names'")
    try:
        return tuple(name.decode() for name in names)
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: class names are not UTF-8 ({error})") from error


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
