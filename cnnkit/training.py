"""One training run as `cnnkit train` does it: data, recipe, model, Trainer, outputs.

The `train` command, each trial of `cnnkit sweep` and every rank of an MPI job call this
module; the commands only parse options and print. A run writes into its output folder:

- model.npz        the trained model (cnnkit.models.load reads it)
- model.json       what predict/evaluate need besides the weights: dataset, class names,
                   image shape, the training set's per-channel mean and std, test accuracy
- history.json     loss per update, training/validation accuracy per epoch, test accuracy
- curves.png       loss and accuracy curves
- filters.png      what the first layer learned: its filters, or class templates (cnnkit.plots.plot_learned)
- checkpoint.npz   the state after the last epoch, which a resumed run continues from

Under MPI (a communicator given as `comm`), every rank runs the same TrainingRun on its
share of each batch and only rank 0 writes; a resumed run reads rank 0's checkpoint.
"""
import json
import tempfile
import time
from pathlib import Path

from cnnkit._arguments import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    add_data_options,
    add_runtime_options,
)
from cnnkit._files import replace_file
from cnnkit.distributed import REDUCTIONS, DataParallel
from cnnkit.recipes import (
    DATASET_CHOICES,
    MODEL_CHOICES,
    UPDATE_RULES,
    WIDTHS,
    architecture,
    build_model,
    make_trainer,
    recipe,
    training_data,
)

OUTPUTS = ("model.npz", "model.json", "history.json", "curves.png", "filters.png")


class TrainingRun:
    """The data, model and Trainer that `cnnkit train`'s options describe, trained into a folder.

    Parameters
    ----------
    options : argparse.Namespace
        The options of `cnnkit train` (unset ones are filled in from the recipe; see `setup`).
    out : path
        Output folder, created when missing; its checkpoint.npz is written after every epoch.
    resume : bool
        Continue from out/checkpoint.npz (FileNotFoundError when there is none).
    comm : mpi4py.MPI.Comm, optional
        Train data-parallel over its ranks (cnnkit.Trainer's comm; options.allreduce and
        options.sync_batchnorm, when set, are its reduction and sync_batchnorm); rank 0
        reads the checkpoint and writes the outputs.
    callbacks, verbose
        Given to the Trainer.
    """

    def __init__(self, options, out, resume=False, comm=None, callbacks=(), verbose=False):
        self.out = Path(out)
        self.writes = comm is None or comm.Get_rank() == 0
        checkpoint = self.out / "checkpoint.npz"
        if self.writes:
            self.out.mkdir(parents=True, exist_ok=True)
            if resume and not checkpoint.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}; train into {self.out} first")
        parallel = {} if comm is None else {"comm": comm, "reduction": getattr(options, "allreduce", "ordered"),
                                            "sync_batchnorm": getattr(options, "sync_batchnorm", False)}
        with tempfile.TemporaryDirectory(prefix="cnnkit-resume-") as folder:
            start = checkpoint if resume else None
            if resume and comm is not None:  # rank 0's file, wherever the other ranks run
                start = Path(folder) / "checkpoint.npz"
                start.write_bytes(DataParallel(comm).broadcast_bytes(checkpoint.read_bytes() if self.writes else b""))
            self.model, self.trainer, self.data, self.info = setup(
                options, callbacks=list(callbacks), checkpoint=checkpoint, resume=start, verbose=verbose, **parallel)
        self.seconds = None

    def train(self):
        """Train the remaining epochs, measure test accuracy (summed over the ranks), write the outputs (rank 0).

        Returns
        -------
        info : dict
            What model.json holds, test_accuracy included.
        """
        start = time.perf_counter()
        self.trainer.train()
        self.seconds = time.perf_counter() - start
        self.info["test_accuracy"] = self.trainer.check_accuracy(self.data["X_test"], self.data["y_test"])
        if self.writes:
            write_outputs(self.out, self.model, self.trainer, self.info)
        return self.info


