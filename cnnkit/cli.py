"""The `cnnkit` command: train, evaluate, predict, bench, info.

`cnnkit train` writes into its output folder (default ./cnnkit-out):

- model.npz        the trained model (cnnkit.models.load reads it)
- model.json       what predict/evaluate need besides the weights: dataset, class names,
                   image shape, the training set's per-channel mean and std, test accuracy
- history.json     loss per update, training/validation accuracy per epoch, test accuracy
- curves.png       loss and accuracy curves
- checkpoint.npz   the state after the last epoch, which `--resume` continues from

Errors a user can cause (bad options, missing or corrupt files, no network) end the
command with one line on stderr and exit status 1; argparse usage errors exit with 2.
"""
import argparse
import contextlib
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from cnnkit import __version__

DATASET_CHOICES = ("builtin", "mnist", "fashion-mnist", "cifar10")
MODEL_CHOICES = ("convnet", "threelayer", "twolayer", "fc")
UPDATE_RULES = ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam")
# (random-crop padding, horizontal flip) per dataset; no flip for digits
AUGMENTATION = {"builtin": (2, True), "mnist": (2, False), "fashion-mnist": (2, True), "cifar10": (4, True)}
ERRORS = (OSError, ValueError, ImportError, ArithmeticError)  # what a user's input or machine can cause


# ---------------------------------------------------------------------------- models

def convnet(image_shape, num_classes, width=16, hidden=128, reg=0.0, seed=0):
    """Small convnet: [conv3x3 - relu - maxpool2] x 2 - linear - relu - linear.

    Parameters
    ----------
    image_shape : (C, H, W)
    num_classes : int
    width : int
        Filters of the first conv layer; the second has twice as many.
    hidden : int
        Units of the hidden linear layer.
    reg : float
        L2 regularisation strength.
    seed : int
        Seed of the initial weights.

    Returns
    -------
    cnnkit.models.Sequential
    """
    from cnnkit import layers as nn
    from cnnkit.models import Sequential

    channels, height, width_px = image_shape
    rng = np.random.default_rng(seed)
    flat = 2 * width * (height // 4) * (width_px // 4)
    return Sequential([
        nn.Conv2d(channels, width, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, hidden, rng=rng), nn.ReLU(), nn.Linear(hidden, num_classes, rng=rng),
    ], reg=reg, input_shape=image_shape)


def build_model(name, image_shape, num_classes, reg=0.0, seed=0):
    """Model `name` (one of MODEL_CHOICES) for images of image_shape (C, H, W)."""
    from cnnkit.models import FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet

    features = int(np.prod(image_shape))
    if name == "convnet":
        return convnet(image_shape, num_classes, reg=reg, seed=seed)
    if name == "threelayer":
        return ThreeLayerConvNet(tuple(image_shape), num_filters=32, filter_size=5, hidden_dim=128,
                                 num_classes=num_classes, weight_scale="he", reg=reg, rng=seed)
    if name == "twolayer":
        return TwoLayerNet(features, hidden_dim=256, num_classes=num_classes, weight_scale="he", reg=reg, rng=seed)
    if name == "fc":
        return FullyConnectedNet([256, 128], features, num_classes, normalization="batchnorm",
                                 weight_scale="he", reg=reg, rng=seed)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_CHOICES)}")


# ---------------------------------------------------------------------------- train

def make_trainer(model, data, dataset, update_rule, lr, schedule, batch_size, epochs, seed, augment=True,
                 **options):
    """The Trainer `cnnkit train` uses: dataset's augmentation (AUGMENTATION) unless augment is
    False, schedule "cosine", "step" or "constant"; options go to Trainer as they are."""
    from cnnkit.datasets import augmentation
    from cnnkit.trainer import Trainer

    crop, flip = AUGMENTATION[dataset]
    return Trainer(model, data, update_rule=update_rule, optim_config={"learning_rate": lr},
                   schedule=None if schedule == "constant" else schedule, batch_size=batch_size,
                   num_epochs=epochs, seed=seed, augment=augmentation(crop, flip) if augment else None, **options)


