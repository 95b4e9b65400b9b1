"""`cnnkit train`: train a model on a dataset and save it with its history and curves.

It writes into its output folder (default ./cnnkit-out):

- model.npz        the trained model (cnnkit.models.load reads it)
- model.json       what predict/evaluate need besides the weights: dataset, class names,
                   image shape, the training set's per-channel mean and std, test accuracy
- history.json     loss per update, training/validation accuracy per epoch, test accuracy
- curves.png       loss and accuracy curves
- filters.png      what the first layer learned: its filters, or class templates (cnnkit.plots.plot_learned)
- checkpoint.npz   the state after the last epoch, which `--resume` continues from
"""
import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from cnnkit._files import write_atomic
from cnnkit.commands._options import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    add_data_options,
    add_runtime_options,
)
from cnnkit.recipes import (
    DATASET_CHOICES,
    MODEL_CHOICES,
    RECIPES,
    UPDATE_RULES,
    WIDTHS,
    architecture,
    build_model,
    describe_recipe,
    make_trainer,
    recipe,
    training_data,
)


def add_parser(commands):
    recipes = "\n".join(textwrap.fill(describe_recipe(dataset), 88, initial_indent="  ", subsequent_indent="    ",
                                       break_on_hyphens=False) for dataset in RECIPES)
    train = commands.add_parser("train", help="train a model and save it with its curves",
                                description="Train a model; with no options, a small convnet on the built-in "
                                            "shapes data (about 30 s on 2 cores).",
                                epilog=f"recipes: what --dataset trains unless the options say otherwise\n{recipes}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--dataset", choices=DATASET_CHOICES, default="builtin",
                       help="builtin (generated, no files), mnist, fashion-mnist or cifar10 (default: builtin)")
    add_data_options(train)
    train.add_argument("--model", choices=MODEL_CHOICES,
                       help="convnet (2 conv layers), vgg (conv-batchnorm-relu-pool stages), threelayer (the "
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
    add_runtime_options(train)
    train.set_defaults(run=run)


def run(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.npz"
    if args.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}; train into {out} first")
    model, trainer, data, info = setup(args, callbacks=[report_epoch], checkpoint=checkpoint,
                                       resume=checkpoint if args.resume else None, verbose=True)
    print(f"training {args.model} ({model.num_params:,} parameters) on {args.dataset}: "
          f"{len(data['X_train'])} training, {len(data['X_val'])} validation images", flush=True)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    info["test_accuracy"] = float(np.mean(model.predict(data["X_test"]) == data["y_test"]))
    print(f"test accuracy: {info['test_accuracy']:.2%} on {len(data['X_test'])} images "
          f"(training took {seconds:.0f} s)")
    write_outputs(out, model, trainer, info)
    print(f"wrote {out}/: model.npz, model.json, history.json, curves.png, filters.png")
    return 0


def setup(args, **trainer_options):
    """The data, model and Trainer (untrained) that the options of `cnnkit train` describe.

    Also what each trial of `cnnkit sweep` trains. Options unset in args (None or absent) are
    filled in from the dataset's recipe (cnnkit.recipes.recipe); trainer_options go to the
    Trainer as they are. The Trainer gets the training and validation splits only.

    Returns
    -------
    model, trainer, data (dict of splits), info (dict for model.json)
    """
    val_from_recipe = getattr(args, "num_val", None) is None
    for name, value in recipe(args.dataset, getattr(args, "model", None)).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if val_from_recipe and args.num_train:  # the recipe's split is for the whole set
        args.num_val = max(1, min(args.num_val, args.num_train // 5))
    data, info = training_data(args.dataset, args.data_dir, args.download, args.num_train, args.num_val, args.seed)
    info["model"] = args.model
    model = build_model(args.model, info["image_shape"], len(info["classes"]), reg=args.reg, seed=args.seed,
                        l1=args.l1, **architecture(vars(args)))
    seen = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}  # the test split waits
    trainer = make_trainer(model, seen, args.dataset, args.update_rule, args.lr, args.schedule, args.batch_size,
                           args.epochs, args.seed, augment=not args.no_augment, max_norm=args.max_norm,
                           warmup_steps=args.warmup, **trainer_options)
    return model, trainer, data, info


def report_epoch(trainer):
    """One line per epoch, printed above the progress bar."""
    from tqdm.auto import tqdm

    per_epoch = trainer.iteration // trainer.epoch
    loss = np.mean(trainer.loss_history[-per_epoch:])
    tqdm.write(f"epoch {trainer.epoch}/{trainer.num_epochs}: loss {loss:.4f}, "
               f"train accuracy {trainer.train_acc_history[-1]:.2%}, val accuracy {trainer.val_acc_history[-1]:.2%}")
    sys.stdout.flush()


def write_outputs(out, model, trainer, info):
    """model.npz, model.json, history.json, curves.png and filters.png into the folder `out`."""
    from cnnkit.plots import plot_history, plot_learned

    model.save(out / "model.npz")
    write_atomic(out / "model.json", json.dumps(info, indent=2) + "\n")
    history = {"loss": trainer.loss_history, "train_accuracy": trainer.train_acc_history,
               "val_accuracy": trainer.val_acc_history, "test_accuracy": info["test_accuracy"],
               "updates_per_epoch": trainer.iteration // trainer.epoch}
    write_atomic(out / "history.json", json.dumps(history) + "\n")
    plot_history(history, out / "curves.png")
    plot_learned(model, out / "filters.png", info["image_shape"], info["classes"])
