"""Pictures of a training run and of what a model learned (matplotlib, no display needed).

Every picture is a PNG written atomically (see save_figure).
"""
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from cnnkit._files import atomic_write


def plot_history(history, path):
    """PNG with the loss per update and the training/validation accuracy per epoch."""
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
    save_figure(figure, path)


def save_figure(figure, path, dpi=100):
    """Write a matplotlib Figure to path as PNG, atomically (a reader never sees half a file)."""
    with atomic_write(path) as file:
        figure.savefig(file, format="png", dpi=dpi)


def plot_image_grid(images, path, labels=None, title=None, max_images=64):
    """PNG of weights shown as a grid of small images, each scaled to its own range.

    Parameters
    ----------
    images : ndarray of shape (K, C, H, W)
        One image per filter or unit; 3 channels are drawn as RGB, any other number as
        one grey image per channel.
    path : path of the PNG
    labels : list of K str, optional
        Caption of each image, e.g. class names.
    title : str, optional
    max_images : int
        Draw at most this many images (the first ones); the title says so.

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or not images.size:
        raise ValueError(f"expected images of shape (K, C, H, W), got {images.shape}")
    total, channels = images.shape[:2]
    if labels is not None and len(labels) != total:
        raise ValueError(f"expected {total} labels, got {len(labels)}")
    if channels == 3:
        pictures, captions = images.transpose(0, 2, 3, 1), labels
    else:
        pictures = images.reshape(-1, *images.shape[2:])
        captions = None if labels is None else [str(label) if channels == 1 else f"{label}.{c}"
                                                for label in labels for c in range(channels)]
    if len(pictures) > max_images:
        title = f"{title or ''} (the first {max_images} of {len(pictures)})".strip()
        pictures = pictures[:max_images]
    lows = pictures.min(axis=tuple(range(1, pictures.ndim)), keepdims=True)
    spans = np.ptp(pictures, axis=tuple(range(1, pictures.ndim)), keepdims=True)
    pictures = np.divide(pictures - lows, spans, out=np.full_like(pictures, 0.5), where=spans > 0)
    columns = len(pictures) if len(pictures) <= 10 else math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / columns)
    cell = 1.2 if captions is not None else 0.9
    figure = Figure(figsize=(max(columns * cell, 4), rows * cell + 0.6), layout="constrained")
    for index, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.set_axis_off()
        if index < len(pictures):
            axes.imshow(pictures[index], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if captions is not None:
                axes.set_title(captions[index], fontsize=9)
    if title:
        figure.suptitle(title)
    save_figure(figure, path)
    return figure


def plot_learned(model, path, image_shape, classes=None):
    """PNG of what a model's first weighted layer learned, as in the CS231n notes.

    A first Conv2d layer is drawn as its filters; a first Linear (or Maxout) layer as
    one image of image_shape per output unit (and piece): class templates, captioned with
    the class names, when its outputs are the scores. A LinearSVM or Softmax classifier is drawn as
    its class templates.

    Parameters
    ----------
    model : Network (Sequential or a classic net) or LinearClassifier
    path : path of the PNG
    image_shape : (C, H, W) of the model's input images
    classes : list of str, optional
        Class names.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    weight, gives_scores = _first_weight(model)
    if weight.ndim == 4:
        filters, channels, height, width = weight.shape
        return plot_image_grid(weight, path, [str(f) for f in range(filters)],
                               f"first conv layer: {filters} filters of {channels}x{height}x{width}")
    columns = weight.reshape(len(weight), -1)
    if len(columns) != math.prod(image_shape):
        raise ValueError(f"the first layer takes {len(columns)} features, not images of shape {tuple(image_shape)}")
    if gives_scores and classes is not None and len(classes) == columns.shape[1]:
        labels, title = list(classes), "class templates: the linear classifier's weights per class"
    else:
        labels = [".".join(map(str, unit)) for unit in np.ndindex(weight.shape[1:])]  # "j.k": unit j's piece k
        title = f"first layer's weights, one image per {'unit' if weight.ndim == 2 else 'unit.piece'}"
    return plot_image_grid(columns.T.reshape(-1, *image_shape), path, labels, title)


