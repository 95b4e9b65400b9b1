"""Models: Sequential, the course's networks and classic classifiers.

Every network exposes `params`, `loss(X, y=None)`, `predict(X)`, `summary()`,
`save(path)` and `load(path)`; `load(path)` here rebuilds whichever model a file holds.
"""
from cnnkit.models.classic import FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet
from cnnkit.models.classifiers import KNearestNeighbor, LinearSVM, Softmax, cross_validate_k
from cnnkit.models.network import Network, Sequential, load
from cnnkit.models.resnet import basic_block, resnet

__all__ = [
    "FullyConnectedNet", "KNearestNeighbor", "LinearSVM", "Network", "Sequential", "Softmax",
    "ThreeLayerConvNet", "TwoLayerNet", "basic_block", "cross_validate_k", "load", "resnet",
]
