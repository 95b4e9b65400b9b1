"""Networks: layers applied in order with a classification loss on top, and their files.

`Network` is what Sequential and the classic nets share: `params` and `buffers`
(dicts of the layers' arrays under the model's keys), `loss(X, y=None)`, `predict`,
train/eval mode, `summary`, `save` and `load`.
"""
import contextlib
import os
import threading

import numpy as np

from cnnkit import functional as F
from cnnkit import layers as nn
from cnnkit._npz import assign_arrays, prefixed, read_npz, unprefixed, write_npz
from cnnkit._validation import check_real
from cnnkit.errors import ModelFileError
from cnnkit.layers import layer_config, layer_from_config
from cnnkit.models import inference

MODEL_FORMAT = "cnnkit-model"
LOSSES = {"softmax": F.softmax_loss, "svm": F.svm_loss}
_MODELS = {}  # class name -> Network subclass, for load()
_MODE_LOCK = threading.Lock()  # guards the mode switches of concurrent predict calls


class Network:
    """Layers applied in order, then a classification loss with L2 and L1 regularisation.

    Parameters
    ----------
    layers : list of Layer
    loss : {"softmax", "svm"}
        Data loss on the scores: softmax cross-entropy or multiclass hinge.
    reg : float
        L2 strength: the loss adds 0.5 * reg * sum(w**2) over the weights of Linear, Maxout
        and Conv2d (each layer's `regularized` params).
    l1 : float
        L1 strength: the loss adds l1 * sum(|w|) over the same weights (with reg too: elastic
        net); its gradient is l1 * sign(w), 0 where a weight is exactly 0.
    input_shape : tuple of int, optional
        Shape of one sample, used by summary().
    keys : list of dict, optional
        Per layer, the model key of each param or buffer name (e.g. {"weight": "W1"});
        by default "<layer index>.<name>", as PyTorch names them, and "<layer index>.<path>"
        for the arrays inside a container (e.g. "3.body.0.weight").

    Attributes
    ----------
    params : dict of arrays
        The trainable arrays under the model's keys. They are the layers' own arrays, so
        in-place changes act at once; an array assigned to a key (same shape and dtype)
        replaces the layer's at the next forward.
    buffers : dict of arrays
        Non-trainable state (batchnorm running statistics, dropout streams), kept in sync
        with the layers the same way.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _MODELS[cls.__name__] = cls

    def __init__(self, layers, loss="softmax", reg=0.0, input_shape=None, keys=None, l1=0.0):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        if reg < 0:
            raise ValueError(f"reg must be >= 0, got {reg!r}")
        self.l1 = check_real(l1, "l1", "a finite number >= 0", lambda v: v >= 0)
        self.layers = list(layers)
        bad = [layer for layer in self.layers if not isinstance(layer, nn.Layer)]
        if bad:
            raise TypeError(f"layers must be cnnkit.layers.Layer objects, got {bad}")
        self.loss_name, self.reg = loss, float(reg)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.training = True
        self._chain = nn.Sequential(self.layers)  # runs them: forward, backward, the fused conv+ReLU pairs
        self.layers = self._chain.layers  # one list
        keys = keys or [{}] * len(self.layers)
        self._entries = {kind: self._keyed(kind, keys) for kind in ("params", "buffers")}
        self.params = {key: layer.params[name] for key, (layer, name) in self._entries["params"].items()}
        self.buffers = {key: layer.buffers[name] for key, (layer, name) in self._entries["buffers"].items()}

    def _keyed(self, kind, keys):
        """{model key: (layer, name)} for every param (or buffer) of the layers and those inside them."""
        entries = {}
        for index, (layer, names) in enumerate(zip(self.layers, keys)):
            for path, owner, name in layer.named_arrays(kind):
                key = names.get(path, f"{index}.{path}")
                if key in entries:
                    raise ValueError(f"two arrays share the key {key!r}")
                entries[key] = (owner, name)
        return entries

    def forward(self, X):
        """Scores of shape (N, num_classes) for X of shape (N, ...), in the current mode."""
        self.sync()
        X = self._chain.forward(X)
        for key, (layer, name) in self._entries["buffers"].items():
            self.buffers[key] = layer.buffers[name]
        return X

    def sync(self):
        """Hand the arrays assigned in params and buffers to the layers now (forward does it first).

        For code that reads the layers' own arrays, e.g. an exporter; returns self.
        """
        for kind in ("params", "buffers"):
            self._push(kind)
        return self

    def _push(self, kind):
        """Hand arrays assigned in self.params (or buffers) to their layers, checking them first."""
        arrays, entries = getattr(self, kind), self._entries[kind]
        if arrays.keys() != entries.keys():
            raise KeyError(f"model.{kind} must have the keys {list(entries)}, got {list(arrays)}")
        for key, (layer, name) in entries.items():
            value, current = arrays[key], getattr(layer, kind)[name]
            if value is current:
                continue
            if np.shape(value) != current.shape or np.asarray(value).dtype != current.dtype:
                raise ValueError(f"model.{kind}[{key!r}] must be a {current.dtype} array of shape {current.shape}, "
                                 f"got {np.asarray(value).dtype} of shape {np.shape(value)}")
            getattr(layer, kind)[name] = value

    def backward(self, dscores, input_grad=True):
        """Backpropagate dscores through every layer; returns the gradient for X, or None with
        input_grad=False, which spares the first layer computing it (as loss does).
        """
        return self._chain.backward(dscores, input_grad)

    def fused(self):
        """Indices of the layers that run inside the layer before them: each ReLU right after a
        Conv2d (the pair runs as functional.conv2d_relu: one op, no pass of ReLU's own).
        """
        return self._chain.fused()

    def loss(self, X, y=None):
        """Scores, or the regularised loss and its gradients, in the current mode.

        Parameters
        ----------
        X : ndarray of shape (N, ...), the model's dtype
        y : int ndarray of shape (N,), optional

        Returns
        -------
        scores : ndarray of shape (N, num_classes), when y is None
        loss, grads : float and dict of arrays keyed like params, otherwise

        Scores in eval mode come from the inference plan (cnnkit.models.inference).
        """
        if y is None and not self.training:
            return inference.scores(self, X)
        scores = self.forward(X)
        if y is None:
            return scores
        loss, dscores = LOSSES[self.loss_name](scores, y)
        self.backward(dscores, input_grad=False)
        grads = {key: layer.grads[name] for key, (layer, name) in self._entries["params"].items()}
        if self.reg or self.l1:
            for key in self.incoming_axes:
                penalty, dweight = weight_penalty(self.params[key], self.reg, self.l1)
                loss, grads[key] = loss + penalty, grads[key] + dweight
        return float(loss), grads

    @property
    def incoming_axes(self):
        """{param key: axes holding one unit's incoming weights} for the regularised weights.

        The penalties apply to these params, and Trainer(max_norm=c) bounds the norm over
        these axes: a column of a Linear or Maxout weight, a filter of a Conv2d weight.
        """
        return {key: layer.regularized[name] for key, (layer, name) in self._entries["params"].items()
                if name in layer.regularized}

    def predict(self, X, batch_size=256):
        """Predicted classes, int ndarray of shape (N,); runs in eval mode, then restores the mode.

        Safe to call from several threads at once: the last call to finish restores the mode.
        """
        with _eval_mode(self):
            scores = [inference.scores(self, X[i:i + batch_size]) for i in range(0, len(X), batch_size)]
        return np.argmax(np.concatenate(scores), axis=1)

    def train(self):
        """Training mode for every layer (batch statistics, dropout); returns self."""
        return self._set_mode(True)

    def eval(self):
        """Evaluation mode for every layer (running statistics, no dropout); returns self."""
        return self._set_mode(False)

    def _set_mode(self, training):
        self.training = training
        for layer in self.layers:
            layer.train() if training else layer.eval()
        return self

    @property
    def num_params(self):
        """Number of trainable scalars."""
        return sum(layer.num_params for layer in self.layers)

    def summary(self, input_shape=None):
        """Table of the layers with their output shapes and parameter counts.

        Parameters
        ----------
        input_shape : tuple of int, optional
            Shape of one sample, e.g. (3, 32, 32); defaults to the model's input_shape.

        Returns
        -------
        str
        """
        sample = input_shape or self.input_shape
        if sample is None:
            raise ValueError("summary needs the shape of one sample, e.g. summary((3, 32, 32))")
        shape, rows = (None, *sample), [("layer", "output shape", "params")]
        for index, layer in enumerate(self.layers):
            rows += [(f"({label}) {text}", _format_shape(out), f"{count:,}")
                     for label, text, out, count in layer.summary_rows(shape, str(index))]
            shape = layer.output_shape(shape)
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}" for row in rows]
        rule = "-" * len(lines[0])
        title = (f"{type(self).__name__}: input {_format_shape((None, *sample))}, "
                 f"{self.loss_name} loss, reg {self.reg}" + (f", l1 {self.l1}" if self.l1 else ""))
        return "\n".join([title, rule, lines[0], rule, *lines[1:], rule,
                          f"total: {self.num_params:,} parameters"])

    def config(self):
        """Constructor arguments that rebuild this model (JSON-serialisable)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        """A new model built from config()."""
        return cls(**config)

    def save(self, path):
        """Write the model to an .npz: params, buffers and the architecture as JSON. Atomic."""
        architecture = {"format": MODEL_FORMAT, "version": 1, "class": type(self).__name__,
                        "config": self.config()}
        write_npz(path, {**prefixed("params", self.params), **prefixed("buffers", self.buffers)},
                  "architecture", architecture)

    @classmethod
    def load(cls, path):
        """The model saved at path, which must be an instance of this class.

        Raises ModelFileError (a ValueError) for a damaged file, TypeError for another class.
        """
        model = load(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path!r} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __repr__(self):
        lines = [f"  ({index}): {layer!r}".replace("\n", "\n  ") for index, layer in enumerate(self.layers)]
        return "\n".join([f"{type(self).__name__}(", *lines, ")"])


def load(path):
    """Load a model saved with save(path): rebuild it from its architecture, then fill its arrays.

    Raises
    ------
    OSError
        The file cannot be opened.
    ModelFileError
        (A ValueError.) The file is damaged, not a cnnkit model file, describes a model
        that cannot be built, or holds arrays that do not fit it.
    """
    architecture, arrays = read_npz(path, "architecture", MODEL_FORMAT, ModelFileError)
    name = architecture.get("class")
    if name not in _MODELS:
        raise ModelFileError(f"{os.fspath(path)}: unknown model class {name!r}; known: {sorted(_MODELS)}")
    try:
        model = _MODELS[name].from_config(architecture["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{os.fspath(path)}: cannot build the {name} it describes ({error})") from error
    assign_arrays(model.params, unprefixed("params", arrays), f"{os.fspath(path)}: parameters", ModelFileError)
    assign_arrays(model.buffers, unprefixed("buffers", arrays), f"{os.fspath(path)}: buffers", ModelFileError)
    return model


def weight_penalty(weight, l2, l1):
    """0.5 * l2 * sum(weight**2) + l1 * sum(|weight|) and its (sub)gradient l2 * weight + l1 * sign(weight).

    The L1 subgradient is 0 where a weight is exactly 0. Returns (float, ndarray of weight's shape and dtype).
    """
    penalty, gradient = 0.0, l2 * weight  # a term whose strength is 0 costs no pass over the weights
    if l2:
        penalty += 0.5 * l2 * float(np.sum(weight * weight))
    if l1:
        penalty += l1 * float(np.sum(np.abs(weight)))
        gradient += l1 * np.sign(weight)
    return penalty, gradient


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode for the block; concurrent blocks share it and the last one out restores the mode."""
    with _MODE_LOCK:
        if not getattr(model, "_eval_holders", 0):
            model._eval_holders, model._mode_to_restore = 0, model.training
            model._set_mode(False)
        model._eval_holders += 1
    try:
        yield
    finally:
        with _MODE_LOCK:
            model._eval_holders -= 1
            if not model._eval_holders:
                model._set_mode(model._mode_to_restore)


def _format_shape(shape):
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


class Sequential(Network):
    """Layers applied in order, like torch.nn.Sequential, with a loss on top.

    Parameters
    ----------
    layers : list of Layer
    loss, reg, input_shape, l1
        As for Network.

    Params and buffers are keyed "<layer index>.<name>", e.g. "0.weight", "1.running_mean", and
    "<layer index>.<path>" inside a container (cnnkit.layers.Sequential, Residual), e.g.
    "3.body.0.weight".

    Examples
    --------
    >>> from cnnkit import layers as nn
    >>> model = Sequential([nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Flatten(), nn.Linear(8 * 16 * 16, 10)], input_shape=(3, 32, 32))
    >>> model.num_params
    20714
    """

    def __init__(self, layers, loss="softmax", reg=0.0, input_shape=None, l1=0.0):
        super().__init__(layers, loss=loss, reg=reg, input_shape=input_shape, l1=l1)

    def config(self):
        return {"layers": [layer_config(layer) for layer in self.layers], "loss": self.loss_name,
                "reg": self.reg, "l1": self.l1, "input_shape": self.input_shape}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "layers": [layer_from_config(entry) for entry in config["layers"]]})
