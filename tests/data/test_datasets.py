"""Loaders on small files written in each official format, and on ../shared/data when present."""
import gzip
import pickle

import numpy as np
import pytest
from helpers import DATA_DIR, idx_bytes, py2_pickle, write_cifar_dataset, write_idx_dataset

from cnnkit.datasets import DatasetError, load_cifar10, load_dataset, load_fashion_mnist, load_mnist
from cnnkit.datasets._formats import read_cifar_batch, read_idx
from cnnkit.datasets.files import CIFAR_FOLDER


def test_py2_pickle_helper_matches_what_pickle_reads(rng):
    images = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    batch = pickle.loads(b"\x80\x02" + py2_pickle({b"data": images, b"labels": [1, 2]}) + b".", encoding="bytes")
    np.testing.assert_array_equal(batch[b"data"], images)
    assert batch[b"labels"] == [1, 2]


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist])
def test_idx_loader_returns_nchw_floats_and_labels(tmp_path, rng, compress, loader, dtype):
    written = write_idx_dataset(tmp_path, rng, compress=compress)
    data = loader(tmp_path, dtype=dtype)
    assert data["X_train"].shape == (12, 1, 28, 28) and data["X_train"].dtype == dtype
    assert data["X_test"].shape == (5, 1, 28, 28)
    np.testing.assert_allclose(data["X_train"][:, 0] * 255, written["X_train"], rtol=1e-6)
    np.testing.assert_array_equal(data["y_test"], written["y_test"])
    assert data["y_train"].dtype == np.int64 and len(data["classes"]) == 10


def test_loader_rejects_non_float_dtype(tmp_path, rng):
    write_idx_dataset(tmp_path, rng)
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        load_mnist(tmp_path, dtype=np.int32)


def test_missing_file_names_it_and_suggests_download(tmp_path, rng):
    write_idx_dataset(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte.gz .* not found .* download=True"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("mangle, message", [
    (lambda raw: raw[:-1], "header gives shape .* but the file holds"),
    (lambda raw: b"\x01\x02" + raw[2:], "not an IDX file"),
    (lambda raw: raw[:2] + b"\x0d" + raw[3:], r"unsigned byte data \(IDX type 0x08\), got type 0x0d"),
    (lambda raw: raw[:6], "truncated IDX header"),
])
def test_corrupt_idx_file_is_a_dataset_error(tmp_path, rng, mangle, message):
    path = tmp_path / "file"
    path.write_bytes(mangle(idx_bytes(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))))
    with pytest.raises(DatasetError, match=message):
        read_idx(path)


def test_truncated_gzip_is_a_dataset_error(tmp_path, rng):
    path = tmp_path / "file.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 4, 4), np.uint8)))[:-10])
    with pytest.raises(DatasetError, match="corrupt gzip data"):
        read_idx(path)


