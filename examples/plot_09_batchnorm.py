"""
Batch normalisation on and off
==============================

Batch normalisation standardises each unit's input over the minibatch, then scales and
shifts it by learned parameters. A deep network whose initial weights are a little too
small or too large trains slowly without it; with it, training barely depends on the
initial scale. Here a five-hidden-layer network is trained with and without batchnorm,
from two initial weight scales, on MNIST when ``CNNKIT_DATA_DIR`` holds it, else on the
built-in shapes.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cnnkit
from cnnkit.datasets import load_builtin, load_mnist, train_val_split
from cnnkit.models import FullyConnectedNet

mnist = Path(os.environ.get("CNNKIT_DATA_DIR", "-")) / "mnist"
data = load_mnist(mnist) if mnist.is_dir() else load_builtin(num_train=2500, num_test=100, seed=0)
X_train, y_train, X_val, y_val = train_val_split(data["X_train"][:2500], data["y_train"][:2500], num_val=500)
input_dim = int(np.prod(X_train.shape[1:]))

runs = {}
for weight_scale in (2e-2, 1e-1):
    for normalization in (None, "batchnorm"):
        model = FullyConnectedNet([64] * 5, input_dim=input_dim, normalization=normalization,
                                  weight_scale=weight_scale, rng=0)
        trainer = cnnkit.Trainer(model, dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val),
                                 update_rule="adam", optim_config={"learning_rate": 1e-3}, batch_size=50,
                                 num_epochs=8, seed=0, verbose=False)
        trainer.train()
        runs[(weight_scale, normalization or "no batchnorm")] = trainer
        print(f"weight scale {weight_scale}, {normalization or 'no batchnorm':>12}: "
              f"best validation {trainer.best_val_acc:.1%}")

# %%
# Loss per update and validation accuracy per epoch.

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
window = 20
for (weight_scale, name), trainer in runs.items():
    style = dict(color="C1" if name == "batchnorm" else "C0", linestyle="-" if weight_scale == 2e-2 else ":")
    label = f"{name}, weight scale {weight_scale}"
    smooth = np.convolve(trainer.loss_history, np.ones(window) / window, mode="valid")
    axes[0].plot(smooth, label=label, **style)
    axes[1].plot(np.arange(1, len(trainer.val_acc_history) + 1), trainer.val_acc_history, marker="o",
                 label=label, **style)
axes[0].set(xlabel="update", ylabel="training loss (mean of 20)")
axes[1].set(xlabel="epoch", ylabel="validation accuracy")
axes[1].legend(fontsize=8)
fig.tight_layout()
