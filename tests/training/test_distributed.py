"""The pieces of data-parallel training that one process can check: per-example draws, slices, launch checks,
synchronized batchnorm on ranks played by threads."""
import functools
import itertools
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import MPI_LOOPBACK
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import fast, reference
from cnnkit._backend import use_backend
from cnnkit._random import KeyedRows
from cnnkit.cli import main
from cnnkit.datasets import augmentation
from cnnkit.distributed import DataParallel, launched_size, synchronize_batchnorm, world_communicator
from cnnkit.gradcheck import numerical_gradient_array
from cnnkit.layers import BatchNorm1d, BatchNorm2d, Dropout
from cnnkit.models import FullyConnectedNet, TwoLayerNet, resnet
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


def test_one_rank_trains_the_bits_of_no_communicator(monkeypatch):
    for name, value in MPI_LOOPBACK.items():  # MPI_Init in this process: listen on 127.0.0.1 only
        monkeypatch.setenv(name, value)
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


class ThreadRanks:
    """Ranks played by threads of this process, for layers that sum over the ranks."""

    def __init__(self, size):
        self.size, self._arrays = size, [None] * size
        self._barrier = threading.Barrier(size, timeout=60)  # a rank left waiting fails the test

    def sum_over_ranks(self, rank):
        """Rank `rank`'s sum: every rank's array added in rank order, as DataParallel's ordered sum."""
        def sum_over_ranks(array):
            self._arrays[rank] = np.array(array, copy=True)
            self._barrier.wait()
            total = functools.reduce(np.add, self._arrays)
            self._barrier.wait()
            return total
        return sum_over_ranks

    def run(self, work):
        """[work(rank) for each rank], every rank on its own thread."""
        with ThreadPoolExecutor(self.size) as pool:
            return list(pool.map(work, range(self.size)))


def batchnorm(layer_class, gamma, beta):
    layer = layer_class(len(gamma), momentum=0.3, dtype=np.float64)
    layer.params["weight"][:], layer.params["bias"][:] = gamma, beta
    return layer


@pytest.mark.parametrize("backend", ["reference", "fast"])
@pytest.mark.parametrize("layer_class, shape", [(BatchNorm1d, (7, 4)), (BatchNorm2d, (7, 3, 2, 3))])
@pytest.mark.parametrize("sizes", [(4, 3), (3, 3, 1), (4, 0, 3)])
def test_synchronized_batchnorm_on_parts_is_batchnorm_of_the_whole_batch(backend, layer_class, shape, sizes):
    rng = np.random.default_rng(len(sizes))
    x = 3 + 2 * rng.standard_normal(shape)
    weights = rng.standard_normal(shape)  # the loss is mean over the rows of sum(weights * out)
    gamma, beta = 1 + rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    whole = batchnorm(layer_class, gamma, beta)
    with use_backend(backend):
        expected = whole.forward(x)
        expected_dx = whole.backward(weights / len(x))
        numerical_dx = numerical_gradient_array(lambda x: batchnorm(layer_class, gamma, beta).forward(x), x,
                                                weights / len(x))
        numerical_dgamma = numerical_gradient_array(lambda g: batchnorm(layer_class, g, beta).forward(x), gamma,
                                                    weights / len(x))
    np.testing.assert_allclose(expected_dx, numerical_dx, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(whole.grads["weight"], numerical_dgamma, rtol=1e-6, atol=1e-9)
    bounds, ranks = np.cumsum([0, *sizes]), ThreadRanks(len(sizes))

    def step(rank):  # this rank's output, and its gradients weighted by its share (as the Trainer does)
        layer, part = batchnorm(layer_class, gamma, beta), slice(bounds[rank], bounds[rank + 1])
        layer.sum_over_ranks, share = ranks.sum_over_ranks(rank), sizes[rank] / len(x)
        with use_backend(backend):
            out = layer.forward(x[part])
            dx = layer.backward(weights[part] / max(1, sizes[rank]))  # of the mean loss over its own rows
        return out, share * dx, {key: share * value for key, value in layer.grads.items()}, layer.buffers

    outs, dxs, grads, buffers = zip(*ranks.run(step))
    np.testing.assert_allclose(np.concatenate(outs), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(dxs), expected_dx, rtol=1e-10, atol=1e-12)
    for key, value in whole.grads.items():
        np.testing.assert_allclose(sum(rank[key] for rank in grads), value, rtol=1e-10, atol=1e-12, err_msg=key)
    for rank in buffers:
        for key, value in whole.buffers.items():
            np.testing.assert_array_equal(rank[key], buffers[0][key], err_msg=key)  # the same bits on every rank
            np.testing.assert_allclose(rank[key], value, rtol=1e-12, err_msg=key)


def test_synchronized_batchnorm_needs_rows_on_some_rank():
    ranks = ThreadRanks(2)

    def step(rank):
        layer = BatchNorm1d(3)
        layer.sum_over_ranks = ranks.sum_over_ranks(rank)
        with pytest.raises(ValueError, match="non-empty batch on some rank"):
            layer.forward(np.zeros((0, 3), np.float32))

    ranks.run(step)


def test_synchronize_batchnorm_finds_the_layers_inside_containers():
    model = resnet((3, 8, 8), 10, depth=8, width=4)
    expected = [layer for _, layer, name in model._chain.named_arrays("buffers") if name == "running_mean"]
    assert len(expected) == 1 + 3 * 2 + 2  # the stem, two per block, the two projection shortcuts
    summed = synchronize_batchnorm(model, np.negative)
    assert summed == expected and all(layer.sum_over_ranks is np.negative for layer in expected)
    synchronize_batchnorm(model, None)
    assert all(layer.sum_over_ranks is None for layer in expected)
    with pytest.raises(ValueError, match="needs BatchNorm1d or BatchNorm2d layers; TwoLayerNet has none"):
        synchronize_batchnorm(TwoLayerNet(6, hidden_dim=8, num_classes=3), np.negative)


def test_sync_batchnorm_without_a_communicator_trains_the_same_bits():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    data = {"X_train": (3 * np.eye(3, 6)[y] + rng.standard_normal((50, 6))).astype(np.float32), "y_train": y}

    def trained(**options):
        model = FullyConnectedNet([12], input_dim=6, num_classes=3, normalization="batchnorm", rng=1)
        return Trainer(model, data, batch_size=16, num_epochs=2, seed=3, verbose=False, **options).train().model

    alone, synchronized = trained(), trained(sync_batchnorm=True)
    for arrays in ("params", "buffers"):
        for key, value in getattr(alone, arrays).items():
            np.testing.assert_array_equal(getattr(synchronized, arrays)[key], value, err_msg=key)
    with pytest.raises(ValueError, match="TwoLayerNet has none"):
        Trainer(TwoLayerNet(6, hidden_dim=8, num_classes=3), data, sync_batchnorm=True)
