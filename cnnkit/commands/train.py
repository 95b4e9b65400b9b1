"""`cnnkit train`: train a model on a dataset and save it with its history and curves.

The run itself (and what it writes into its output folder) is cnnkit.training. Started by
`mpiexec -n N`, it trains one model data-parallel over the N ranks (cnnkit.distributed).
"""
import argparse
import sys
import textwrap
from pathlib import Path

import numpy as np

from cnnkit.commands._options import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    add_data_options,
    add_runtime_options,
)
from cnnkit.distributed import REDUCTIONS, DataParallel, world_communicator
from cnnkit.recipes import DATASET_CHOICES, MODEL_CHOICES, RECIPES, UPDATE_RULES, WIDTHS, describe_recipe
from cnnkit.training import OUTPUTS, TrainingRun

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
    train.add_argument("--dataset", choices=DATASET_CHOICES, default="builtin",
                       help="builtin (generated, no files), mnist, fashion-mnist or cifar10 (default: builtin)")
    add_data_options(train)
    train.add_argument("--model", choices=MODEL_CHOICES,
                       help="convnet (2 conv layers), vgg (conv-batchnorm-relu-pool stages), resnet (CIFAR "
                            "ResNet-6n+2: --depth 6n+2 layers, default 20; stages of --width, 2x, 4x filters, default "
                            "16), threelayer (the "
                            "course's ThreeLayerConvNet), twolayer, fc (FullyConnectedNet with batchnorm), maxout "
                            "(2 maxout layers with dropout) (default: the recipe's)")
    widths = ", ".join(f"{model} {width}" for model, width in WIDTHS.items())
    train.add_argument("--width", type=POSITIVE_INT,
                       help="base width of the model: filters of the first conv layer (convnet, vgg, threelayer), "
                            f"else hidden units (default: the recipe's, for another model its own: {widths})")
    train.add_argument("--depth", type=POSITIVE_INT,
                       help="conv layers per stage of vgg (default: the recipe's, else 1)")
    train.add_argument("--hidden", type=POSITIVE_INT, metavar="UNITS",
                       help="units of convnet's linear layer after the convs (default: the recipe's, else 128)")
    train.add_argument("--dropout", type=NON_NEGATIVE_FLOAT,
                       help="dropout probability of convnet, vgg, fc, maxout (default: the recipe's)")
    train.add_argument("--epochs", type=POSITIVE_INT, help="default: the recipe's")
    train.add_argument("--batch-size", type=POSITIVE_INT, help="default: the recipe's")
    train.add_argument("--lr", type=POSITIVE_FLOAT, help="initial learning rate (default: the recipe's)")
    train.add_argument("--update-rule", choices=UPDATE_RULES, help="default: the recipe's")
    train.add_argument("--schedule", choices=("cosine", "step", "constant"),
                       help="learning rate over the epochs: cosine decay to 0, step (x0.1 every 10 epochs) "
                            "or constant (default: the recipe's)")
    train.add_argument("--warmup", type=NON_NEGATIVE_INT, metavar="UPDATES",
                       help="raise the learning rate linearly over the first UPDATES updates (default: the recipe's)")
    train.add_argument("--reg", type=NON_NEGATIVE_FLOAT, help="L2 regularisation (default: the recipe's)")
    train.add_argument("--l1", type=NON_NEGATIVE_FLOAT, default=0.0,
                       help="L1 regularisation; with --reg, elastic net (default: 0)")
    train.add_argument("--max-norm", type=POSITIVE_FLOAT, metavar="C",
                       help="after every update, rescale each unit's incoming weights to norm <= C (default: off)")
    train.add_argument("--num-train", type=POSITIVE_INT, help="use only the first N training images")
    train.add_argument("--num-val", type=POSITIVE_INT,
                       help="training images held out for validation (default: the recipe's; at most a fifth "
                            "of --num-train)")
    train.add_argument("--no-augment", action="store_true", help="no augmentation (random crops, flips, rotations)")
    train.add_argument("--seed", type=int, default=0, help="seed of weights, split, order, augmentation (default: 0)")
    train.add_argument("--out", type=Path, default=Path("cnnkit-out"), help="output folder (default: ./cnnkit-out)")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/checkpoint.npz (give the same options; --epochs may grow)")
    train.add_argument("--allreduce", choices=REDUCTIONS, default="ordered",
                       help="under mpiexec, how gradients are summed over the ranks: ordered (in rank order: the "
                            "same bits on every rerun with the same N) or mpi (the MPI library's Allreduce) "
                            "(default: ordered)")
    train.add_argument("--sync-batchnorm", action="store_true",
                       help="under mpiexec, batchnorm layers normalise with the statistics of the whole batch, "
                            "summed over the ranks (as one process trains), not of each rank's share (default: off)")
    add_runtime_options(train)
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
    from tqdm import tqdm

    per_epoch = trainer.iteration // trainer.epoch
    loss = np.mean(trainer.loss_history[-per_epoch:])
    tqdm.write(f"epoch {trainer.epoch}/{trainer.num_epochs}: loss {loss:.4f}, "
               f"train accuracy {trainer.train_acc_history[-1]:.2%}, val accuracy {trainer.val_acc_history[-1]:.2%}")
    sys.stdout.flush()
