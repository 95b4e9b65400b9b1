"""The layers of `cnnkit bench --suite`: conv and pooling layers of the architectures people
train, and seeded random ones, each timed forward+backward against PyTorch.

Batch sizes keep every conv's forward at about MAX_MACS multiply-adds or fewer, so that
the whole suite runs in minutes; the layers whose batch is the point (batch 1 and batch
256) keep theirs.
"""
import fnmatch

import numpy as np

from cnnkit.bench.cases import Conv, Pool

SEED, RANDOM_LAYERS = 22, 10
MAX_MACS = 3e8  # forward multiply-adds of a conv layer; a random one's batch shrinks to fit

LAYERS = {
    # LeNet-5: 5x5 convs, 2x2 pools, first layer on one channel
    "lenet-conv1": Conv((64, 1, 32, 32), 6, 5),
    "lenet-pool1": Pool((64, 6, 28, 28), 2, 2, kind="avg"),
    "lenet-conv2": Conv((64, 6, 14, 14), 16, 5),
    "lenet-pool2": Pool((64, 16, 10, 10), 2, 2),
    "mnist-conv1-b256": Conv((256, 1, 28, 28), 20, 5),
    "mnist-pool1-b256": Pool((256, 20, 24, 24), 2, 2),
    # AlexNet: 11x11/4 on three channels, 5x5, 3x3, overlapping 3x3/2 max pools on odd sizes
    "alexnet-conv1": Conv((2, 3, 224, 224), 64, 11, 4, 2),
    "alexnet-pool1": Pool((8, 64, 55, 55), 3, 2),
    "alexnet-conv2": Conv((1, 64, 27, 27), 192, 5, padding=2),
    "alexnet-pool2": Pool((8, 192, 27, 27), 3, 2),
    "alexnet-conv3": Conv((2, 192, 13, 13), 384, 3, padding=1),
    "alexnet-conv4": Conv((2, 384, 13, 13), 256, 3, padding=1),
    "alexnet-pool3": Pool((16, 256, 13, 13), 3, 2),
    # VGG: 3x3 convs at stride 1 (CIFAR widths), 2x2 max pools
    "vgg-conv1": Conv((4, 64, 32, 32), 64, 3, padding=1),
    "vgg-conv2": Conv((4, 128, 16, 16), 128, 3, padding=1),
    "vgg-conv3": Conv((4, 256, 8, 8), 256, 3, padding=1),
    "vgg-conv-14": Conv((1, 256, 14, 14), 256, 3, padding=1),
    "vgg-pool-56": Pool((8, 128, 56, 56), 2, 2),
    # ResNet (ImageNet): 7x7/2 stem, 3x3/2 max pool, bottleneck 1x1s, 3x3/2 downsampling, 1x1/2 shortcut
    "resnet-stem": Conv((2, 3, 224, 224), 64, 7, 2, 3),
    "resnet-maxpool": Pool((2, 64, 112, 112), 3, 2, 1),
    "resnet-1x1-reduce": Conv((2, 256, 56, 56), 64, 1),
    "resnet-3x3": Conv((2, 64, 56, 56), 64, 3, padding=1),
    "resnet-1x1-expand": Conv((2, 64, 56, 56), 256, 1),
    "resnet-3x3-down": Conv((2, 128, 56, 56), 128, 3, 2, 1),
    "resnet-1x1-shortcut": Conv((2, 256, 56, 56), 512, 1, 2),
    "resnet-3x3-7x7": Conv((2, 512, 7, 7), 512, 3, padding=1),
    "resnet-gap-b256": Pool((256, 512, 7, 7), 7, 7, kind="avg"),
    "resnet-gap-b1": Pool((1, 2048, 7, 7), 7, 7, kind="avg"),
    # CIFAR ResNet: 3x3 convs on 32x32 .. 8x8, a 3x3/2 downsampling, global average pooling of 8x8 maps
    "cifar-conv1": Conv((64, 3, 32, 32), 16, 3, padding=1),
    "cifar-3x3-32": Conv((32, 16, 32, 32), 16, 3, padding=1),
    "cifar-3x3-down": Conv((32, 32, 16, 16), 64, 3, 2, 1),
    "cifar-3x3-8": Conv((32, 64, 8, 8), 64, 3, padding=1),
    "cifar-gap": Pool((128, 128, 8, 8), 8, 8, kind="avg"),
    "cifar-gap-max": Pool((128, 128, 8, 8), 8, 8),
    # Inception: factorised 1x7/7x1 and 1x3/3x1 convs, 1x1 branches, 3x3/1 average pool
    "inception-1x7": Conv((4, 128, 17, 17), 128, (1, 7), padding=(0, 3)),
    "inception-7x1": Conv((4, 128, 17, 17), 128, (7, 1), padding=(3, 0)),
    "inception-1x3": Conv((4, 384, 8, 8), 384, (1, 3), padding=(0, 1)),
    "inception-3x1": Conv((4, 384, 8, 8), 384, (3, 1), padding=(1, 0)),
    "inception-1x1": Conv((8, 192, 28, 28), 64, 1),
    "inception-avgpool": Pool((8, 192, 28, 28), 3, 1, 1, kind="avg"),
    "inception-maxpool-35": Pool((8, 288, 35, 35), 3, 2),
    # small maps with many channels, batch 256
    "small-3x3-4x4": Conv((16, 256, 4, 4), 256, 3, padding=1),
    "small-3x3-2x2": Conv((16, 512, 2, 2), 512, 3, padding=1),
    "small-1x1-2x2-b256": Conv((256, 256, 2, 2), 256, 1),
    "small-3x3-4x4-b256": Conv((256, 64, 4, 4), 64, 3, padding=1),
    "small-pool-4x4-b256": Pool((256, 256, 4, 4), 2, 2),
    "small-gap-4x4-b256": Pool((256, 256, 4, 4), 4, 4, kind="avg"),
    "small-maxpool-8x8": Pool((128, 128, 8, 8), 3, 2, 1),
    # odd sizes, batch 1
    "odd-3x3-27": Conv((16, 32, 27, 27), 48, 3, padding=1),
    "odd-3x3-down-15": Conv((32, 64, 15, 15), 128, 3, 2),
    "odd-avgpool-27": Pool((32, 64, 27, 27), 3, 2, 1, kind="avg"),
    "b1-3x3-56": Conv((1, 64, 56, 56), 64, 3, padding=1),
    "b1-stem": Conv((1, 3, 224, 224), 64, 7, 2, 3),
    "b1-maxpool": Pool((1, 64, 112, 112), 3, 2, 1),
}


