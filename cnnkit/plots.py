"""Pictures of a training run: loss and accuracy curves (matplotlib, no display needed)."""
import numpy as np


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
