"""`cnnkit train`: train a model on a dataset and save it with its history and curves.

The run itself (and what it writes into its output folder) is cnnkit.training. Started by
`mpiexec -n N`, it trains one model data-parallel over the N ranks (cnnkit.distributed).
"""
import argparse
import sys
import textwrap

import numpy as np

from cnnkit.distributed import DataParallel, world_communicator
from cnnkit.recipes import RECIPES, describe_recipe
from cnnkit.training import OUTPUTS, TrainingRun, add_training_options

PARALLEL_HELP = """\
on N processes or machines (extra: pip install 'cnnkit[mpi]'):
  mpiexec -n N cnnkit train [options]                   N ranks on this machine
  mpiexec -f hostfile -n N cnnkit train [options]       N ranks on the hosts of hostfile
  One model trained data-parallel: --batch-size stays the whole batch, split over the ranks;
  gradients are summed every step; batchnorm uses each rank's share of the batch, or with
  --sync-batchnorm the whole batch. The data must sit at the same path on every machine;
  rank 0 writes --out. Give each rank --threads cores / ranks per machine. --resume works
  with any N. A rank that fails ends the job."""


def add_parser(commands):
    recipes = "\n".join(textwrap.fill(describe_recipe(dataset), 88, initial_indent="  ", subsequent_indent="    ",
                                       break_on_hyphens=False) for dataset in RECIPES)
    train = commands.add_parser("train", help="train a model and save it with its curves",
                                description="Train a model; with no options, a small convnet on the built-in "
                                            "shapes data (about 30 s on 2 cores).",
                                epilog=f"recipes: what --dataset trains unless the options say otherwise\n{recipes}"
                                       f"\n\n{PARALLEL_HELP}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_options(train)
    train.set_defaults(run=run)


def run(args):
    comm = world_communicator()
    if comm is None:
        return _train(args, None)
    with DataParallel(comm).abort_on_error():
        return _train(args, comm)


def _train(args, comm):
    ranks = "" if comm is None else f" on {comm.Get_size()} ranks"
    root = comm is None or comm.Get_rank() == 0
    training = TrainingRun(args, args.out, resume=args.resume, comm=comm, callbacks=[report_epoch] if root else [],
                           verbose=root)
    data = training.data
    if root:
        print(f"training {args.model} ({training.model.num_params:,} parameters) on {args.dataset}{ranks}: "
              f"{len(data['X_train'])} training, {len(data['X_val'])} validation images", flush=True)
    info = training.train()
    if root:
        print(f"test accuracy: {info['test_accuracy']:.2%} on {len(data['X_test'])} images "
              f"(training took {training.seconds:.0f} s)")
        print(f"wrote {args.out}/: {', '.join(OUTPUTS)}")
    return 0


def report_epoch(trainer):
    """One line per epoch, printed above the progress bar."""
    from tqdm.auto import tqdm

    per_epoch = trainer.iteration // trainer.epoch
    loss = np.mean(trainer.loss_history[-per_epoch:])
    tqdm.write(f"epoch {trainer.epoch}/{trainer.num_epochs}: loss {loss:.4f}, "
               f"train accuracy {trainer.train_acc_history[-1]:.2%}, val accuracy {trainer.val_acc_history[-1]:.2%}")
    sys.stdout.flush()