def random_layers(seed=SEED, count=RANDOM_LAYERS):
    """`count` seeded random layers named "random-<i>": two in three convs, the rest pools.

    Maps 5..40, channels 1..256, kernels 1..7 (non-square a third of the time), strides 1..3,
    padding up to half the kernel; a conv's batch shrinks until it has at most MAX_MACS.
    """
    rng = np.random.default_rng(seed)
    layers = {}
    for index in range(count):
        size = int(rng.integers(5, 41))
        kernel = tuple(int(k) for k in rng.integers(1, min(7, size) + 1, size=2))
        kernel = kernel if rng.random() < 1 / 3 else (kernel[0], kernel[0])
        stride, padding = int(rng.integers(1, 4)), tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        channels, batch = int(rng.integers(1, 257)), int(rng.choice([1, 8, 32, 64]))
        x = (batch, channels, size, size)
        if index % 3 < 2:
            filters = int(rng.integers(1, 257))
            layer = Conv(x, filters, kernel, stride, padding)
            macs = layer.flops() / 6
            layer = Conv((max(1, int(batch * min(1.0, MAX_MACS / macs))), *x[1:]), filters, kernel, stride, padding)
        else:
            layer = Pool(x, kernel, stride, padding, kind=str(rng.choice(["max", "avg"])))
        layers[f"random-{index}"] = layer
    return layers


SUITE = {**LAYERS, **random_layers()}


def select(patterns):
    """Names of SUITE's layers matching any of the shell-style patterns (all for none), in suite order.

    Raises ValueError when a pattern matches no layer.
    """
    if not patterns:
        return list(SUITE)
    unmatched = [p for p in patterns if not fnmatch.filter(SUITE, p)]
    if unmatched:
        raise ValueError(f"no suite layer matches {unmatched}; layers: {', '.join(SUITE)}")
    return [name for name in SUITE if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
