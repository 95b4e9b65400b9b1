"""`cnnkit predict MODEL FILE...`: classify image files with a trained model."""
from pathlib import Path

import numpy as np

from cnnkit.commands._options import POSITIVE_INT, add_runtime_options, load_trained


def add_parser(commands):
    predict = commands.add_parser("predict", help="classify image files with a trained model",
                                  description="Classify images (PNG, JPEG, ... resized to the model's input; "
                                              "or .npy arrays) with MODEL from cnnkit train.")
    predict.add_argument("model", type=Path, metavar="MODEL", help="model.npz written by cnnkit train")
    predict.add_argument("files", type=Path, nargs="+", metavar="FILE", help="image or .npy file")
    predict.add_argument("--top", type=POSITIVE_INT, default=1, help="classes to show per image (default: 1)")
    add_runtime_options(predict)
    predict.set_defaults(run=run)


def run(args):
    from cnnkit.datasets import normalize

    model, info = load_trained(args.model)
    for path in args.files:
        images = normalize(read_images(path, info["image_shape"]), info["mean"], info["std"])
        scores = model.loss(images)
        probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        for index, row in enumerate(probabilities):
            best = np.argsort(row)[::-1][:args.top]
            name = path if len(probabilities) == 1 else f"{path}[{index}]"
            print(f"{name}: " + ", ".join(f"{info['classes'][k]} ({row[k]:.1%})" for k in best))
    return 0


def read_images(path, image_shape):
    """Images to classify, as float32 in [0, 1] of shape (N, C, H, W) with image_shape (C, H, W).

    A .npy file holds one image (H, W) or (C, H, W), or a batch (N, C, H, W), of exactly
    that size, uint8 (0-255) or float (0-1). Any other file is read with Pillow
    (PNG, JPEG, ...), converted to grey or RGB and resized to H x W.
    """
    channels, height, width = image_shape
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    if path.suffix == ".npy":
        try:
            images = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{path}: not a .npy array file ({error})") from None
        if images.ndim == 2 and channels == 1:
            images = images[None]
        if images.ndim not in (3, 4) or images.shape[-3:] != tuple(image_shape):
            raise ValueError(f"{path}: expected an array of shape (C, H, W) or (N, C, H, W) with C, H, W = "
                             f"{channels}, {height}, {width} (or (H, W) for grey images); got {images.shape}")
        images = images.reshape(-1, *image_shape)
    else:
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
                images = np.asarray(image).reshape(height, width, channels).transpose(2, 0, 1)[None]
        except UnidentifiedImageError as error:
            raise ValueError(f"{path}: not an image file Pillow can read") from error
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    if images.dtype.kind != "f":
        raise ValueError(f"{path}: expected uint8 or float pixels, got {images.dtype}")
    return images.astype(np.float32)
