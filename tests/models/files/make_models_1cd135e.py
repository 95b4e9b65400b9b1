"""Save models with cnnkit at 1cd135e (before containers), for tests/models/test_residual.py.

    PYTHONPATH=<checkout of 1cd135e> python tests/models/files/make_models_1cd135e.py tests/models/files
"""
import sys

import numpy as np

from cnnkit import layers as nn
from cnnkit.models import FullyConnectedNet, Sequential

out = sys.argv[1]
rng = np.random.default_rng(0)
seq = Sequential([nn.Conv2d(2, 4, 3, padding=1, bias=False, rng=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Flatten(), nn.Dropout(0.3, rng=2), nn.Linear(4 * 3 * 3, 5, rng=3)], input_shape=(2, 6, 6))
fc = FullyConnectedNet([6], input_dim=8, num_classes=3, normalization="batchnorm", dropout=0.2, weight_scale="he",
                       rng=4)
X = {"seq": rng.standard_normal((4, 2, 6, 6)).astype(np.float32), "fc": rng.standard_normal((4, 8)).astype(np.float32)}
scores = {}
for name, model in (("seq", seq), ("fc", fc)):
    for _ in range(2):
        model.loss(X[name], np.zeros(4, dtype=np.int64))  # training steps' statistics in the buffers
    model.save(f"{out}/{name}-1cd135e.npz")
    scores[name] = model.eval().loss(X[name])
np.savez(f"{out}/scores-1cd135e.npz", **{f"{key}_X": value for key, value in X.items()},
         **{f"{key}_scores": value for key, value in scores.items()})
