"""
Gradient checks of a two-layer network
======================================

Backpropagation gives the exact gradient of the loss cheaply; a centred difference,
``(f(x + h) - f(x - h)) / 2h``, estimates it expensively but independently. Comparing the
two, element by element, with the relative error ``|a - b| / max(|a|, |b|)``, catches
mistakes in a backward pass.

Check in float64: in float32 a difference quotient keeps only a couple of correct digits.
"""

import matplotlib.pyplot as plt
import numpy as np

from cnnkit.gradcheck import check_loss_gradients, numerical_gradient, rel_error
from cnnkit.models import TwoLayerNet

# %%
# A function whose gradient we know: f(x) = sum(x**2), gradient 2x.

x = np.random.default_rng(0).standard_normal(5)
print("relative error:", rel_error(numerical_gradient(lambda v: np.sum(v**2), x), 2 * x))

# %%
# A small two-layer net (affine - ReLU - affine - softmax), in float64, on random data:
# every parameter's analytic gradient against its numerical estimate, without and with
# L2 regularisation.

rng = np.random.default_rng(1)
X, y = rng.standard_normal((5, 12)), rng.integers(0, 4, size=5)
reports = {}
for reg in (0.0, 0.7):
    model = TwoLayerNet(input_dim=12, hidden_dim=8, num_classes=4, weight_scale=1e-1, reg=reg,
                        dtype=np.float64, rng=0)
    reports[f"float64, reg {reg}"] = check_loss_gradients(lambda m=model: m.loss(X, y), model.params)
    print(f"reg {reg}:", reports[f"float64, reg {reg}"])

# %%
# The same check in float32 shows why the checks run in float64: float32 keeps about 7
# digits, so with h = 1e-5 the two losses of a centred difference agree in almost all of
# them and their difference is mostly rounding. The estimates are useless, and so is the check.

model32 = TwoLayerNet(input_dim=12, hidden_dim=8, num_classes=4, weight_scale=1e-1, reg=0.7,
                      dtype=np.float32, rng=0)
reports["float32, reg 0.7"] = check_loss_gradients(lambda: model32.loss(X.astype(np.float32), y), model32.params)
print("float32:", reports["float32, reg 0.7"])

# %%
# A bug the check catches: a backward pass that forgets the regularisation gradient of W1.

buggy = TwoLayerNet(input_dim=12, hidden_dim=8, num_classes=4, weight_scale=1e-1, reg=0.7,
                    dtype=np.float64, rng=0)


def forgetful_loss():
    loss, grads = buggy.loss(X, y)
    return loss, {**grads, "W1": grads["W1"] - 0.7 * buggy.params["W1"]}


reports["float64, reg 0.7, bug in W1"] = check_loss_gradients(forgetful_loss, buggy.params)
print("with the bug:", reports["float64, reg 0.7, bug in W1"])

# %%
# The relative error of each parameter, per check: below 1e-7 is right, above 1e-2 is a bug.

fig, ax = plt.subplots(figsize=(7, 4))
names = list(next(iter(reports.values())).errors)
width = 0.8 / len(reports)
for i, (label, report) in enumerate(reports.items()):
    errors = [max(report.errors[name], 1e-16) for name in names]
    ax.bar(np.arange(len(names)) + i * width, errors, width, label=label)
ax.axhline(1e-7, color="grey", linestyle="--")
ax.set_yscale("log")
ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
ax.set_ylabel("relative error")
ax.legend(fontsize=8)
