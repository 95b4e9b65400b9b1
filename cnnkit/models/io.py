"""Reading and writing .npz files: atomic writes, JSON metadata, checked array assignment.

Files never need pickle: metadata is a JSON string stored as a 0-d unicode array, and
they are read with allow_pickle=False.
"""
import contextlib
import json
import os
import tempfile

import numpy as np


def write_npz(path, arrays, metadata_key, metadata):
    """Write `arrays` and `metadata` (JSON-serialisable, under `metadata_key`) to an .npz at path.

    Atomic: the data goes to a temporary file in the same folder, which then replaces
    path, so a reader sees either the old file or the complete new one.
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".cnnkit-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays, **{metadata_key: np.array(json.dumps(metadata))})
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def read_npz(path, metadata_key, file_format):
    """(metadata, arrays) from a file written by write_npz whose metadata has format `file_format`."""
    with np.load(path, allow_pickle=False) as file:
        arrays = {name: file[name] for name in file.files}
    metadata = json.loads(str(arrays.pop(metadata_key, "null")))
    if not isinstance(metadata, dict) or metadata.get("format") != file_format:
        raise ValueError(f"{os.fspath(path)!r} is not a {file_format} file")
    return metadata, arrays


def prefixed(prefix, arrays):
    """{prefix/key: array} for every item of `arrays`."""
    return {f"{prefix}/{key}": value for key, value in arrays.items()}


def unprefixed(prefix, arrays):
    """{key: array} for the entries of `arrays` named prefix/key."""
    start = len(prefix) + 1
    return {name[start:]: value for name, value in arrays.items() if name.startswith(prefix + "/")}


def assign_arrays(target, values, what):
    """target[key] = values[key] for every key, after checking keys, shapes and dtypes match.

    `what` names the arrays in errors, e.g. "parameters".
    """
    missing, unexpected = sorted(set(target) - set(values)), sorted(set(values) - set(target))
    if missing or unexpected:
        raise ValueError(f"{what} do not match the model: missing {missing}, unexpected {unexpected}")
    for key, value in values.items():
        current = np.asarray(target[key])
        if value.shape != current.shape or value.dtype != current.dtype:
            raise ValueError(f"{what} {key!r}: expected {current.dtype} of shape {current.shape}, "
                             f"got {value.dtype} of shape {value.shape}")
        target[key] = value
