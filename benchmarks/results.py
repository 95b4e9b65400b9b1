"""Print the README's result tables (markdown): the course's pipeline and `cnnkit train`'s
recipe on MNIST, the recipe on the CIFAR-10 files at hand, and a linear classifier against
the recipe on the built-in shapes, after a line describing the machine.

    python benchmarks/results.py                      # all tables; data from $CNNKIT_DATA_DIR
    python benchmarks/results.py --tables convnet --data-dir ../shared/data
    python benchmarks/results.py --num-train 5000     # a quick, smaller run
    python benchmarks/results.py --seeds 0,1,2        # the recipes once per seed, and their mean

The data folder holds mnist/ (the four official IDX files) and a CIFAR-10 folder
(cifar-10-batches-py/ or cifar-10-subset/, official python batches). Every model uses
the preprocessing of `cnnkit train` (normalisation fitted on the training split, the
recipe's validation images held out: 5,000 for MNIST, 1,000 otherwise; the test split
is predicted once, after training); times
are wall-clock seconds of training and of predicting the test set, on the fast backend,
measured in this run. With --seeds, each recipe runs as `cnnkit train --seed S` does (the
split, weights, order and augmentation from S) once per seed, a row each and one of their
mean; the other models use seed 0.
"""
import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit._runtime import prefer_short_spin
from cnnkit.models import FullyConnectedNet, KNearestNeighbor, TwoLayerNet
from cnnkit.models.classifiers import LinearSVM, Softmax
from cnnkit.recipes import RECIPES, architecture, build_model, describe_recipe, make_trainer, training_data

prefer_short_spin()  # as the `cnnkit` command does; before the first kernel loads OpenMP

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_FOLDERS = ("cifar-10-batches-py", "cifar-10-subset", "cifar10")


def train_network(model, data, dataset, epochs, lr, batch_size=64):
    """Train as `cnnkit train` does (Adam, cosine schedule, augmentation); returns model.predict."""
    make_trainer(model, data, dataset, "adam", lr, "cosine", batch_size, epochs, seed=0, verbose=True).train()
    return model.predict


def knn(data, dataset):
    return KNearestNeighbor(k=3).fit(data["X_train"], data["y_train"]).predict


def linear(classifier, lr, reg, epochs):
    """Fit a linear classifier by SGD with momentum, keeping its best validation epoch."""
    def fit(data, dataset):
        model = classifier().fit(data["X_train"], data["y_train"], learning_rate=lr, reg=reg, num_epochs=epochs,
                                 batch_size=200, seed=0, X_val=data["X_val"], y_val=data["y_val"],
                                 update_rule="sgd_momentum")
        return model.predict
    return fit


def network(make, epochs, lr):
    """Build make(image_shape) and train it with train_network."""
    def fit(data, dataset):
        return train_network(make(data["X_train"].shape[1:]), data, dataset, epochs, lr)
    return fit


def flat(shape):
    return int(np.prod(shape))


COURSE = [
    ("KNearestNeighbor", "k = 3, L2 distance", knn),
    ("LinearSVM", "SGD + momentum, lr 1e-3, reg 1e-2, 10 epochs", linear(LinearSVM, 1e-3, 1e-2, 10)),
    ("Softmax", "SGD + momentum, lr 1e-2, reg 1e-2, 10 epochs", linear(Softmax, 1e-2, 1e-2, 10)),
    ("TwoLayerNet", "256 hidden, Adam 1e-3, 10 epochs",
     network(lambda shape: TwoLayerNet(flat(shape), 256, weight_scale="he", rng=0), 10, 1e-3)),
    ("FullyConnectedNet", "256-128 hidden, batchnorm, Adam 1e-3, 10 epochs",
     network(lambda shape: FullyConnectedNet([256, 128], flat(shape), normalization="batchnorm",
                                             weight_scale="he", rng=0), 10, 1e-3)),
]


def recipe(dataset, seed):
    """(name, settings, fit) of what `cnnkit train --dataset dataset --seed seed` trains: its recipe."""
    options = RECIPES[dataset]

    def fit(data, dataset):
        model = build_model(options["model"], data["X_train"].shape[1:], 10, reg=options["reg"], seed=seed,
                            **architecture(options))
        splits = {key: data[key] for key in ("X_train", "y_train", "X_val", "y_val")}
        make_trainer(model, splits, dataset, options["update_rule"], options["lr"], options["schedule"],
                     options["batch_size"], options["epochs"], seed=seed, warmup_steps=options["warmup"],
                     verbose=True).train()
        return model.predict
    return options["model"], "cnnkit train's recipe: " + describe_recipe(dataset).split(": ", 1)[1], fit


