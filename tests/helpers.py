"""Shared test helpers, imported as a module (`from helpers import ...`): the tolerance each dtype
allows, where the checkout and the real data are, Python in a process of its own, and dataset files
written in the official formats."""
import gzip
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cnnkit.datasets.files import IDX_FILES

TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

ROOT = Path(__file__).resolve().parents[1]
"""The checkout: the folder holding tests/ and README.md."""

DATA_DIR = Path(os.environ.get("CNNKIT_DATA_DIR") or ROOT.parent / "shared" / "data")
"""The real datasets (mnist/, cifar-10-subset/, ...): $CNNKIT_DATA_DIR, else ../shared/data beside the checkout."""


def run_python(code, *args, env=None, check=True):
    """`python -c code args` in an empty folder, so that it imports the installed cnnkit, not the
    checkout's source tree (which has no compiled kernels under CI's non-editable install)."""
    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                              check=check, cwd=folder)


def idx_bytes(array):
    """An uint8 array in IDX format: 00 00 08 ndim, big-endian dims, data."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_dataset(folder, rng, n_train=12, n_test=5, compress=True, size=28):
    """The four MNIST files with random content; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"X_train": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "X_test": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for key, stem in IDX_FILES.items():
        raw = idx_bytes(arrays[key])
        (folder / (stem + ".gz" if compress else stem)).write_bytes(gzip.compress(raw) if compress else raw)
    return arrays


def py2_pickle(value):
    """`value` pickled the way Python 2 wrote CIFAR-10: protocol 2, byte strings as BINSTRING.

    Handles dicts, lists, ints, bytes and uint8 arrays (numpy's protocol-2 form).
    """
    if isinstance(value, dict):
        return b"}(" + b"".join(py2_pickle(k) + py2_pickle(v) for k, v in value.items()) + b"u"
    if isinstance(value, list):
        return b"](" + b"".join(py2_pickle(v) for v in value) + b"e"
    if isinstance(value, int):
        return b"J" + struct.pack("<i", value)
    if isinstance(value, bytes):
        return b"T" + struct.pack("<I", len(value)) + value
    dtype = b"cnumpy\ndtype\n" + py2_pickle(b"u1") + b"K\x00K\x01\x87R(K\x03" + py2_pickle(b"|") + \
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = b"(" + b"".join(py2_pickle(d) for d in value.shape) + b"t"
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_pickle(b"b") + b"\x87R(K\x01"
            + shape + dtype + b"\x89" + py2_pickle(value.tobytes()) + b"tb")


def write_cifar_batch(path, images, labels):
    path.write_bytes(b"\x80\x02" + py2_pickle({b"batch_label": b"test", b"labels": [int(v) for v in labels],
                                              b"data": images.reshape(len(images), -1)}) + b".")


def write_cifar_dataset(folder, rng, n=4):
    """The official file set with `n` images per batch; returns all images and labels written."""
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (6 * n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * n)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        write_cifar_batch(folder / name, images[i * n:(i + 1) * n], labels[i * n:(i + 1) * n])
    meta = {b"num_cases_per_batch": n, b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(b"\x80\x02" + py2_pickle(meta) + b".")
    return images, labels


# MPICH on 127.0.0.1 only (its TCP netmod on the loopback interface); set before MPI_Init, i.e. importing mpi4py.MPI
MPI_LOOPBACK = {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "lo"}
