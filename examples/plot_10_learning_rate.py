"""
A learning-rate sweep
=====================

The learning rate is the first hyperparameter to tune: too low and the loss creeps down,
too high and it jumps around or blows up. A coarse sweep over a log scale, a few epochs
each, tells where to look closer (``cnnkit sweep`` automates this on many cores and
machines). The images are MNIST's when ``CNNKIT_DATA_DIR`` holds it, else the built-in shapes.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cnnkit
from cnnkit import layers as L
from cnnkit.datasets import load_builtin, load_mnist, train_val_split
from cnnkit.models import Sequential

mnist = Path(os.environ.get("CNNKIT_DATA_DIR", "-")) / "mnist"
data = load_mnist(mnist) if mnist.is_dir() else load_builtin(num_train=2000, num_test=100, seed=0)
X_train, y_train, X_val, y_val = train_val_split(data["X_train"][:2000], data["y_train"][:2000], num_val=500)
channels, size = X_train.shape[1], X_train.shape[2]

learning_rates = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
runs = {}
for lr in learning_rates:
    model = Sequential([
        L.Conv2d(channels, 16, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(16, 32, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(32 * (size // 4) ** 2, 10),
    ])
    trainer = cnnkit.Trainer(model, dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val),
                             update_rule="adam", optim_config={"learning_rate": lr}, batch_size=50,
                             num_epochs=3, seed=0, verbose=False)
    try:
        trainer.train()
    except FloatingPointError as error:  # a learning rate far too high can make the loss overflow
        print(f"lr {lr:g}: {error}")
    runs[lr] = trainer
    print(f"lr {lr:g}: best validation accuracy {trainer.best_val_acc or 0:.1%}")

# %%
# The loss curves (mean of 10 updates) and the best validation accuracy against the rate.

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
window = 10
for lr, trainer in runs.items():
    axes[0].plot(np.convolve(trainer.loss_history, np.ones(window) / window, mode="valid"), label=f"lr {lr:g}")
axes[0].set(xlabel="update", ylabel="training loss", yscale="log")
axes[0].legend()
axes[1].plot(learning_rates, [trainer.best_val_acc or 0 for trainer in runs.values()], marker="o")
axes[1].set(xscale="log", xlabel="learning rate", ylabel="best validation accuracy")
fig.tight_layout()
