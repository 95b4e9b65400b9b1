"""
Regularisation: L2, dropout and max-norm on one network
=======================================================

A network trained on few images learns them by heart: training accuracy reaches 100%
while validation accuracy stalls. Regularisation trades a little training fit for a
smaller gap. Here one small convnet is trained on 500 images four ways: plain, with an L2
penalty on the weights, with dropout before the last layer, and with max-norm constraints
(each unit's incoming weights rescaled to norm at most c after every update). The images
are MNIST's when ``CNNKIT_DATA_DIR`` holds it, else the built-in shapes.
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
data = load_mnist(mnist) if mnist.is_dir() else load_builtin(num_train=1000, num_test=100, seed=0)
X_train, y_train, X_val, y_val = train_val_split(data["X_train"][:1000], data["y_train"][:1000], num_val=500)
channels, size = X_train.shape[1], X_train.shape[2]
print(f"{len(X_train)} training images, {len(X_val)} validation images")


def convnet(dropout=0.0, reg=0.0):
    return Sequential([
        L.Conv2d(channels, 16, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(16, 32, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(32 * (size // 4) ** 2, 256), L.ReLU(), L.Dropout(dropout, rng=0), L.Linear(256, 10),
    ], reg=reg)


variants = {
    "none": (convnet(), {}),
    "L2 (reg 0.01)": (convnet(reg=0.01), {}),
    "dropout 0.5": (convnet(dropout=0.5), {}),
    "max-norm 1": (convnet(), {"max_norm": 1.0}),
}
histories = {}
for name, (model, trainer_options) in variants.items():
    trainer = cnnkit.Trainer(model, dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val),
                             update_rule="adam", optim_config={"learning_rate": 2e-3}, batch_size=50,
                             num_epochs=10, seed=0, verbose=False, **trainer_options)
    trainer.train()
    histories[name] = trainer
    print(f"{name:>14}: training {trainer.train_acc_history[-1]:.1%}, best validation {trainer.best_val_acc:.1%}")

# %%
# Training accuracy (dashed) and validation accuracy (solid) per epoch, and the best
# validation accuracy of each against its final gap.

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for i, (name, trainer) in enumerate(histories.items()):
    epochs = np.arange(1, len(trainer.val_acc_history) + 1)
    axes[0].plot(epochs, trainer.train_acc_history, linestyle="--", color=f"C{i}")
    axes[0].plot(epochs, trainer.val_acc_history, color=f"C{i}", label=name)
axes[0].set(xlabel="epoch", ylabel="accuracy", title="training (dashed) and validation (solid)")
axes[0].legend()
gaps = [trainer.train_acc_history[-1] - trainer.val_acc_history[-1] for trainer in histories.values()]
best = [trainer.best_val_acc for trainer in histories.values()]
axes[1].bar(np.arange(4) - 0.2, best, 0.4, label="best validation accuracy")
axes[1].bar(np.arange(4) + 0.2, gaps, 0.4, label="training - validation, last epoch")
axes[1].set_xticks(np.arange(4), list(histories), fontsize=9)
axes[1].legend()
fig.tight_layout()