def _train(args):
    data, info = training_data(args.dataset, args.data_dir, args.download, args.num_train, args.num_val, args.seed)
    info["model"] = args.model
    model = build_model(args.model, info["image_shape"], len(info["classes"]), reg=args.reg, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.npz"
    if args.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}; train into {out} first")
    trainer = make_trainer(model, data, args.dataset, args.update_rule, args.lr, args.schedule, args.batch_size,
                           args.epochs, args.seed, augment=not args.no_augment, callbacks=[_report_epoch],
                           checkpoint=checkpoint, resume=checkpoint if args.resume else None, verbose=True)
    print(f"training {args.model} ({model.num_params:,} parameters) on {args.dataset}: "
          f"{len(data['X_train'])} training, {len(data['X_val'])} validation images", flush=True)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    info["test_accuracy"] = float(np.mean(model.predict(data["X_test"]) == data["y_test"]))
    print(f"test accuracy: {info['test_accuracy']:.2%} on {len(data['X_test'])} images "
          f"(training took {seconds:.0f} s)")
    _write_outputs(out, model, trainer, info)
    print(f"wrote {out}/: model.npz, model.json, history.json, curves.png")
    return 0


def training_data(dataset, root=None, download=False, num_train=None, num_val=1000, seed=0):
    """Normalised splits of a dataset, as `cnnkit train` uses them.

    The first num_train training images (all when None) are split at random into
    training and num_val validation images; the per-channel mean and std of the
    training part normalise every split.

    Returns
    -------
    data : dict with X_train, y_train, X_val, y_val, X_test, y_test
    info : dict with dataset, classes, image_shape (C, H, W), mean and std (lists)
    """
    from cnnkit.datasets import channel_stats, load_dataset, normalize, train_val_split

    loaded = load_dataset(dataset, root, download=download)
    X, y = loaded["X_train"][:num_train], loaded["y_train"][:num_train]
    X_train, y_train, X_val, y_val = train_val_split(X, y, num_val, seed=seed)
    mean, std = channel_stats(X_train)
    data = {"X_train": normalize(X_train, mean, std), "y_train": y_train, "X_val": normalize(X_val, mean, std),
            "y_val": y_val, "X_test": normalize(loaded["X_test"], mean, std), "y_test": loaded["y_test"]}
    info = {"dataset": dataset, "classes": list(loaded["classes"]), "image_shape": list(X_train.shape[1:]),
            "mean": mean.tolist(), "std": std.tolist()}
    return data, info


def _report_epoch(trainer):
    """One line per epoch, printed above the progress bar."""
    from tqdm import tqdm

    per_epoch = trainer.iteration // trainer.epoch
    loss = np.mean(trainer.loss_history[-per_epoch:])
    tqdm.write(f"epoch {trainer.epoch}/{trainer.num_epochs}: loss {loss:.4f}, "
               f"train accuracy {trainer.train_acc_history[-1]:.2%}, val accuracy {trainer.val_acc_history[-1]:.2%}")
    sys.stdout.flush()


