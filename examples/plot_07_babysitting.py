"""
Babysitting a training run
==========================

What to watch while a network trains, as the course recommends:

* the loss at the start (near ``log(10) = 2.3`` for ten classes: no class favoured yet);
* that the network can overfit a tiny subset (if it cannot, something is broken);
* the loss curve and the gap between training and validation accuracy;
* the ratio of each update to its weights (about 1e-3 is healthy);
* the activations of each layer (neither all zero nor saturated).
"""

import matplotlib.pyplot as plt
import numpy as np

import cnnkit
from cnnkit import layers as L
from cnnkit.datasets import load_builtin, train_val_split
from cnnkit.models import Sequential
from cnnkit.optim import adam

data = load_builtin(num_train=3000, num_test=500, seed=0)
X_train, y_train, X_val, y_val = train_val_split(data["X_train"], data["y_train"], num_val=500)


def convnet():
    return Sequential([
        L.Conv2d(3, 16, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(16, 32, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(32 * 4 * 4, 64), L.ReLU(), L.Linear(64, 10),
    ])


# %%
# Sanity checks
# -------------
# The initial loss, and overfitting 20 images.

model = convnet()
print(f"initial loss {model.loss(X_train[:200], y_train[:200])[0]:.3f} (log 10 = {np.log(10):.3f})")
tiny = dict(X_train=X_train[:20], y_train=y_train[:20], X_val=X_val[:20], y_val=y_val[:20])
overfit = cnnkit.Trainer(model, tiny, update_rule="adam", optim_config={"learning_rate": 3e-3}, batch_size=10,
                         num_epochs=30, seed=0, verbose=False).train()
print(f"20 images after 30 epochs: training accuracy {overfit.train_acc_history[-1]:.0%}")

# %%
# The run
# -------
# Adam, wrapped to record ``|update| / |weights|`` for every weight array at every step.

model = convnet()
ratios = {key: [] for key, w in model.params.items() if w.ndim > 1}
config_keys = {}  # id of each parameter's optimiser config -> the parameter's key


def watched_adam(w, dw, config):
    next_w, config = adam(w, dw, config)
    key = config_keys[id(config)]
    if key in ratios:
        ratios[key].append(np.linalg.norm(next_w - w) / np.linalg.norm(w))
    return next_w, config


trainer = cnnkit.Trainer(model, dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val),
                         update_rule=watched_adam, optim_config={"learning_rate": 2e-3}, batch_size=64,
                         num_epochs=5, seed=0, verbose=False)
config_keys.update({id(config): key for key, config in trainer.optim_configs.items()})
trainer.train()

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].plot(trainer.loss_history, alpha=0.4, label="each update")
window = 20
axes[0].plot(np.arange(window - 1, len(trainer.loss_history)),
             np.convolve(trainer.loss_history, np.ones(window) / window, mode="valid"), label="mean of 20")
axes[0].set(xlabel="update", ylabel="loss", title="loss")
axes[0].legend()
epochs = np.arange(1, len(trainer.train_acc_history) + 1)
axes[1].plot(epochs, trainer.train_acc_history, marker="o", label="training")
axes[1].plot(epochs, trainer.val_acc_history, marker="o", label="validation")
axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
axes[1].legend()
for key, values in ratios.items():
    axes[2].plot(values, label=key)
axes[2].axhline(1e-3, color="grey", linestyle="--")
axes[2].set(yscale="log", xlabel="update", ylabel="|update| / |w|", title="update-to-weight ratio")
axes[2].legend(fontsize=8)
fig.tight_layout()

# %%
# Activations per layer
# ---------------------
# One validation batch through the trained network, layer by layer. The ReLUs' outputs
# should be partly zero, never all; a layer whose outputs collapse to zero or explode
# shows up here first.

x = X_val[:256]
fig, axes = plt.subplots(2, 5, figsize=(13, 4.5))
for ax, layer in zip(axes.ravel(), model.layers):
    x = layer.forward(x)
    ax.hist(x.ravel(), bins=40, color="C0")
    ax.set_title(f"{type(layer).__name__}\nmean {x.mean():.2f}, std {x.std():.2f}", fontsize=9)
    ax.set_yticks([])
fig.tight_layout()
