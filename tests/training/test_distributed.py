"""The pieces of data-parallel training that one process can check: per-example draws, slices, launch checks."""
import itertools
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import fast, reference
from cnnkit._random import KeyedRows
from cnnkit.cli import main
from cnnkit.datasets import augmentation
from cnnkit.distributed import DataParallel, launched_size, world_communicator
from cnnkit.layers import Dropout
from cnnkit.models import FullyConnectedNet
from cnnkit.trainer import Trainer


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 9), st.data())
def test_keyed_rows_do_not_depend_on_the_split(rows, per_row, data):
    cut = data.draw(st.integers(0, rows))
    whole = KeyedRows([7, 2], first=3).random((rows, per_row))
    parts = [KeyedRows([7, 2], first=3).random((cut, per_row)), KeyedRows([7, 2], first=3 + cut).random(
        (rows - cut, per_row))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.dtype == np.float64 and ((whole >= 0) & (whole < 1)).all()


def test_keyed_rows_differ_by_key_and_call():
    stream = KeyedRows([1])
    first, second = stream.random((2, 5)), stream.random((2, 5))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, KeyedRows([2]).random((2, 5)))


@pytest.mark.parametrize("crop_padding, flip, degrees", [(2, True, 0.0), (2, False, 10.0)])
def test_an_image_is_augmented_alike_in_any_batch(crop_padding, flip, degrees):
    X = np.random.default_rng(0).standard_normal((9, 2, 8, 8)).astype(np.float32)
    augment = augmentation(crop_padding=crop_padding, flip=flip, degrees=degrees, scale=degrees / 100)
    whole = augment(X, KeyedRows([5, 1], first=10))
    parts = [augment(X[:4], KeyedRows([5, 1], first=10)), augment(X[4:], KeyedRows([5, 1], first=14))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6,), (5, 7), (4, 3, 2, 3)])
def test_dropout_keyed_by_row_is_the_same_in_both_backends_and_any_split(dtype, shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    param = {"p": 0.4, "mode": "train", "seed": 11, "row": 5}
    expected, mask = reference.dropout_forward(x, param)
    out, cache = fast.dropout_forward(x, param)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(fast.dropout_backward(x, cache), reference.dropout_backward(x, mask))
    tail = reference.dropout_forward(x[2:], {**param, "row": 7})[0]
    np.testing.assert_array_equal(tail, expected[2:])


def test_dropout_rows_need_a_seed():
    with pytest.raises(ValueError, match="needs dropout_param\\['seed'\\]"):
        reference.dropout_forward(np.ones((2, 3)), {"p": 0.5, "mode": "train", "row": 0})


def test_dropout_layer_masks_rows_by_their_position_in_the_whole_batch():
    x = np.ones((6, 10))
    whole, half = Dropout(0.5, rng=3), Dropout(0.5, rng=3)
    with Dropout.keyed(step=4, first=0):
        expected = whole.forward(x)
    with Dropout.keyed(step=4, first=3):
        np.testing.assert_array_equal(half.forward(x[3:]), expected[3:])
    assert not np.array_equal(expected[:3], expected[3:])


class StandIn:
    """The rank and size of a communicator, for DataParallel's arithmetic."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


@pytest.mark.parametrize("n, size", [(10, 3), (1, 2), (0, 2), (7, 7), (50, 4)])
def test_spans_cover_a_batch_in_rank_order(n, size):
    pytest.importorskip("mpi4py")
    spans = [DataParallel(StandIn(rank, size)).span(n) for rank in range(size)]
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    lengths = [stop - start for start, stop in spans]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


def test_reduction_is_checked():
    pytest.importorskip("mpi4py")
    with pytest.raises(ValueError, match="reduction must be one of"):
        DataParallel(StandIn(0, 1), reduction="fastest")


def test_one_rank_trains_the_bits_of_no_communicator():
    mpi = pytest.importorskip("mpi4py.MPI")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 70)
    X = (3 * np.eye(3, 6)[y] + rng.standard_normal((70, 6))).astype(np.float32)
    data = {"X_train": X, "y_train": y, "X_val": X[:20], "y_val": y[:20]}

    def trained(**options):
        model = FullyConnectedNet([12, 10], input_dim=6, num_classes=3, dropout=0.2, normalization="batchnorm",
                                  rng=1)
        return Trainer(model, data, update_rule="adam", batch_size=16, num_epochs=2, seed=3, verbose=False,
                       **options).train()

    alone, on_self = trained(), trained(comm=mpi.COMM_SELF)
    assert on_self.rank == 0 and on_self.num_ranks == 1
    for key, value in alone.model.params.items():
        np.testing.assert_array_equal(on_self.model.params[key], value, err_msg=key)
    assert on_self.val_acc_history == alone.val_acc_history


def test_launched_size_reads_the_variables_of_mpiexec():
    assert launched_size({}) == 1
    assert launched_size({"PMI_SIZE": "4", "PMI_RANK": "1"}) == 4
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert world_communicator({"PMI_SIZE": "1"}) is None


def test_train_under_mpiexec_without_mpi4py_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    assert main(["train", "--epochs", "1", "--num-train", "100", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "one of 2 ranks, but mpi4py is not installed" in err and "cnnkit[mpi]" in err
    assert not (tmp_path / "out").exists()