def test_images_and_labels_must_agree(tmp_path, rng):
    write_idx_dataset(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    expected = r"test images must be \(N, H, W\) with N labels, got \(5, 28, 28\) and \(4,\)"
    with pytest.raises(DatasetError, match=expected):
        load_mnist(tmp_path)


def test_label_out_of_range_is_a_dataset_error(tmp_path, rng):
    write_idx_dataset(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(5, 10, np.uint8))))
    with pytest.raises(DatasetError, match=r"labels must be integers in \[0, 10\)"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("subfolder", ["", CIFAR_FOLDER])
def test_cifar10_reads_official_batches(tmp_path, rng, subfolder, dtype):
    images, labels = write_cifar_dataset(tmp_path / subfolder, rng)
    data = load_cifar10(tmp_path, dtype=dtype)
    assert data["X_train"].shape == (20, 3, 32, 32) and data["X_test"].shape == (4, 3, 32, 32)
    assert data["X_train"].dtype == dtype and data["y_train"].dtype == np.int64
    np.testing.assert_allclose(data["X_train"] * 255, images[:20], rtol=1e-6)
    np.testing.assert_array_equal(data["y_test"], labels[20:])
    assert data["classes"][3] == "class3"


class CreatesFile:
    """Unpickling this with plain pickle calls open(path, "w"), creating the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_cifar_reader_refuses_pickled_code(tmp_path, rng):
    write_cifar_dataset(tmp_path, rng)
    marker = tmp_path / "created-by-pickle"
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({"data": CreatesFile(marker)}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_3: .*refusing to load (builtins|io)\.open"):
        load_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("batch, message", [
    ({b"labels": [1]}, "expected a dict with b'data' and b'labels'"),
    ({b"data": [1, 2], b"labels": [1]}, "b'data' is not a pickled numpy array"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, r"expected data of shape \(N, 3072\) and N labels"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, r"labels must be integers in \[0, 10\)"),
    ({b"data": np.zeros((1, 100), np.uint8), b"labels": [1]}, r"expected data of shape \(N, 3072\)"),
])
def test_malformed_cifar_batch_is_a_dataset_error(tmp_path, rng, batch, message):
    write_cifar_dataset(tmp_path, rng)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02" + py2_pickle(batch) + b".")
    with pytest.raises(DatasetError, match=message):
        load_cifar10(tmp_path)


def test_truncated_cifar_batch_is_a_dataset_error(tmp_path, rng):
    write_cifar_dataset(tmp_path, rng)
    path = tmp_path / "data_batch_1"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="data_batch_1: not a CIFAR-10 pickle"):
        load_cifar10(tmp_path)


def test_cifar_array_with_wrong_byte_count_is_a_dataset_error(tmp_path, rng):
    write_cifar_dataset(tmp_path, rng)
    path = tmp_path / "test_batch"
    shape = b"(" + py2_pickle(4) + py2_pickle(3072) + b"t"
    path.write_bytes(path.read_bytes().replace(shape, b"(" + py2_pickle(5) + py2_pickle(3072) + b"t"))
    with pytest.raises(DatasetError, match=r"shape \(5, 3072\) needs 15360 bytes of data, got 12288"):
        load_cifar10(tmp_path)


def test_missing_cifar_folder_suggests_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 batches .* not found .* download=True"):
        load_cifar10(tmp_path)


def test_load_dataset_dispatches_and_names_choices(tmp_path, rng):
    write_idx_dataset(tmp_path, rng)
    assert load_dataset("mnist", tmp_path)["X_train"].shape == (12, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; expected one of builtin, mnist"):
        load_dataset("svhn")


# The real files in ../shared/data (skipped where absent, e.g. on a user's machine)

def shared(subfolder):
    folder = DATA_DIR / subfolder
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder} (set CNNKIT_DATA_DIR)")
    return folder


@pytest.mark.data
def test_real_mnist():
    data = load_mnist(shared("mnist"))
    assert data["X_train"].shape == (60000, 1, 28, 28) and data["X_test"].shape == (10000, 1, 28, 28)
    assert 0 <= data["X_train"].min() and data["X_train"].max() == 1
    assert np.bincount(data["y_test"]).tolist()[:3] == [980, 1135, 1032]  # the official test set's counts


@pytest.mark.data
def test_real_cifar10_subset():
    data = load_cifar10(shared("cifar-10-subset"))
    assert data["X_train"].shape == (5085, 3, 32, 32) and data["X_test"].shape == (1017, 3, 32, 32)
    assert data["classes"][0] == "airplane" and set(np.unique(data["y_train"])) == set(range(10))


@pytest.mark.data
def test_real_cifar_batch_agrees_with_plain_pickle():
    path = shared("cifar-10-subset") / "data_batch_1"
    with open(path, "rb") as f:
        expected = pickle.load(f, encoding="bytes")  # a trusted file: plain pickle as the oracle
    images, labels = read_cifar_batch(path)
    np.testing.assert_array_equal(images.reshape(len(images), -1), expected[b"data"])
    assert labels.tolist() == expected[b"labels"]
