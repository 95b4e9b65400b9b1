"""Reading and writing .npz files: atomic writes, JSON metadata, checked array assignment.

Files never need pickle: metadata is a JSON string stored as a 0-d unicode array, and
they are read with allow_pickle=False.
"""
import json
import math
import os
import tokenize
import zipfile
import zlib

import numpy as np

from cnnkit._files import atomic_write

ARRAY_KINDS = "biufcU"  # bool, numbers, and the JSON metadata as a unicode string
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
DEFLATE_RATIO = 1032  # the most deflate can expand: a compressed member holds at most this much per byte
NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError,
              ValueError, KeyError, OverflowError)  # what a damaged zip, .npy or JSON raises


def write_npz(path, arrays, metadata_key, metadata):
    """Write `arrays` and `metadata` (JSON-serialisable, under `metadata_key`) to an .npz at path, atomically."""
    with atomic_write(path) as file:
        np.savez(file, **arrays, **{metadata_key: np.array(json.dumps(metadata))})


def read_npz(path, metadata_key, file_format, error=ValueError):
    """(metadata, arrays) from a file written by write_npz whose metadata has format `file_format`.

    Every member is checked against the file's size before it is read, so a damaged or
    hostile file never makes this allocate more than the file could hold.

    Raises
    ------
    OSError
        The file cannot be opened (missing, no permission).
    error
        (A ValueError subclass such as ModelFileError.) The file is not such a file: not
        a zip archive, damaged, holding something other than plain numeric .npy arrays and
        the metadata, arrays with NaN or inf, or metadata of another format. The cause is
        chained.
    """
    name = os.fspath(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            with zipfile.ZipFile(file) as archive:
                arrays = dict(_read_member(archive, info, size) for info in archive.infolist())
            metadata = json.loads(str(arrays.pop(metadata_key, "null")))
            broken = [key for key, array in arrays.items() if array.dtype.kind in "fc" and not np.isfinite(array).all()]
            if broken:
                raise ValueError(f"arrays {broken} hold NaN or inf")
        except NPZ_ERRORS as cause:
            raise error(f"{name}: damaged or not a {file_format} file ({type(cause).__name__}: {cause})") from cause
    if not isinstance(metadata, dict) or metadata.get("format") != file_format:
        raise error(f"{name} is not a {file_format} file (no {metadata_key!r} naming that format)")
    return metadata, arrays


def _read_member(archive, info, file_size):
    """(name, array) of one .npy member, its claimed sizes checked against file_size first."""
    if not info.filename.endswith(".npy"):
        raise ValueError(f"member {info.filename!r} is not a .npy array")
    most = file_size * (1 if info.compress_type == zipfile.ZIP_STORED else DEFLATE_RATIO)
    if info.compress_size > file_size or info.file_size > most:
        raise ValueError(f"member {info.filename!r} claims {info.file_size} bytes, more than the file can hold")
    with archive.open(info) as member:
        return info.filename[:-len(".npy")], read_npy(member, info.file_size, f"member {info.filename!r}")


def read_npy(stream, size, name):
    """The array in .npy data of `size` bytes read from `stream` (a binary file object).

    The header is checked against `size` before any data is read, so nothing larger than
    the data could hold is allocated. Only plain arrays (bool, numbers, unicode) are read.

    Raises
    ------
    ValueError
        A header that is malformed, of an unsupported version or dtype, or that does not
        fit `size`. Its message starts with `name`.
    EOFError
        The data is shorter than `size`.
    """
    version = np.lib.format.read_magic(stream)
    if version not in HEADER_READERS:
        raise ValueError(f"{name}: unsupported .npy version {version}")
    try:
        shape, fortran_order, dtype = HEADER_READERS[version](stream)
    except tokenize.TokenError as error:  # numpy tokenizes the header to check it
        raise ValueError(f"{name}: malformed .npy header ({error})") from error
    if dtype.kind not in ARRAY_KINDS or dtype.itemsize == 0:
        raise ValueError(f"{name}: unsupported dtype {dtype}")
    if min(shape, default=0) < 0:
        raise ValueError(f"{name}: negative dimension in shape {shape}")
    count = math.prod(shape)
    if stream.tell() + count * dtype.itemsize != size:
        raise ValueError(f"{name}: header gives {dtype} of shape {shape}, which does not fit its {size} bytes")
    array = np.empty(count, dtype)
    if stream.readinto(array.view(np.uint8)) != array.nbytes or stream.read(1):
        raise EOFError(f"{name} is truncated")
    return array.reshape(shape, order="F" if fortran_order else "C")


def prefixed(prefix, arrays):
    """{prefix/key: array} for every item of `arrays`."""
    return {f"{prefix}/{key}": value for key, value in arrays.items()}


def unprefixed(prefix, arrays):
    """{key: array} for the entries of `arrays` named prefix/key."""
    start = len(prefix) + 1
    return {name[start:]: value for name, value in arrays.items() if name.startswith(prefix + "/")}


def assign_arrays(target, values, what, error=ValueError):
    """target[key] = values[key] for every key, once all keys, shapes and dtypes are checked to match.

    `what` names the arrays in errors, e.g. "parameters"; a mismatch raises `error`
    (a ValueError subclass, ValueError by default).
    """
    missing, unexpected = sorted(set(target) - set(values)), sorted(set(values) - set(target))
    if missing or unexpected:
        raise error(f"{what} do not match the model: missing {missing}, unexpected {unexpected}")
    for key, value in values.items():
        current = np.asarray(target[key])
        if value.shape != current.shape or value.dtype != current.dtype:
            raise error(f"{what} {key!r}: expected {current.dtype} of shape {current.shape}, "
                        f"got {value.dtype} of shape {value.shape}")
    target.update(values)  # only once every array fits