def _write_outputs(out, model, trainer, info):
    model.save(out / "model.npz")
    (out / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    history = {"loss": trainer.loss_history, "train_accuracy": trainer.train_acc_history,
               "val_accuracy": trainer.val_acc_history, "test_accuracy": info["test_accuracy"],
               "updates_per_epoch": trainer.iteration // trainer.epoch}
    (out / "history.json").write_text(json.dumps(history) + "\n")
    plot_history(history, out / "curves.png")


def plot_history(history, path):
    """PNG with the loss per update and the training/validation accuracy per epoch."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    per_epoch = history["updates_per_epoch"]
    epochs_of_updates = np.arange(1, len(history["loss"]) + 1) / per_epoch
    loss_axes.plot(epochs_of_updates, history["loss"], linewidth=0.5, alpha=0.4, label="per update")
    if len(history["loss"]) >= per_epoch:
        smooth = np.convolve(history["loss"], np.ones(per_epoch) / per_epoch, mode="valid")
        loss_axes.plot(epochs_of_updates[per_epoch - 1:], smooth, label="mean of the last epoch")
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="loss", yscale="log")
    loss_axes.legend()
    epochs = np.arange(1, len(history["train_accuracy"]) + 1)
    accuracy_axes.plot(epochs, history["train_accuracy"], "o-", label="training")
    accuracy_axes.plot(epochs, history["val_accuracy"], "o-", label="validation")
    accuracy_axes.axhline(history["test_accuracy"], color="gray", linestyle="--", label="test (final)")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    accuracy_axes.legend()
    figure.savefig(path, dpi=100)


# ---------------------------------------------------------------------------- evaluate, predict

def _load_trained(path):
    """(model, info) from MODEL.npz and the MODEL.json that `cnnkit train` wrote beside it."""
    from cnnkit.models import load

    path = Path(path)
    info_path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: predict and evaluate need the preprocessing "
                                "that `cnnkit train` writes beside the model")
    try:
        info = json.loads(info_path.read_text())
        mean, std = np.asarray(info["mean"], np.float32), np.asarray(info["std"], np.float32)
        info.update(mean=mean, std=std, image_shape=tuple(info["image_shape"]), classes=list(info["classes"]))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{info_path} is not a model description written by cnnkit train ({error!r})") from None
    try:
        model = load(path)
    except (zipfile.BadZipFile, ValueError) as error:
        raise ValueError(f"{path}: cannot load the model ({error})") from None
    return model.eval(), info


def _evaluate(args):
    from cnnkit.datasets import load_dataset, normalize

    model, info = _load_trained(args.model)
    dataset = load_dataset(info["dataset"], args.data_dir, download=args.download)
    X = normalize(dataset["X_test"], info["mean"], info["std"])
    accuracy = np.mean(model.predict(X) == dataset["y_test"])
    print(f"test accuracy: {accuracy:.2%} on {len(X)} {info['dataset']} images")
    return 0


def _predict(args):
    from cnnkit.datasets import normalize

    model, info = _load_trained(args.model)
    for path in args.files:
        images = normalize(read_images(path, info["image_shape"]), info["mean"], info["std"])
        scores = model.loss(images)
        probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        for index, row in enumerate(probabilities):
            best = np.argsort(row)[::-1][:args.top]
            name = path if len(probabilities) == 1 else f"{path}[{index}]"
            print(f"{name}: " + ", ".join(f"{info['classes'][k]} ({row[k]:.1%})" for k in best))
    return 0


def read_images(path, image_shape):
    """Images to classify, as float32 in [0, 1] of shape (N, C, H, W) with image_shape (C, H, W).

    A .npy file holds one image (H, W) or (C, H, W), or a batch (N, C, H, W), of exactly
    that size, uint8 (0-255) or float (0-1). Any other file is read with Pillow
    (PNG, JPEG, ...), converted to grey or RGB and resized to H x W.
    """
    channels, height, width = image_shape
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    if path.suffix == ".npy":
        try:
            images = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{path}: not a .npy array file ({error})") from None
        if images.ndim == 2 and channels == 1:
            images = images[None]
        if images.ndim not in (3, 4) or images.shape[-3:] != tuple(image_shape):
            raise ValueError(f"{path}: expected an array of shape (C, H, W) or (N, C, H, W) with C, H, W = "
                             f"{channels}, {height}, {width} (or (H, W) for grey images); got {images.shape}")
        images = images.reshape(-1, *image_shape)
    else:
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
                images = np.asarray(image).reshape(height, width, channels).transpose(2, 0, 1)[None]
        except UnidentifiedImageError as error:
            raise ValueError(f"{path}: not an image file Pillow can read") from error
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    if images.dtype.kind != "f":
        raise ValueError(f"{path}: expected uint8 or float pixels, got {images.dtype}")
    return images.astype(np.float32)


# ---------------------------------------------------------------------------- bench, info

def _bench(args):
    from cnnkit import bench

    parser = argparse.ArgumentParser(prog="cnnkit bench", description="Compare the backends' speed.")
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(args.bench_args))


def _info(args):
    from cnnkit import show_config
    show_config()
    return 0


# ---------------------------------------------------------------------------- parser

def _number(kind, minimum, strict):
    """argparse type: a `kind` (int or float) > minimum (strict) or >= minimum."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not np.isfinite(value) or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"expected {'an int' if kind is int else 'a number'} {'>' if strict else '>='} {minimum}, got {text!r}")
        return value
    return parse


POSITIVE_INT, POSITIVE_FLOAT, NON_NEGATIVE_FLOAT = _number(int, 0, True), _number(float, 0, True), _number(float, 0, False)


def _add_runtime_options(parser):
    parser.add_argument("--backend", choices=("auto", "fast", "reference"),
                        help="kernels to run on (default: $CNNKIT_BACKEND, else auto: fast when compiled)")
    parser.add_argument("--threads", type=POSITIVE_INT, help="threads for the kernels and BLAS (default: all cores)")


def _add_data_options(parser):
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's official files "
                        "(default: ~/.cache/cnnkit/<dataset>, or $CNNKIT_CACHE_DIR/<dataset>)")
    parser.add_argument("--download", action="store_true",
                        help="download missing official files (md5-checked) into the data folder")


def _train_parser(commands):
    train = commands.add_parser("train", help="train a model and save it with its curves",
                                description="Train a model; with no options, a small convnet on the built-in "
                                            "shapes data (under a minute on 2 cores).")
    train.add_argument("--dataset", choices=DATASET_CHOICES, default="builtin",
                       help="builtin (generated, no files), mnist, fashion-mnist or cifar10 (default: builtin)")
    _add_data_options(train)
    train.add_argument("--model", choices=MODEL_CHOICES, default="convnet",
                       help="convnet (2 conv layers), threelayer (the course's ThreeLayerConvNet), twolayer, "
                            "fc (FullyConnectedNet with batchnorm) (default: convnet)")
    train.add_argument("--epochs", type=POSITIVE_INT, default=10, help="default: 10")
    train.add_argument("--batch-size", type=POSITIVE_INT, default=64, help="default: 64")
    train.add_argument("--lr", type=POSITIVE_FLOAT, default=3e-3, help="initial learning rate (default: 3e-3)")
    train.add_argument("--update-rule", choices=UPDATE_RULES, default="adam", help="default: adam")
    train.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine",
                       help="learning rate over the epochs: cosine decay to 0, step (x0.1 every 10 epochs) "
                            "or constant (default: cosine)")
    train.add_argument("--reg", type=NON_NEGATIVE_FLOAT, default=0.0, help="L2 regularisation (default: 0)")
    train.add_argument("--num-train", type=POSITIVE_INT, help="use only the first N training images")
    train.add_argument("--num-val", type=POSITIVE_INT, default=1000,
                       help="training images held out for validation (default: 1000)")
    train.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    train.add_argument("--seed", type=int, default=0, help="seed of weights, split, order, augmentation (default: 0)")
    train.add_argument("--out", type=Path, default=Path("cnnkit-out"), help="output folder (default: ./cnnkit-out)")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/checkpoint.npz (give the same options; --epochs may grow)")
    _add_runtime_options(train)
    train.set_defaults(run=_train)


