"""Export a network to ONNX, so that onnxruntime (or any ONNX runtime) can run it without cnnkit.

The graph uses standard operators of opset OPSET (default domain) and float32 throughout:
input "images" of shape (N, *input_shape), output "scores" of shape (N, num_classes).
Each layer type has a small converter that appends its nodes; the network is exported as
in evaluation mode (batchnorm with its running statistics, dropout as the identity).
Needs the onnx package (`pip install "cnnkit[onnx]"`); `import cnnkit` does not import it.
"""
import json

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as error:
    raise ImportError('cnnkit.onnx needs the onnx package: pip install "cnnkit[onnx]"') from error

from cnnkit import layers as nn
from cnnkit._files import atomic_write
from cnnkit._version import __version__
from cnnkit.models import Network

OPSET = 17


class _Graph:
    """The nodes and initializers of a graph being built; names start with the layer's path (e.g. "3.body.0")."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def node(self, op, inputs, prefix, **attributes):
        """Append an `op` node; returns the name of its output, "<prefix>.<op>"."""
        output = f"{prefix}.{op}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def constant(self, name, array):
        """Add an initializer (floats as float32, integers as int64); returns its name."""
        array = np.asarray(array)
        self.initializers.append(numpy_helper.from_array(
            np.ascontiguousarray(array, np.float32 if array.dtype.kind == "f" else np.int64), name))
        return name


def _window(layer):
    """kernel_shape, strides and pads attributes of a conv or pooling layer."""
    (ph, pw) = layer.padding
    return {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride), "pads": [ph, pw, ph, pw]}


def _weight_and_bias(graph, layer, prefix, weight):
    """Initializers of `weight` and, when the layer has one, its bias (flattened)."""
    names = [graph.constant(f"{prefix}.weight", weight)]
    if "bias" in layer.params:
        names.append(graph.constant(f"{prefix}.bias", layer.params["bias"].reshape(-1)))
    return names


def _conv2d(graph, layer, x, prefix):
    inputs = _weight_and_bias(graph, layer, prefix, layer.params["weight"])
    return graph.node("Conv", [x, *inputs], prefix, **_window(layer))


def _affine(graph, layer, x, prefix, weight):
    """Flatten x to (N, D), then x @ weight + bias, weight of shape (D, M)."""
    flat = graph.node("Flatten", [x], prefix, axis=1)
    return graph.node("Gemm", [flat, *_weight_and_bias(graph, layer, prefix, weight)], prefix)


def _linear(graph, layer, x, prefix):
    return _affine(graph, layer, x, prefix, layer.params["weight"])


def _maxout(graph, layer, x, prefix):
    features, units, pieces = layer.params["weight"].shape
    scores = _affine(graph, layer, x, prefix, layer.params["weight"].reshape(features, units * pieces))
    pieces_apart = graph.node("Reshape", [scores, graph.constant(f"{prefix}.shape", [-1, units, pieces])], prefix)
    return graph.node("ReduceMax", [pieces_apart], prefix, axes=[2], keepdims=0)


def _max_pool2d(graph, layer, x, prefix):
    return graph.node("MaxPool", [x], prefix, **_window(layer))


def _avg_pool2d(graph, layer, x, prefix):
    # cnnkit averages over the whole window, padding zeros included
    return graph.node("AveragePool", [x], prefix, count_include_pad=1, **_window(layer))


def _batchnorm(graph, layer, x, prefix):
    arrays = {**layer.params, **layer.buffers}
    inputs = [graph.constant(f"{prefix}.{name}", arrays[name])
              for name in ("weight", "bias", "running_mean", "running_var")]
    return graph.node("BatchNormalization", [x, *inputs], prefix, epsilon=layer.eps)


def _relu(graph, layer, x, prefix):
    return graph.node("Relu", [x], prefix)


def _leaky_relu(graph, layer, x, prefix):
    return graph.node("LeakyRelu", [x], prefix, alpha=layer.negative_slope)


def _sigmoid(graph, layer, x, prefix):
    return graph.node("Sigmoid", [x], prefix)


def _tanh(graph, layer, x, prefix):
    return graph.node("Tanh", [x], prefix)


def _elu(graph, layer, x, prefix):
    return graph.node("Elu", [x], prefix, alpha=layer.alpha)


def _dropout(graph, layer, x, prefix):
    return x  # the identity in evaluation mode


def _flatten(graph, layer, x, prefix):
    return graph.node("Flatten", [x], prefix, axis=1)


def _global_avg_pool2d(graph, layer, x, prefix):
    return graph.node("GlobalAveragePool", [x], prefix)


def _sequential(graph, layer, x, prefix):
    for name, child in layer.children.items():
        x = _convert(graph, child, x, f"{prefix}.{name}")
    return x


def _residual(graph, layer, x, prefix):
    out = _convert(graph, layer.body, x, f"{prefix}.body")
    skipped = x if layer.shortcut is None else _convert(graph, layer.shortcut, x, f"{prefix}.shortcut")
    return graph.node("Add", [out, skipped], prefix)


# layer class -> converter(graph, layer, input name, prefix) -> output name
CONVERTERS = {
    nn.Conv2d: _conv2d, nn.Linear: _linear, nn.Maxout: _maxout, nn.MaxPool2d: _max_pool2d, nn.AvgPool2d: _avg_pool2d,
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm, nn.ReLU: _relu, nn.LeakyReLU: _leaky_relu,
    nn.Sigmoid: _sigmoid, nn.Tanh: _tanh, nn.ELU: _elu, nn.Dropout: _dropout, nn.Flatten: _flatten,
    nn.GlobalAvgPool2d: _global_avg_pool2d, nn.Sequential: _sequential, nn.Residual: _residual,
}


def _normalize(graph, x, mean, std):
    """(x - mean) / std per channel, mean and std of shape (C,)."""
    shifted = graph.node("Sub", [x, graph.constant("mean", np.reshape(mean, (1, -1, 1, 1)))], "normalize")
    return graph.node("Div", [shifted, graph.constant("std", np.reshape(std, (1, -1, 1, 1)))], "normalize")


def export(model, path, input_shape, mean=None, std=None, classes=None):
    """Write a network as an ONNX model of opset OPSET that maps images to class scores.

    Parameters
    ----------
    model : cnnkit.models.Network
        Sequential or a classic net, exported as in evaluation mode; float64 weights
        are stored as float32.
    path : str or path-like
        The .onnx file, written atomically (nothing is written if the export fails).
    input_shape : tuple of int
        Shape of one sample, e.g. (3, 32, 32); the graph's input "images" is float32 of
        shape (N, *input_shape) with N free.
    mean, std : array-like of shape (C,), optional
        Per-channel normalisation the graph applies first, (images - mean) / std, as
        `cnnkit train` normalises its data; both or neither.
    classes : list of str, optional
        Class names, stored as JSON in the model's metadata under "classes".

    Returns
    -------
    onnx.ModelProto
        The exported model, which passed onnx.checker.check_model; its output "scores"
        has shape (N, num_classes).
    """
    if not isinstance(model, Network):
        raise TypeError(f"expected a cnnkit network (Sequential or a classic net), got {type(model).__name__}")
    input_shape = tuple(int(d) for d in input_shape)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std for the input normalisation, or neither")
    if mean is not None and not (len(input_shape) == 3 and np.shape(mean) == np.shape(std) == input_shape[:1]):
        raise ValueError(f"mean and std must have shape (C,) for images of shape (C, H, W), got {np.shape(mean)} "
                         f"and {np.shape(std)} for input_shape {input_shape}")
    model.sync()  # the layers' arrays are read below
    output_shape = (None, *input_shape)
    for layer in model.layers:
        output_shape = layer.output_shape(output_shape)  # ValueError naming the expected shape
    graph = _Graph()
    x = "images" if mean is None else _normalize(graph, "images", mean, std)
    for index, layer in enumerate(model.layers):
        x = _convert(graph, layer, x, str(index))
    graph.nodes.append(helper.make_node("Identity", [x], ["scores"], name="scores"))
    proto = helper.make_model(
        helper.make_graph(graph.nodes, type(model).__name__, [_tensor("images", ("N", *input_shape))],
                          [_tensor("scores", ("N", *output_shape[1:]))], graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnnkit", producer_version=__version__)
    if classes is not None:
        helper.set_model_props(proto, {"classes": json.dumps(list(classes))})
    onnx.checker.check_model(proto, full_check=True)
    with atomic_write(path) as file:
        file.write(proto.SerializeToString())
    return proto


def _convert(graph, layer, x, prefix):
    """Append the nodes of `layer` (its path in the model is `prefix`) applied to x; returns their output."""
    if type(layer) not in CONVERTERS:
        supported = ", ".join(sorted(kind.__name__ for kind in CONVERTERS))
        raise ValueError(f"cannot export layer {prefix}, {layer!r}: no ONNX converter for {type(layer).__name__} "
                         f"(supported: {supported})")
    return CONVERTERS[type(layer)](graph, layer, x, prefix)


def _tensor(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
