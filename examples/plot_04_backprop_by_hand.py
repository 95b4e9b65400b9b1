"""
Backpropagation by hand through a small graph
=============================================

A 2-input sigmoid neuron, ``f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2)))``, written as a
graph of simple gates. The forward pass computes each gate's output from its inputs; the
backward pass starts from ``df/df = 1`` and multiplies, gate by gate, the gradient arriving
from above by the gate's local derivative (the chain rule). The result is checked against
numerical gradients.
"""

import matplotlib.pyplot as plt
import numpy as np

from cnnkit.gradcheck import numerical_gradient, rel_error

w = np.array([2.0, -3.0, -3.0])
x = np.array([-1.0, -2.0])

# %%
# Forward pass, one gate at a time.

a = w[0] * x[0]         # multiply
b = w[1] * x[1]         # multiply
c = a + b               # add
d = c + w[2]            # add the bias
e = -d                  # negate
g = np.exp(e)           # exp
h = 1 + g               # add 1
f = 1 / h               # reciprocal
print(f"f = {f:.4f}")

# %%
# Backward pass: each line is (gradient from above) x (local derivative).

df = 1.0
dh = df * (-1 / h**2)   # d(1/h)/dh
dg = dh * 1             # d(1 + g)/dg
de = dg * np.exp(e)     # d(exp e)/de
dd = de * -1            # d(-d)/dd
dc, dw2 = dd * 1, dd * 1
da, db = dc * 1, dc * 1
dw0, dx0 = da * x[0], da * w[0]
dw1, dx1 = db * x[1], db * w[1]
dw, dx = np.array([dw0, dw1, dw2]), np.array([dx0, dx1])
print("dw =", dw.round(4), " dx =", dx.round(4))

# %%
# The sigmoid's derivative is ``f (1 - f)``: the five gates after ``d`` collapse into one.

print("dd from the sigmoid's derivative:", f * (1 - f), " by hand:", dd)

# %%
# Checked against centred differences:


def neuron(w, x):
    return 1 / (1 + np.exp(-(w[0] * x[0] + w[1] * x[1] + w[2])))


print("rel_error dw:", rel_error(dw, numerical_gradient(lambda v: neuron(v, x), w.copy())))
print("rel_error dx:", rel_error(dx, numerical_gradient(lambda v: neuron(w, v), x.copy())))

# %%
# The graph, with each value (green, above an edge) and its gradient (red, below).

nodes = {"w0": ("w0", 0, 4.6), "x0": ("x0", 0, 3.2), "w1": ("w1", 0, 2.3), "x1": ("x1", 0, 0.9), "w2": ("w2", 0, 0),
         "a": ("*", 1, 3.5), "b": ("*", 1, 1.5), "c": ("+", 2, 2.5), "d": ("+", 3, 1.25), "e": ("-x", 4, 1.25),
         "g": ("exp", 5, 1.25), "h": ("+1", 6, 1.25), "f": ("1/x", 7, 1.25), "out": ("f", 8, 1.25)}
edges = [("w0", "a", w[0], dw0), ("x0", "a", x[0], dx0), ("w1", "b", w[1], dw1), ("x1", "b", x[1], dx1),
         ("a", "c", a, da), ("b", "c", b, db), ("c", "d", c, dc), ("w2", "d", w[2], dw2),
         ("d", "e", d, dd), ("e", "g", e, de), ("g", "h", g, dg), ("h", "f", h, dh), ("f", "out", f, df)]
fig, ax = plt.subplots(figsize=(11, 4))
for start, end, value, grad in edges:
    (_, x0, y0), (_, x1, y1) = nodes[start], nodes[end]
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color="0.5", shrinkA=12, shrinkB=12))
    tx, ty = x0 + 0.4 * (x1 - x0), y0 + 0.4 * (y1 - y0)  # nearer the source, where edges are apart
    ax.text(tx, ty + 0.12, f"{value:.2f}", color="green", ha="center", fontsize=9)
    ax.text(tx, ty - 0.3, f"{grad:.2f}", color="red", ha="center", fontsize=9)
for label, px, py in nodes.values():
    ax.text(px, py, label, ha="center", va="center", bbox=dict(boxstyle="round", facecolor="white", edgecolor="0.3"))
ax.set_xlim(-0.5, 8.5)
ax.set_ylim(-0.6, 5.0)
ax.axis("off")
