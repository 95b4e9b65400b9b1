"""
What the first layer learns
===========================

A convnet's first layer looks at raw pixels, so its filters can be drawn as small images.
They start as random noise; what a few epochs of training add to them are detectors of
coloured edges and blobs, the pieces the deeper layers assemble into shapes.
"""

import matplotlib.pyplot as plt
import numpy as np

import cnnkit
from cnnkit import layers as L
from cnnkit.datasets import load_builtin, train_val_split
from cnnkit.models import Sequential

data = load_builtin(num_train=3000, num_test=500, seed=0)
X_train, y_train, X_val, y_val = train_val_split(data["X_train"], data["y_train"], num_val=500)

model = Sequential([
    L.Conv2d(3, 16, 5, padding=2, rng=0), L.ReLU(), L.MaxPool2d(2),
    L.Conv2d(16, 32, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
    L.Flatten(), L.Linear(32 * 4 * 4, 10),
], input_shape=(3, 16, 16))
print(model.summary())
before = model.params["0.weight"].copy()

trainer = cnnkit.Trainer(model, dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val),
                         update_rule="adam", optim_config={"learning_rate": 3e-3}, batch_size=64, num_epochs=4,
                         seed=0)  # in Jupyter, the progress bar is a widget
trainer.train()
print(f"validation accuracy {trainer.best_val_acc:.1%}, "
      f"test accuracy {np.mean(model.predict(data['X_test']) == data['y_test']):.1%}")

# %%
# The 16 filters of 3 x 5 x 5 drawn in RGB (grey is 0), before and after training, and
# what training added to each, each filter on its own scale.


def draw_filters(axes, weights):
    for ax, w in zip(axes, weights):
        ax.imshow((0.5 + 0.5 * w / np.abs(w).max()).transpose(1, 2, 0), interpolation="nearest")
        ax.axis("off")


after = model.params["0.weight"]
fig, axes = plt.subplots(3, 16, figsize=(12, 3))
for row, (title, weights) in enumerate([("before", before), ("after", after), ("after - before", after - before)]):
    draw_filters(axes[row], weights)
    axes[row, 0].set_title(title, loc="left", fontsize=9)

# %%
# What the filters respond to: the first layer's feature maps for one image.

image = data["X_test"][:1]
maps = model.layers[1].forward(model.layers[0].forward(image))[0]  # conv, then ReLU
fig, axes = plt.subplots(2, 9, figsize=(11, 2.6))
axes[0, 0].imshow(image[0].transpose(1, 2, 0))
axes[1, 0].axis("off")
for ax, feature_map in zip(axes[:, 1:].ravel(), maps):
    ax.imshow(feature_map, cmap="gray")
for ax in axes.ravel():
    ax.axis("off")
