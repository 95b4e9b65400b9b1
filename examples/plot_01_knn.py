"""
Nearest neighbours, and choosing k by cross-validation
======================================================

A k-nearest-neighbour classifier keeps the training images and labels a new image by the
vote of the k training images closest to it (L2 distance between pixel vectors). Training
costs nothing; prediction compares each test image with every training image.

k is a hyperparameter: we choose it by 5-fold cross-validation on the training split and
read the test split once, at the end.
"""

import matplotlib.pyplot as plt
import numpy as np

from cnnkit.datasets import load_builtin
from cnnkit.models import KNearestNeighbor, cross_validate_k

data = load_builtin(num_train=2000, num_test=500, seed=0)
X_train, y_train, X_test, y_test = data["X_train"], data["y_train"], data["X_test"], data["y_test"]
classes = data["classes"]
print(X_train.shape, X_test.shape)

# %%
# The built-in shapes: ten classes, drawn at random positions, sizes and colours.

fig, axes = plt.subplots(4, len(classes), figsize=(10, 4.4))
for c, name in enumerate(classes):
    for row, index in enumerate(np.flatnonzero(y_train == c)[:4]):
        axes[row, c].imshow(X_train[index].transpose(1, 2, 0))
        axes[row, c].axis("off")
    axes[0, c].set_title(name, fontsize=9)
fig.tight_layout()

# %%
# Distances
# ---------
# The classifier's work is the matrix of distances between test and training images. Sorting
# the test images by class shows blocks: images of one class tend to lie closer together.

knn = KNearestNeighbor(k=1).fit(X_train, y_train)
order_test, order_train = np.argsort(y_test[:100], kind="stable"), np.argsort(y_train, kind="stable")
distances = knn.compute_distances(X_test[:100][order_test])[:, order_train]

fig, ax = plt.subplots(figsize=(8, 3))
ax.imshow(distances, aspect="auto", cmap="viridis")
ax.set_xlabel("training image (sorted by class)")
ax.set_ylabel("test image (sorted)")
ax.set_title("L2 distances")

# %%
# Choosing k
# ----------
# Each fold of the training split is held out once while the other four vote; the mean
# accuracy over the folds chooses k.

ks = [1, 3, 5, 8, 10, 12, 15, 20, 50, 100]
result = cross_validate_k(X_train, y_train, ks, num_folds=5, seed=0)
means = np.array([result.accuracies[k].mean() for k in ks])
stds = np.array([result.accuracies[k].std() for k in ks])

fig, ax = plt.subplots(figsize=(6, 4))
for k in ks:
    ax.scatter([k] * len(result.accuracies[k]), result.accuracies[k], color="grey", s=10)
ax.errorbar(ks, means, yerr=stds, color="C0", marker="o")
ax.set_xscale("log")
ax.set_xlabel("k")
ax.set_ylabel("cross-validation accuracy")
ax.set_title(f"best k = {result.best_k}")
print("best k:", result.best_k)

# %%
# The test split, read once with the chosen k:

knn = KNearestNeighbor(k=result.best_k).fit(X_train, y_train)
print(f"test accuracy with k = {result.best_k}: {knn.score(X_test, y_test):.1%}")
