"""What `cnnkit train` builds: the models it offers, the data splits it trains on, its Trainer.

These are shared by the `train` and `sweep` commands and by benchmarks/results.py.
"""
import itertools

import numpy as np

from cnnkit import layers as nn
from cnnkit.datasets import augmentation, channel_stats, load_dataset, normalize, train_val_split
from cnnkit.models import FullyConnectedNet, Sequential, ThreeLayerConvNet, TwoLayerNet, resnet
from cnnkit.trainer import Trainer

DATASET_CHOICES = ("builtin", "mnist", "fashion-mnist", "cifar10")
MODEL_CHOICES = ("convnet", "vgg", "resnet", "threelayer", "twolayer", "fc", "maxout")
# the width each model has unless told: first conv's filters (convnet, vgg, resnet, threelayer), else hidden units
WIDTHS = {"convnet": 16, "vgg": 32, "resnet": 16, "threelayer": 32, "twolayer": 256, "fc": 256, "maxout": 240}
# the depth unless told: conv layers per stage (vgg), weighted layers 6n + 2 (resnet)
DEPTHS = {"vgg": 1, "resnet": 20}
UPDATE_RULES = ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam")
# the options that shape the recipe's own model (build_model's keywords; None: the model's own)
ARCHITECTURE = ("width", "depth", "hidden", "dropout")
# cnnkit.datasets.augmentation's options per dataset: no flips for digits; rotations and zooms
# (a random affine map with shifts of up to crop_padding pixels) for MNIST
AUGMENTATION = {"builtin": dict(crop_padding=2, flip=True),
                "mnist": dict(crop_padding=2, flip=False, degrees=10.0, scale=0.1),
                "fashion-mnist": dict(crop_padding=2, flip=True),
                "cifar10": dict(crop_padding=4, flip=True)}
# What `cnnkit train --dataset NAME` trains unless its options say otherwise (keys are the options;
# warmup counts updates; num_val: training images held out for validation, MNIST's classic
# 55,000 / 5,000 split): the README's results come from these.
_MNIST = dict(model="convnet", width=16, depth=None, hidden=256, dropout=0.4, epochs=24, batch_size=128,
              update_rule="adam", lr=3e-3, schedule="cosine", warmup=200, reg=1e-4, num_val=5000)
RECIPES = {
    "builtin": dict(model="convnet", width=16, depth=None, hidden=None, dropout=0.0, epochs=10, batch_size=64,
                    update_rule="adam", lr=3e-3, schedule="cosine", warmup=0, reg=0.0, num_val=1000),
    "mnist": _MNIST,
    "fashion-mnist": _MNIST,
    "cifar10": dict(model="vgg", width=48, depth=1, hidden=None, dropout=0.25, epochs=90, batch_size=64,
                    update_rule="nesterov", lr=0.05, schedule="cosine", warmup=200, reg=4e-3, num_val=1000),
}


def recipe(dataset, model=None):
    """The options RECIPES[dataset] sets; for a model other than the recipe's, without those of
    ARCHITECTURE (that model's own apply)."""
    options = dict(RECIPES[dataset])
    if model not in (None, options["model"]):
        for name in ARCHITECTURE:
            del options[name]
    return options


def architecture(options):
    """build_model's keywords (ARCHITECTURE) from a dict of options such as a recipe."""
    return {name: options.get(name) for name in ARCHITECTURE}


def describe_recipe(dataset):
    """One line saying what RECIPES[dataset] trains, e.g. for `cnnkit train --help`."""
    r = RECIPES[dataset]
    depth = f", depth {r['depth']}" if r["depth"] else ""
    hidden = f", hidden {r['hidden']}" if r["hidden"] else ""
    dropout = f", dropout {r['dropout']:g}" if r["dropout"] else ""
    warmup = f", {r['warmup']} warm-up updates" if r["warmup"] else ""
    return (f"{dataset}: {r['model']} width {r['width']}{depth}{hidden}{dropout}; {r['epochs']} epochs of batch "
            f"{r['batch_size']}, {r['update_rule']} lr {r['lr']:g} {r['schedule']}{warmup}, L2 {r['reg']:g}; "
            f"{describe_augmentation(**AUGMENTATION[dataset])}")