def setup(options, **trainer_options):
    """The data, model and Trainer (untrained) that the options of `cnnkit train` describe.

    Also what each trial of `cnnkit sweep` trains. Options unset in options (None or absent)
    are filled in from the dataset's recipe (cnnkit.recipes.recipe); trainer_options go to
    the Trainer as they are. The Trainer gets the training and validation splits only.

    Returns
    -------
    model, trainer, data (dict of splits), info (dict for model.json)
    """
    val_from_recipe = getattr(options, "num_val", None) is None
    for name, value in recipe(options.dataset, getattr(options, "model", None)).items():
        if getattr(options, name, None) is None:
            setattr(options, name, value)
    if val_from_recipe and options.num_train:  # the recipe's split is for the whole set
        options.num_val = max(1, min(options.num_val, options.num_train // 5))
    data, info = training_data(options.dataset, options.data_dir, options.download, options.num_train,
                               options.num_val, options.seed)
    info["model"] = options.model
    model = build_model(options.model, info["image_shape"], len(info["classes"]), reg=options.reg,
                        seed=options.seed, l1=options.l1, **architecture(vars(options)))
    seen = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}  # the test split waits
    trainer = make_trainer(model, seen, options.dataset, options.update_rule, options.lr, options.schedule,
                           options.batch_size, options.epochs, options.seed, augment=not options.no_augment,
                           max_norm=options.max_norm, warmup_steps=options.warmup, **trainer_options)
    return model, trainer, data, info


def write_outputs(out, model, trainer, info):
    """model.npz, model.json, history.json, curves.png and filters.png into the folder `out`, each atomically."""
    from cnnkit.plots import plot_history, plot_learned

    out = Path(out)
    model.save(out / "model.npz")
    replace_file(out / "model.json", json.dumps(info, indent=2) + "\n")
    history = {"loss": trainer.loss_history, "train_accuracy": trainer.train_acc_history,
               "val_accuracy": trainer.val_acc_history, "test_accuracy": info["test_accuracy"],
               "updates_per_epoch": trainer.iteration // trainer.epoch}
    replace_file(out / "history.json", json.dumps(history) + "\n")
    plot_history(history, out / "curves.png")
    plot_learned(model, out / "filters.png", info["image_shape"], info["classes"])


def add_training_options(parser):
    """Add the options of a training run (`cnnkit train`'s, which `cnnkit sweep` samples) to parser."""
    parser.add_argument("--dataset", choices=DATASET_CHOICES, default="builtin",
                        help="builtin (generated, no files), mnist, fashion-mnist or cifar10 (default: builtin)")
    add_data_options(parser)
    parser.add_argument("--model", choices=MODEL_CHOICES,
                        help="convnet (2 conv layers), vgg (conv-batchnorm-relu-pool stages), resnet (CIFAR "
                             "ResNet-6n+2: --depth 6n+2 layers, default 20; stages of --width, 2x, 4x filters, default "
                             "16), threelayer (the "
                             "course's ThreeLayerConvNet), twolayer, fc (FullyConnectedNet with batchnorm), maxout "
                             "(2 maxout layers with dropout) (default: the recipe's)")
    widths = ", ".join(f"{model} {width}" for model, width in WIDTHS.items())
    parser.add_argument("--width", type=POSITIVE_INT,
                        help="base width of the model: filters of the first conv layer (convnet, vgg, threelayer), "
                             f"else hidden units (default: the recipe's, for another model its own: {widths})")
    parser.add_argument("--depth", type=POSITIVE_INT,
                        help="conv layers per stage of vgg (default: the recipe's, else 1)")
    parser.add_argument("--hidden", type=POSITIVE_INT, metavar="UNITS",
                        help="units of convnet's linear layer after the convs (default: the recipe's, else 128)")
    parser.add_argument("--dropout", type=NON_NEGATIVE_FLOAT,
                        help="dropout probability of convnet, vgg, fc, maxout (default: the recipe's)")
    parser.add_argument("--epochs", type=POSITIVE_INT, help="default: the recipe's")
    parser.add_argument("--batch-size", type=POSITIVE_INT, help="default: the recipe's")
    parser.add_argument("--lr", type=POSITIVE_FLOAT, help="initial learning rate (default: the recipe's)")
    parser.add_argument("--update-rule", choices=UPDATE_RULES, help="default: the recipe's")
    parser.add_argument("--schedule", choices=("cosine", "step", "constant"),
                        help="learning rate over the epochs: cosine decay to 0, step (x0.1 every 10 epochs) "
                             "or constant (default: the recipe's)")
    parser.add_argument("--warmup", type=NON_NEGATIVE_INT, metavar="UPDATES",
                        help="raise the learning rate linearly over the first UPDATES updates (default: the recipe's)")
    parser.add_argument("--reg", type=NON_NEGATIVE_FLOAT, help="L2 regularisation (default: the recipe's)")
    parser.add_argument("--l1", type=NON_NEGATIVE_FLOAT, default=0.0,
                        help="L1 regularisation; with --reg, elastic net (default: 0)")
    parser.add_argument("--max-norm", type=POSITIVE_FLOAT, metavar="C",
                        help="after every update, rescale each unit's incoming weights to norm <= C (default: off)")
    parser.add_argument("--num-train", type=POSITIVE_INT, help="use only the first N training images")
    parser.add_argument("--num-val", type=POSITIVE_INT,
                        help="training images held out for validation (default: the recipe's; at most a fifth "
                             "of --num-train)")
    parser.add_argument("--no-augment", action="store_true", help="no augmentation (random crops, flips, rotations)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, split, order, augmentation (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("cnnkit-out"), help="output folder (default: ./cnnkit-out)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.npz (give the same options; --epochs may grow)")
    parser.add_argument("--allreduce", choices=REDUCTIONS, default="ordered",
                        help="under mpiexec, how gradients are summed over the ranks: ordered (in rank order: the "
                             "same bits on every rerun with the same N) or mpi (the MPI library's Allreduce) "
                             "(default: ordered)")
    parser.add_argument("--sync-batchnorm", action="store_true",
                        help="under mpiexec, batchnorm layers normalise with the statistics of the whole batch, "
                             "summed over the ranks (as one process trains), not of each rank's share (default: off)")
    add_runtime_options(parser)