def machine():
    """One line: CPU model, cores, BLAS library and version, kernel and BLAS threads, versions."""
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    blas = ", ".join(f"{lib['internal_api']} {lib['version']} ({lib['num_threads']} threads)"
                     for lib in threadpool_info() if lib["user_api"] == "blas") or "none detected"
    return (f"{cpu}, {os.cpu_count()} cores; BLAS {blas}; cnnkit {cnnkit.__version__}, backend "
            f"{cnnkit.get_backend()}, {cnnkit.get_num_threads()} kernel threads; numpy {np.__version__}")


def measure(data, dataset, name, settings, fit, seed=0):
    """Markdown row: name, settings, seed, test accuracy, training and testing seconds; returns the numbers."""
    start = time.perf_counter()
    predict = fit(data, dataset)
    trained = time.perf_counter()
    accuracy = np.mean(predict(data["X_test"]) == data["y_test"])
    seconds = (accuracy, trained - start, time.perf_counter() - trained)
    print(f"| {name} | {settings} | {seed} | {accuracy:.2%} | {seconds[1]:.1f} | {seconds[2]:.1f} |", flush=True)
    return seconds


def table(title, load, dataset, experiments, seeds):
    """Print a table: the experiments (name, settings, fit) on load(0), then the recipe on load(seed) per seed.

    load(seed) gives the splits as `cnnkit train --seed seed` makes them.
    """
    data = load(0)
    print(f"\n{title} ({len(data['X_train'])} training, {len(data['X_val'])} validation, "
          f"{len(data['X_test'])} test images)\n")
    print("| model | settings | seed | test accuracy | training (s) | testing (s) |\n|---|---|---:|---:|---:|---:|")
    for experiment in experiments:
        measure(data, dataset, *experiment)
    runs = []
    for index, seed in enumerate(seeds):  # the recipe's settings on its first row only
        name, settings, fit = recipe(dataset, seed)
        runs.append(measure(data if seed == 0 else load(seed), dataset, name, "the same" if index else settings, fit,
                            seed=seed))
    if len(runs) > 1:
        accuracy, training, testing = np.mean(runs, axis=0)
        print(f"| {recipe(dataset, 0)[0]} | mean of seeds {', '.join(map(str, seeds))} | | {accuracy:.2%} | "
              f"{training:.1f} | {testing:.1f} |", flush=True)


def cifar_folder(data_dir):
    for name in CIFAR_FOLDERS:
        if (data_dir / name).is_dir():
            return data_dir / name
    raise FileNotFoundError(f"no CIFAR-10 folder ({', '.join(CIFAR_FOLDERS)}) in {data_dir}")


def seed_list(text):
    """[0, 1, 2] from "0,1,2"."""
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds such as 0,1,2, got {text!r}") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CNNKIT_DATA_DIR") or DEFAULT_DATA))
    parser.add_argument("--tables", default="course,convnet,builtin",
                        help="comma-separated: course, convnet, builtin (default: all)")
    parser.add_argument("--num-train", type=int, help="use only the first N training images (quick runs)")
    parser.add_argument("--seeds", type=seed_list, default=[0],
                        help="comma-separated seeds of the recipes' runs, e.g. 0,1,2 (default: 0)")
    args = parser.parse_args()
    cnnkit.set_backend("fast")
    print(machine())
    tables = args.tables.split(",")

    def loader(dataset, root=None):
        return lambda seed: training_data(dataset, root, num_train=args.num_train,
                                          num_val=RECIPES[dataset]["num_val"], seed=seed)[0]

    if "course" in tables or "convnet" in tables:
        table("The course's pipeline on MNIST", loader("mnist", args.data_dir / "mnist"), "mnist",
              COURSE if "course" in tables else [], args.seeds)
    if "convnet" in tables:
        table("The recipe on CIFAR-10", loader("cifar10", cifar_folder(args.data_dir)), "cifar10", [], args.seeds)
    if "builtin" in tables:
        table("Built-in shapes: a linear classifier against the recipe", loader("builtin"), "builtin", [COURSE[2]],
              args.seeds)


if __name__ == "__main__":
    main()
