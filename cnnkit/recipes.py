"""What `cnnkit train` builds: the models it offers, the data splits it trains on, its Trainer.

These are shared by the `train` and `sweep` commands and by benchmarks/results.py.
"""
import numpy as np

DATASET_CHOICES = ("builtin", "mnist", "fashion-mnist", "cifar10")
MODEL_CHOICES = ("convnet", "threelayer", "twolayer", "fc")
UPDATE_RULES = ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam")
# (random-crop padding, horizontal flip) per dataset; no flip for digits
AUGMENTATION = {"builtin": (2, True), "mnist": (2, False), "fashion-mnist": (2, True), "cifar10": (4, True)}


def convnet(image_shape, num_classes, width=16, hidden=128, reg=0.0, seed=0):
    """Small convnet: [conv3x3 - relu - maxpool2] x 2 - linear - relu - linear.

    Parameters
    ----------
    image_shape : (C, H, W)
    num_classes : int
    width : int
        Filters of the first conv layer; the second has twice as many.
    hidden : int
        Units of the hidden linear layer.
    reg : float
        L2 regularisation strength.
    seed : int
        Seed of the initial weights.

    Returns
    -------
    cnnkit.models.Sequential
    """
    from cnnkit import layers as nn
    from cnnkit.models import Sequential

    channels, height, width_px = image_shape
    rng = np.random.default_rng(seed)
    flat = 2 * width * (height // 4) * (width_px // 4)
    return Sequential([
        nn.Conv2d(channels, width, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, hidden, rng=rng), nn.ReLU(), nn.Linear(hidden, num_classes, rng=rng),
    ], reg=reg, input_shape=image_shape)


def build_model(name, image_shape, num_classes, reg=0.0, seed=0):
    """Model `name` (one of MODEL_CHOICES) for images of image_shape (C, H, W)."""
    from cnnkit.models import FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet

    features = int(np.prod(image_shape))
    if name == "convnet":
        return convnet(image_shape, num_classes, reg=reg, seed=seed)
    if name == "threelayer":
        return ThreeLayerConvNet(tuple(image_shape), num_filters=32, filter_size=5, hidden_dim=128,
                                 num_classes=num_classes, weight_scale="he", reg=reg, rng=seed)
    if name == "twolayer":
        return TwoLayerNet(features, hidden_dim=256, num_classes=num_classes, weight_scale="he", reg=reg, rng=seed)
    if name == "fc":
        return FullyConnectedNet([256, 128], features, num_classes, normalization="batchnorm",
                                 weight_scale="he", reg=reg, rng=seed)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_CHOICES)}")


def make_trainer(model, data, dataset, update_rule, lr, schedule, batch_size, epochs, seed, augment=True,
                 **options):
    """The Trainer `cnnkit train` uses: dataset's augmentation (AUGMENTATION) unless augment is
    False, schedule "cosine", "step" or "constant"; options go to Trainer as they are."""
    from cnnkit.datasets import augmentation
    from cnnkit.trainer import Trainer

    crop, flip = AUGMENTATION[dataset]
    return Trainer(model, data, update_rule=update_rule, optim_config={"learning_rate": lr},
                   schedule=None if schedule == "constant" else schedule, batch_size=batch_size,
                   num_epochs=epochs, seed=seed, augment=augmentation(crop, flip) if augment else None, **options)


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
    from cnnkit.datasets import channel_stats, load_dataset, normalize, train_val_split

    loaded = load_dataset(dataset, root, download=download)
    X, y = loaded["X_train"][:num_train], loaded["y_train"][:num_train]
    X_train, y_train, X_val, y_val = train_val_split(X, y, num_val, seed=seed)
    mean, std = channel_stats(X_train)
    data = {"X_train": normalize(X_train, mean, std), "y_train": y_train, "X_val": normalize(X_val, mean, std),
            "y_val": y_val, "X_test": normalize(loaded["X_test"], mean, std), "y_test": loaded["y_test"]}
    info = {"dataset": dataset, "classes": list(loaded["classes"]), "image_shape": list(X_train.shape[1:]),
            "mean": mean.tolist(), "std": std.tolist()}
    return data, info
