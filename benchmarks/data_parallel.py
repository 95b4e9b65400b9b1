"""Images per second of one epoch of a `cnnkit train` recipe, on one process or on the ranks
of an MPI job, and what the per-step gradient sum costs.

    python benchmarks/data_parallel.py --threads 2                 # 1 process x 2 threads
    mpiexec -n 2 python benchmarks/data_parallel.py --threads 1    # 2 ranks x 1 thread
    mpiexec -n 2 python benchmarks/data_parallel.py --threads 1 --allreduce mpi

Rank 0 prints one line: the step loop's images per second (accuracy checks left out), and
per step the time the gradient sum takes once every rank has its gradients (mean and
median, ms; the ranks wait at a barrier first) and the bytes of the flat buffer each rank
contributes. Data from --data-dir (default:
$CNNKIT_DATA_DIR/<dataset>).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import cnnkit
from cnnkit._runtime import prefer_short_spin
from cnnkit.cli import build_parser
from cnnkit.distributed import REDUCTIONS, world_communicator
from cnnkit.training import TrainingRun


def timed(function, seconds):
    """function, appending the wall-clock seconds of each call to the list `seconds`."""
    def call(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return result
    return call


def after_barrier(comm, function):
    """function, called once every rank has reached it."""
    def call(*args, **kwargs):
        comm.Barrier()
        return function(*args, **kwargs)
    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--allreduce", choices=REDUCTIONS, default="ordered")
    parser.add_argument("--num-train", type=int, help="only the first N training images (default: all)")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(os.environ.get("CNNKIT_DATA_DIR", ".")) / args.dataset
    comm = world_communicator()
    prefer_short_spin()
    cnnkit.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out, threadpool_limits(limits=args.threads, user_api="blas"):
        argv = ["train", "--dataset", args.dataset, "--data-dir", str(data_dir), "--epochs", "1",
                "--allreduce", args.allreduce, "--out", out,
                *(["--num-train", str(args.num_train)] if args.num_train else [])]
        run = TrainingRun(build_parser().parse_args(argv), out, comm=comm)
        trainer, steps, sums = run.trainer, [], []
        trainer._step = timed(trainer._step, steps)
        if comm is not None:  # time the sum alone: the ranks meet at a barrier first
            trainer._parallel.sum = after_barrier(comm, timed(trainer._parallel.sum, sums))
        trainer.train()
    if trainer.rank == 0:
        ranks = trainer.num_ranks
        params = trainer.model.params.values()
        buffer_bytes = (sum(value.size for value in params) + 1) * np.result_type(*params).itemsize  # + the loss
        sums_ms = np.array(sums or [0.0]) * 1e3
        print(f"{args.dataset} recipe, {ranks} rank(s) x {args.threads} thread(s), {args.allreduce}: "
              f"{len(trainer.X_train) / sum(steps):.0f} images/s over {len(steps)} steps "
              f"(median step {np.median(steps) * 1e3:.1f} ms); gradient sum per step: mean {sums_ms.mean():.2f} ms, "
              f"median {np.median(sums_ms):.2f} ms; buffer {buffer_bytes:,} bytes per rank")


if __name__ == "__main__":
    main()
