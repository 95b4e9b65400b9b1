"""The CIFAR ResNets of He et al. (2016, section 4.2): ResNet-6n+2, built as a Sequential of Residual blocks."""
import numpy as np

from cnnkit import layers as nn
from cnnkit.models.network import Sequential


def basic_block(in_channels, out_channels, stride=1, rng=None):
    """Residual(conv3x3 - batchnorm - relu - conv3x3 - batchnorm) - relu, as two layers.

    The first conv has the stride; where the shape changes (stride > 1 or more channels)
    the shortcut is a 1x1 strided conv - batchnorm (He et al.'s option B), else the identity.

    Returns
    -------
    list of Layer: [Residual, ReLU]
    """
    body = nn.Sequential([
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, rng=rng),
        nn.BatchNorm2d(out_channels), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(out_channels),
    ])
    changes_shape = stride != 1 or in_channels != out_channels
    shortcut = nn.Residual.projection(in_channels, out_channels, stride, rng=rng) if changes_shape else None
    return [nn.Residual(body, shortcut), nn.ReLU()]


def resnet(image_shape, num_classes, depth=20, width=16, reg=0.0, seed=0, l1=0.0):
    """CIFAR ResNet-`depth`: conv3x3 - batchnorm - relu, three stages of n basic blocks, global average pool, linear.

    depth = 6n + 2 counts the weighted layers on the longest path (20, 32, 44, 56, 110 in the
    paper; 8 and 14 are smaller members). The stages have width, 2*width and 4*width filters
    (16/32/64 by default); the second and third halve the image in their first block.

    Parameters
    ----------
    image_shape : (C, H, W)
    num_classes : int
    depth : int, 6n + 2 with n >= 1
    width : int
        Filters of the first conv and the first stage.
    reg, l1 : float
        L2 and L1 strengths (over every conv and the linear weight).
    seed : int
        Seed of the initial weights.

    Returns
    -------
    cnnkit.models.Sequential
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet's depth is 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}")
    rng = np.random.default_rng(seed)
    channels = image_shape[0]
    layers = [nn.Conv2d(channels, width, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(width), nn.ReLU()]
    filters = width
    for stage in range(3):
        for block in range((depth - 2) // 6):
            stride = 2 if stage and not block else 1
            layers += basic_block(filters, width << stage, stride, rng)
            filters = width << stage
    layers += [nn.GlobalAvgPool2d(), nn.Linear(filters, num_classes, rng=rng)]
    return Sequential(layers, reg=reg, l1=l1, input_shape=tuple(image_shape))
