"""
Linear classifiers: SVM and softmax, and their learned templates
================================================================

A linear classifier scores each class by a dot product of the image with that class's
weights, ``scores = x W + b``. The multiclass SVM loss asks the correct class's score to
beat every other by a margin; the softmax (cross-entropy) loss turns scores into
probabilities and asks for a high probability of the correct class. Both are trained by
minibatch SGD through :class:`cnnkit.Trainer`.

Each column of ``W`` has one weight per pixel: drawn as an image, it is the template that
class matches best. This example uses MNIST when ``CNNKIT_DATA_DIR`` holds it, else the
built-in shapes.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cnnkit.datasets import load_builtin, load_mnist, train_val_split
from cnnkit.models import LinearSVM, Softmax

mnist = Path(os.environ.get("CNNKIT_DATA_DIR", "-")) / "mnist"
if mnist.is_dir():
    data = load_mnist(mnist)
    data = {**data, "X_train": data["X_train"][:6000], "y_train": data["y_train"][:6000],
            "X_test": data["X_test"][:1000], "y_test": data["y_test"][:1000]}
else:
    data = load_builtin(num_train=6000, num_test=1000, seed=0)
X_train, y_train, X_val, y_val = train_val_split(data["X_train"], data["y_train"], num_val=1000)
classes, image_shape = data["classes"], X_train.shape[1:]

# %%
# Centre the data: subtract the mean training image, as the course does.

mean_image = X_train.mean(axis=0)
X_train, X_val, X_test = X_train - mean_image, X_val - mean_image, data["X_test"] - mean_image

# %%
# Train both with the same settings.

models = {"SVM": LinearSVM(), "Softmax": Softmax()}
for name, model in models.items():
    model.fit(X_train, y_train, learning_rate=1e-2, reg=1e-2, num_epochs=10, batch_size=200, seed=0,
              X_val=X_val, y_val=y_val, update_rule="sgd_momentum")
    print(f"{name}: validation {model.val_acc_history[-1]:.1%}, test {model.score(X_test, data['y_test']):.1%}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, model in models.items():
    ax.plot(model.loss_history, label=name, alpha=0.8)
ax.set_xlabel("update")
ax.set_ylabel("training loss")
ax.legend()

# %%
# The learned templates
# ---------------------
# Each class's weights, scaled to [0, 1] and drawn as an image.


def template_images(W):
    """Columns of W (D, C) as C images of image_shape, each scaled to [0, 1], channels last."""
    images = W.T.reshape(-1, *image_shape)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    images = ((images - low) / (high - low)).transpose(0, 2, 3, 1)
    return images[..., 0] if images.shape[-1] == 1 else images


fig, axes = plt.subplots(len(models), len(classes), figsize=(10, 2.6))
for row, (name, model) in enumerate(models.items()):
    for c, image in enumerate(template_images(model.params["W"])):
        axes[row, c].imshow(image, cmap="gray")
        axes[row, c].axis("off")
        axes[0, c].set_title(str(classes[c]), fontsize=9)
    axes[row, 0].text(-0.3, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center")
fig.tight_layout()

# %%
# The two losses give different numbers but similar templates: both learn one blurry
# prototype per class, which is all a linear classifier can hold. That limit is what the
# hidden layers of a network remove.
print("scores of the first test image:", np.round(models["Softmax"].loss(X_test[:1]), 2))