def describe_augmentation(crop_padding, flip, degrees=0.0, scale=0.0):
    """E.g. "random crops (pad 4) and flips", for describe_recipe."""
    if degrees or scale:
        moves = f"random rotations (+-{degrees:g} deg), zooms (+-{scale:.0%}) and shifts (+-{crop_padding} px)"
    else:
        moves = f"random crops (pad {crop_padding})"
    return moves + (" and flips" if flip else "")


def convnet(image_shape, num_classes, width=16, hidden=128, dropout=0.0, reg=0.0, seed=0, l1=0.0):
    """Small convnet: [conv3x3 - relu - maxpool2] x 2 - linear - relu - dropout - linear.

    Parameters
    ----------
    image_shape : (C, H, W)
    num_classes : int
    width : int
        Filters of the first conv layer; the second has twice as many.
    hidden : int
        Units of the hidden linear layer.
    dropout : float
        Dropout probability before the last layer (0: none).
    reg, l1 : float
        L2 and L1 regularisation strengths.
    seed : int
        Seed of the initial weights.

    Returns
    -------
    cnnkit.models.Sequential
    """
    channels, height, width_px = image_shape
    rng = np.random.default_rng(seed)
    flat = 2 * width * (height // 4) * (width_px // 4)
    return Sequential([
        nn.Conv2d(channels, width, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, hidden, rng=rng), nn.ReLU(),
        *_dropout(dropout, rng), nn.Linear(hidden, num_classes, rng=rng),
    ], reg=reg, l1=l1, input_shape=image_shape)


def vgg(image_shape, num_classes, width=32, depth=1, dropout=0.0, reg=0.0, seed=0, l1=0.0):
    """VGG-style convnet: stages of [conv3x3 - batchnorm - relu] x depth - maxpool2, then dropout - linear.

    Stages follow each other while the image is at least 8 pixels high and wide (2 for
    28 x 28 MNIST, 3 for 32 x 32 CIFAR-10); the first has `width` filters, each next one
    twice as many.

    Parameters
    ----------
    image_shape : (C, H, W)
    num_classes : int
    width : int
        Filters of the first stage.
    depth : int
        Conv layers per stage.
    dropout : float
        Dropout probability before the linear layer (0: none).
    reg, l1, seed
        As for convnet.

    Returns
    -------
    cnnkit.models.Sequential
    """
    channels, height, width_px = image_shape
    rng = np.random.default_rng(seed)
    layers, filters = [], width
    while min(height, width_px) >= 8:
        for _ in range(depth):
            layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(filters),
                       nn.ReLU()]
            channels = filters
        layers.append(nn.MaxPool2d(2))
        filters, height, width_px = 2 * filters, height // 2, width_px // 2
    layers += [nn.Flatten(), *_dropout(dropout, rng), nn.Linear(channels * height * width_px, num_classes, rng=rng)]
    return Sequential(layers, reg=reg, l1=l1, input_shape=image_shape)


def _dropout(p, rng):
    """[Dropout(p)], or [] when p is 0."""
    return [nn.Dropout(p, rng=rng)] if p else []


def maxout_mlp(image_shape, num_classes, hidden=(240, 240), pieces=5, dropout=0.2, reg=0.0, seed=0, l1=0.0):
    """Maxout MLP after Goodfellow et al. 2013: [dropout - maxout] x len(hidden) - dropout - linear.

    Parameters
    ----------
    image_shape : (C, H, W)
    num_classes : int
    hidden : sequence of int
        Units of each maxout layer.
    pieces : int
        Affine pieces per maxout unit.
    dropout : float
        Dropout probability before each weighted layer (0: none).
    reg, l1, seed
        As for convnet.

    Returns
    -------
    cnnkit.models.Sequential
    """
    rng = np.random.default_rng(seed)
    widths = [int(np.prod(image_shape)), *hidden]
    layers = [nn.Flatten()]
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [*_dropout(dropout, rng), nn.Maxout(fan_in, fan_out, pieces, init="xavier", rng=rng)]
    layers += [*_dropout(dropout, rng), nn.Linear(widths[-1], num_classes, rng=rng)]
    return Sequential(layers, reg=reg, l1=l1, input_shape=image_shape)


