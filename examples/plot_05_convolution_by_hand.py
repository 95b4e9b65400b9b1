"""
A convolution by hand, against the fast kernel
==============================================

A convolutional layer slides each of its filters over the input: every output value is the
dot product of one filter ``(C, KH, KW)`` with the input window under it, plus a bias. The
output size is ``(H + 2 * padding - KH) // stride + 1``.

Here a convolution written as plain loops is checked against :func:`cnnkit.functional.conv2d_forward`
on both backends, then used to find the edges of an image.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

import cnnkit
from cnnkit import functional as F
from cnnkit.datasets import make_shapes


def conv2d_by_hand(x, w, b, stride=1, padding=0):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,) -> (N, F, OH, OW), one window at a time."""
    n, _, height, width = x.shape
    filters, _, kh, kw = w.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1
    out = np.empty((n, filters, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = padded[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]  # (N, C, KH, KW)
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


rng = np.random.default_rng(0)
x = rng.standard_normal((8, 3, 32, 32))
w, b = rng.standard_normal((16, 3, 5, 3)), rng.standard_normal(16)  # a non-square kernel

timings = {}
start = time.perf_counter()
expected = conv2d_by_hand(x, w, b, stride=2, padding=1)
timings["by hand"] = time.perf_counter() - start
for backend in cnnkit.available_backends():
    with cnnkit.use_backend(backend):
        start = time.perf_counter()
        out, _ = F.conv2d_forward(x, w, b, stride=2, padding=1)
        timings[backend] = time.perf_counter() - start
    print(f"{backend:>9}: shape {out.shape}, max difference from the loops {np.abs(out - expected).max():.1e}")
for name, seconds in timings.items():
    print(f"{name:>9}: {seconds * 1e3:.2f} ms")

# %%
# Edges
# -----
# Two hand-made filters find the vertical and horizontal edges of an image: each is a
# difference of neighbouring pixels (a Sobel filter), the same on all three channels.

images, _ = make_shapes(1, np.random.default_rng(3), image_size=64)
image = images[:1].astype(np.float64)
sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
filters = np.stack([np.stack([sobel] * 3), np.stack([sobel.T] * 3)])  # (2, 3, 3, 3)
edges, _ = F.conv2d_forward(image, filters, np.zeros(2), padding=1)

fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
axes[0].imshow(image[0].transpose(1, 2, 0))
axes[0].set_title("input")
for ax, response, title in zip(axes[1:], edges[0], ["vertical edges", "horizontal edges"]):
    ax.imshow(response, cmap="RdBu", vmin=-np.abs(edges).max(), vmax=np.abs(edges).max())
    ax.set_title(title)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