def _first_weight(model):
    """(weight, gives_scores): the first weight matrix or filter bank of model, and whether
    that layer is the last weighted one (its outputs are the scores)."""
    if not hasattr(model, "layers"):
        weight = getattr(model, "params", {}).get("W")
        if weight is None:
            raise ValueError(f"{type(model).__name__} has no weights to draw (not a network or a fitted "
                             "linear classifier)")
        return weight, True
    weights = [layer.params["weight"] for layer in model.sync().layers if np.ndim(layer.params.get("weight")) >= 2]
    if not weights:
        raise ValueError("the model has no Conv2d, Linear or Maxout layer to draw")
    return weights[0], len(weights) == 1


def plot_confusion(matrix, classes, path):
    """PNG of a confusion matrix: colour is the fraction of each true class, numbers are counts.

    Parameters
    ----------
    matrix : int ndarray of shape (K, K)
        matrix[i, j] counts the images of class i predicted as class j.
    classes : list of K str
    path : path of the PNG

    Returns
    -------
    matplotlib.figure.Figure
    """
    matrix = np.asarray(matrix)
    size = len(classes)
    if matrix.shape != (size, size):
        raise ValueError(f"expected a ({size}, {size}) matrix for {size} classes, got {matrix.shape}")
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(2 + 0.6 * size, 1.5 + 0.55 * size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (true, predicted), count in np.ndenumerate(matrix):
        if count:
            axes.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                      color="white" if fractions[true, predicted] > 0.5 else "black")
    axes.set_xticks(range(size), classes, rotation=45, ha="right")
    axes.set_yticks(range(size), classes)
    axes.set(xlabel="predicted class", ylabel="true class",
             title=f"confusion matrix: {np.trace(matrix) / max(matrix.sum(), 1):.2%} correct")
    figure.colorbar(image, ax=axes, label="fraction of the true class", shrink=0.8)
    save_figure(figure, path)
    return figure


def plot_sweep(rows, log_scaled, path):
    """PNG of validation accuracy against each sampled hyperparameter of a sweep, one panel each.

    rows: the trials as cnnkit.sweep.Sweep.run returns them (dicts with "number", "state",
    "val_accuracy" and each hyperparameter); log_scaled: {hyperparameter: True when sampled
    log-uniformly}, whose axes are then logarithmic. Completed trials are dots, pruned ones
    crosses (their best accuracy before they were stopped), the best trial a star; failed
    trials have no accuracy and are counted in the title. With no hyperparameter sampled,
    the one panel is against the trial number.
    """
    names = list(log_scaled) or ["number"]
    scored = [row for row in rows if row["val_accuracy"] is not None]
    complete = [row for row in scored if row["state"] == "complete"]
    best = max(complete, key=lambda row: row["val_accuracy"], default=None)
    figure = Figure(figsize=(max(5, 4 * len(names)), 3.6), layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(names), sharey=True))
    for axes, name in zip(panels, names):
        for state, marker in (("complete", "o"), ("pruned", "x")):
            chosen = [row for row in scored if row["state"] == state]
            axes.scatter([row[name] for row in chosen], [row["val_accuracy"] for row in chosen], marker=marker,
                         label=f"{state} ({len(chosen)})")
        if best is not None:
            axes.scatter([best[name]], [best["val_accuracy"]], marker="*", s=250, color="gold", edgecolor="black",
                         zorder=3, label=f"best: trial {best['number']}, {best['val_accuracy']:.2%}")
        if log_scaled.get(name) and scored:  # matplotlib cannot log-scale an empty axis
            axes.set(xscale="log", xlabel=f"{name} (log scale)")
            axes.xaxis.set_minor_formatter(NullFormatter())  # labels at 2..9 x 10^k overlap
        else:
            axes.set(xlabel=name)
        axes.grid(alpha=0.3, which="both")
    panels[0].set(ylabel="best validation accuracy")
    figure.legend(*panels[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="small")
    failed = sum(row["state"] == "failed" for row in rows)
    figure.suptitle(f"sweep of {len(rows)} trials" + (f" ({failed} failed, not shown)" if failed else ""))
    save_figure(figure, path)
    return figure