def build_parser():
    parser = argparse.ArgumentParser(prog="cnnkit", description="Train convolutional networks on the CPU.")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(commands)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a trained model on its dataset",
                                   description="Accuracy of MODEL (from cnnkit train) on its dataset's test split.")
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="model.npz written by cnnkit train")
    _add_data_options(evaluate)
    _add_runtime_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="classify image files with a trained model",
                                  description="Classify images (PNG, JPEG, ... resized to the model's input; "
                                              "or .npy arrays) with MODEL from cnnkit train.")
    predict.add_argument("model", type=Path, metavar="MODEL", help="model.npz written by cnnkit train")
    predict.add_argument("files", type=Path, nargs="+", metavar="FILE", help="image or .npy file")
    predict.add_argument("--top", type=POSITIVE_INT, default=1, help="classes to show per image (default: 1)")
    _add_runtime_options(predict)
    predict.set_defaults(run=_predict)

    bench = commands.add_parser("bench", add_help=False, help="compare the backends' speed (cnnkit bench --help)")
    bench.set_defaults(run=_bench)

    info = commands.add_parser("info", help="show version, backends, threads and BLAS")
    info.set_defaults(run=_info)
    return parser


@contextlib.contextmanager
def _runtime(args):
    """Apply --backend and --threads (kernels' OpenMP threads and BLAS threads) for the command."""
    import cnnkit
    from threadpoolctl import threadpool_limits

    if getattr(args, "backend", None):
        cnnkit.set_backend(args.backend)
    threads = getattr(args, "threads", None)
    if threads:
        cnnkit.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def main(argv=None):
    """Run the `cnnkit` command with argv (default: sys.argv[1:]); returns the exit status."""
    # OpenMP threads spinning between the kernels' parallel regions starve BLAS's threads
    # (10x slower training on a busy 2-core machine); read when the extension first loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with _runtime(args):
            return args.run(args)
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130
    except ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"cnnkit {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
