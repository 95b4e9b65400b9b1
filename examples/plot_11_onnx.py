"""
Export to ONNX and run in onnxruntime
=====================================

:func:`cnnkit.onnx.export` writes a trained network as a standard ONNX graph, which any
ONNX runtime can execute without cnnkit. Here a small convnet is trained, exported, run in
onnxruntime, and the two sets of class scores are compared.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnx
import onnxruntime

import cnnkit
import cnnkit.onnx
from cnnkit import layers as L
from cnnkit.datasets import load_builtin, train_val_split
from cnnkit.models import Sequential

data = load_builtin(num_train=2000, num_test=500, seed=0)
X_train, y_train, X_val, y_val = train_val_split(data["X_train"], data["y_train"], num_val=500)
model = Sequential([
    L.Conv2d(3, 16, 3, padding=1), L.BatchNorm2d(16), L.ReLU(), L.MaxPool2d(2),
    L.Conv2d(16, 32, 3, padding=1), L.ReLU(), L.AvgPool2d(2),
    L.Flatten(), L.Dropout(0.3), L.Linear(32 * 4 * 4, 10),
])
cnnkit.Trainer(model, dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val), update_rule="adam",
               optim_config={"learning_rate": 3e-3}, batch_size=64, num_epochs=3, seed=0, verbose=False).train()

# %%
# Export, and look at the graph's nodes.

path = Path(tempfile.mkdtemp()) / "convnet.onnx"
cnnkit.onnx.export(model, path, input_shape=(3, 16, 16))
graph = onnx.load(path).graph
print(" -> ".join(node.op_type for node in graph.node))

# %%
# Run it in onnxruntime and compare with cnnkit's own scores.

session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
images = data["X_test"]
onnx_scores = session.run(None, {session.get_inputs()[0].name: images})[0]
cnnkit_scores = model.loss(images)
print(f"largest difference in scores: {np.abs(onnx_scores - cnnkit_scores).max():.2e}")
print(f"same predicted class for {np.mean(onnx_scores.argmax(1) == cnnkit_scores.argmax(1)):.1%} of the images")

fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(cnnkit_scores.ravel(), onnx_scores.ravel(), s=3)
ax.set(xlabel="cnnkit score", ylabel="onnxruntime score", title="class scores of 500 test images")
ax.set_aspect("equal")
