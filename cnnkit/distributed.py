"""Data-parallel training on MPI: the few collective operations the Trainer needs.

Every rank holds the whole model and takes its slice of each global batch; one flat
buffer of gradients per step is summed over the ranks, so every rank applies the same
update and optimiser state never travels. mpi4py is imported only when a communicator
is asked for (extra ``cnnkit[mpi]``); only its buffer-based (upper-case) calls are used.

Reductions:

- ``"mpi"``: the MPI library's ``Allreduce``; its summation order is the library's own
  choice (it may differ between N, message sizes and libraries).
- ``"ordered"``: rank r gathers part r of every rank's buffer (``Alltoall``), sums the N
  copies in rank order and hands its sum to all (``Allgather``): reruns with the same N
  give the same bits whatever the library does inside, and each rank sends and receives
  (N-1)/N of the buffer twice, as a ring allreduce does.

Batchnorm layers normalise with the statistics of each rank's slice unless
`synchronize_batchnorm` hands them a sum over the ranks (the Trainer's sync_batchnorm).
"""
import contextlib
import os
import sys
import time
import traceback

import numpy as np

from cnnkit.layers import BatchNorm1d, BatchNorm2d

REDUCTIONS = ("ordered", "mpi")
ABORT_GRACE = 0.5  # seconds a failing rank waits between printing its error and MPI Abort (see abort_on_error)
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")  # set by mpiexec


def launched_size(environ=None):
    """How many ranks mpiexec started this process among, from MPI's environment variables (1: none)."""
    environ = os.environ if environ is None else environ
    sizes = [int(environ[name]) for name in SIZE_VARIABLES if environ.get(name, "").isdigit()]
    return max(sizes, default=1)


def world_communicator(environ=None):
    """MPI.COMM_WORLD when mpiexec started this process as one of several ranks, else None.

    Raises
    ------
    ImportError
        MPI's variables say several ranks but mpi4py is missing: without it every rank
        would train its own copy of the model into the same output folder.
    """
    size = launched_size(environ)
    if size == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"started by mpiexec as one of {size} ranks, but mpi4py is not installed; "
                          "install the extra: pip install 'cnnkit[mpi]'") from error
    return MPI.COMM_WORLD


def synchronize_batchnorm(model, sum_over_ranks):
    """Make every BatchNorm1d and BatchNorm2d of `model`, in containers too, train on every rank's batch.

    Like PyTorch's SyncBatchNorm.convert_sync_batchnorm: sets each layer's sum_over_ranks (see
    cnnkit.layers.BatchNorm1d), so its training statistics and its backward sums are those
    of the whole global batch.

    Parameters
    ----------
    model : cnnkit.layers.Layer or a network with `layers` (e.g. cnnkit.models.Sequential)
    sum_over_ranks : callable or None
        ``sum_over_ranks(a)``: the 1-D float64 array a summed over the ranks, the same on
        each (e.g. DataParallel.sum); None: each rank's own batch again.

    Returns
    -------
    list of the layers set

    Raises
    ------
    ValueError
        The model holds no batchnorm layer.
    """
    layers = [layer for layer in _layers(model) if isinstance(layer, (BatchNorm1d, BatchNorm2d))]
    if not layers:
        raise ValueError(f"synchronized batchnorm needs BatchNorm1d or BatchNorm2d layers; "
                         f"{type(model).__name__} has none")
    for layer in layers:
        layer.sum_over_ranks = sum_over_ranks
    return layers


def _layers(node):
    """node and every layer inside it: a container's children, a network's layers, in order."""
    yield node
    children = getattr(node, "children", None)
    for child in children.values() if isinstance(children, dict) else getattr(node, "layers", ()):
        yield from _layers(child)


class DataParallel:
    """A communicator and the reduction the Trainer sums gradients with.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    reduction : "ordered" or "mpi"
        See the module docstring.
    """

    def __init__(self, comm, reduction="ordered"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        from mpi4py import MPI

        self.comm, self.reduction, self._mpi = comm, reduction, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def __repr__(self):
        return f"DataParallel(rank {self.rank} of {self.size}, reduction={self.reduction!r})"

    def span(self, n):
        """(start, stop) of this rank's part of range(n): contiguous parts in rank order, the first
        n % size ranks one longer (some may be empty)."""
        base, longer = divmod(n, self.size)
        start = self.rank * base + min(self.rank, longer)
        return start, start + base + (self.rank < longer)

    def shard(self, indices):
        """This rank's part of the 1-D array `indices` (see span)."""
        return indices[slice(*self.span(len(indices)))]

    def broadcast(self, arrays):
        """Overwrite each array of the dict `arrays` (C-contiguous) with rank 0's, in key order."""
        for key in sorted(arrays):
            self.comm.Bcast(arrays[key], root=0)

    def broadcast_bytes(self, data):
        """Rank 0's `data` (bytes) on every rank; the others pass anything."""
        size = np.array([len(data) if self.rank == 0 else 0], dtype=np.int64)
        self.comm.Bcast(size, root=0)
        buffer = np.frombuffer(data, np.uint8).copy() if self.rank == 0 else np.empty(int(size[0]), np.uint8)
        self.comm.Bcast(buffer, root=0)
        return buffer.tobytes()

    def sum(self, buffer):
        """Sum the 1-D array `buffer` over the ranks, in place, with this object's reduction; returns it."""
        if self.reduction == "mpi":
            self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
            return buffer
        width = -(-len(buffer) // self.size)  # rank r sums part r of the buffer
        parts = np.zeros((self.size, width), dtype=buffer.dtype)
        parts.reshape(-1)[:len(buffer)] = buffer
        received = np.empty_like(parts)
        self.comm.Alltoall(parts, received)  # received[r]: rank r's values of this rank's part
        total = received[0].copy()
        for row in received[1:]:
            total += row
        self.comm.Allgather(total, parts)
        buffer[:] = parts.reshape(-1)[:len(buffer)]
        return buffer

    def count(self, counts):
        """Integer counts (sequence) summed over the ranks: exact in any order."""
        counts = np.asarray(counts, dtype=np.int64)
        self.comm.Allreduce(self._mpi.IN_PLACE, counts, op=self._mpi.SUM)
        return counts

    def average(self, arrays):
        """Replace each floating array of the dict `arrays` by its mean over the ranks (key order)."""
        for key in sorted(arrays):
            if arrays[key].dtype.kind == "f":
                total = self.sum(np.array(arrays[key], copy=True).reshape(-1))
                arrays[key] = (total / arrays[key].dtype.type(self.size)).reshape(arrays[key].shape)

    @contextlib.contextmanager
    def abort_on_error(self):
        """On an exception in the block: print it once, from this rank, and end every rank (MPI Abort).

        A rank that stopped on its own would leave the others waiting in a collective forever. The message is
        given ABORT_GRACE to reach mpiexec's output first: Abort kills the processes that forward it (the
        message was lost so from a loaded machine's CI).
        """
        try:
            yield
        except BaseException as error:  # KeyboardInterrupt too: the other ranks must not wait
            message = " ".join(str(error).split()) or type(error).__name__
            where = f"rank {self.rank} of {self.size}"
            if isinstance(error, (OSError, ValueError, ImportError, ArithmeticError)):
                print(f"cnnkit ({where}): error: {message}", file=sys.stderr)
            else:
                print(f"cnnkit ({where}): {''.join(traceback.format_exception(error)).rstrip()}", file=sys.stderr)
            sys.stderr.flush()
            time.sleep(ABORT_GRACE)  # for mpiexec to forward the message: Abort kills the processes that carry it
            self.comm.Abort(1)