def build_model(name, image_shape, num_classes, reg=0.0, seed=0, l1=0.0, width=None, dropout=None, depth=None,
                hidden=None):
    """Model `name` (one of MODEL_CHOICES) for images of image_shape (C, H, W), with L2 strength
    reg and L1 strength l1; width (see WIDTHS), dropout, depth (DEPTHS: vgg's conv layers per
    stage, resnet's 6n + 2 layers) and hidden (convnet's) None take the model's own."""
    if name not in MODEL_CHOICES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_CHOICES)}")
    if dropout and name in ("resnet", "threelayer", "twolayer"):
        raise ValueError(f"model {name} has no dropout; convnet, vgg, fc and maxout have")
    if depth is not None and name not in DEPTHS:
        raise ValueError(f"depth (conv layers per stage) is vgg's and resnet's (6n + 2 layers), not {name}'s")
    if hidden is not None and name != "convnet":
        raise ValueError(f"hidden (units of the linear layer after the convs) is convnet's, not {name}'s")
    width = WIDTHS[name] if width is None else width
    depth = DEPTHS.get(name) if depth is None else depth
    common = dict(reg=reg, l1=l1, **({} if dropout is None else {"dropout": dropout}))
    features = int(np.prod(image_shape))
    if name == "convnet":
        return convnet(image_shape, num_classes, width=width, seed=seed, **common,
                       **({} if hidden is None else {"hidden": hidden}))
    if name == "vgg":
        return vgg(image_shape, num_classes, width=width, depth=depth, seed=seed, **common)
    if name == "resnet":
        return resnet(image_shape, num_classes, depth=depth, width=width, seed=seed, reg=reg, l1=l1)
    if name == "maxout":
        return maxout_mlp(image_shape, num_classes, hidden=(width, width), seed=seed, **common)
    if name == "threelayer":
        return ThreeLayerConvNet(tuple(image_shape), num_filters=width, filter_size=5, hidden_dim=128,
                                 num_classes=num_classes, weight_scale="he", rng=seed, **common)
    if name == "twolayer":
        return TwoLayerNet(features, hidden_dim=width, num_classes=num_classes, weight_scale="he", rng=seed, **common)
    return FullyConnectedNet([width, width // 2], features, num_classes, normalization="batchnorm",
                             weight_scale="he", rng=seed, **common)


def make_trainer(model, data, dataset, update_rule, lr, schedule, batch_size, epochs, seed, augment=True,
                 **options):
    """The Trainer `cnnkit train` uses: dataset's augmentation (AUGMENTATION) unless augment is
    False, schedule "cosine", "step" or "constant"; options go to Trainer as they are."""
    return Trainer(model, data, update_rule=update_rule, optim_config={"learning_rate": lr},
                   schedule=None if schedule == "constant" else schedule, batch_size=batch_size,
                   num_epochs=epochs, seed=seed, augment=augmentation(**AUGMENTATION[dataset]) if augment else None,
                   **options)


def training_data(dataset, root=None, download=False, num_train=None, num_val=1000, seed=0):
    """Normalised splits of a dataset, as `cnnkit train` uses them.

    The first num_train training images (all when None) are split at random into
    training and num_val validation images; the per-channel mean and std of the
    training part normalise every split.

    Returns
    -------
    data : dict with X_train, y_train, X_val, y_val, X_test, y_test
    info : dict with dataset, classes, image_shape (C, H, W), mean and std (lists)
    """
    loaded = load_dataset(dataset, root, download=download)
    X, y = loaded["X_train"][:num_train], loaded["y_train"][:num_train]
    X_train, y_train, X_val, y_val = train_val_split(X, y, num_val, seed=seed)
    mean, std = channel_stats(X_train)
    data = {"X_train": normalize(X_train, mean, std), "y_train": y_train, "X_val": normalize(X_val, mean, std),
            "y_val": y_val, "X_test": normalize(loaded["X_test"], mean, std), "y_test": loaded["y_test"]}
    info = {"dataset": dataset, "classes": list(loaded["classes"]), "image_shape": list(X_train.shape[1:]),
            "mean": mean.tolist(), "std": std.tolist()}
    return data, info
