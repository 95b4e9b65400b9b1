"""`cnnkit evaluate MODEL`: test accuracy of a trained model on its dataset, per class and overall.

Prints the accuracy, the accuracy of each class and the confusion matrix, and writes the
matrix as confusion.png beside the model.
"""
from pathlib import Path

import numpy as np

from cnnkit._arguments import add_data_options, add_runtime_options
from cnnkit.commands._options import load_trained


def add_parser(commands):
    evaluate = commands.add_parser("evaluate", help="test accuracy and confusion matrix of a trained model",
                                   description="Accuracy of MODEL (from cnnkit train) on its dataset's test split, "
                                               "per class, and its confusion matrix (also written as "
                                               "confusion.png beside the model).")
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="model.npz written by cnnkit train")
    add_data_options(evaluate)
    add_runtime_options(evaluate)
    evaluate.set_defaults(run=run)


def run(args):
    from cnnkit.datasets import load_dataset, normalize
    from cnnkit.plots import plot_confusion

    model, info = load_trained(args.model)
    dataset = load_dataset(info["dataset"], args.data_dir, download=args.download)
    X = normalize(dataset["X_test"], info["mean"], info["std"])
    predicted = model.predict(X)
    print(f"test accuracy: {np.mean(predicted == dataset['y_test']):.2%} on {len(X)} {info['dataset']} images")
    matrix = confusion_matrix(dataset["y_test"], predicted, len(info["classes"]))
    print(format_per_class(matrix, info["classes"]))
    print(format_confusion(matrix, info["classes"]))
    picture = args.model.parent / "confusion.png"
    plot_confusion(matrix, info["classes"], picture)
    print(f"wrote {picture}")
    return 0


def confusion_matrix(y_true, y_pred, num_classes):
    """int64 ndarray of shape (num_classes, num_classes): [i, j] counts class i predicted as j."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def format_per_class(matrix, classes):
    """Table of each class's accuracy: class, accuracy, correct / images."""
    width = max(len("class"), *map(len, classes))
    lines = [f"{'class':<{width}}  accuracy  correct / images"]
    for name, row, correct in zip(classes, matrix, np.diag(matrix)):
        accuracy = f"{correct / row.sum():.2%}" if row.sum() else "-"
        lines.append(f"{name:<{width}}  {accuracy:>8}  {correct:>7} / {row.sum()}")
    return "\n".join(lines)


def format_confusion(matrix, classes):
    """The confusion matrix as text: rows true classes, columns predicted (names cut to the column width)."""
    row_width = max(map(len, classes))
    width = max(len(str(matrix.max())), 5)
    header = " " * row_width + "".join(f" {name[:width]:>{width}}" for name in classes)
    rows = [f"{name:<{row_width}}" + "".join(f" {count:>{width}}" for count in row)
            for name, row in zip(classes, matrix)]
    return "\n".join(["confusion matrix (rows: true class, columns: predicted class)", header, *rows])
