"""`cnnkit predict MODEL FILE...`: classify image files with a trained model."""
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from cnnkit._arguments import POSITIVE_INT, add_runtime_options
from cnnkit._npz import read_npy
from cnnkit.commands._options import load_trained

SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
PIXELS_PER_BYTE = 8 * 1032  # the most a file can hold: 1-bit pixels, deflate's largest ratio
PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError,
                 KeyError)  # what Pillow's decoders raise on damaged files (UnidentifiedImageError is an OSError)


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
    that size: uint8 (0-255) or float (0-1, finite). Any other file is read with Pillow
    (PNG, JPEG, ...), resized to H x W and converted to what the model takes: grey (ITU-R
    601 luma) or RGB. Palette, CMYK and 1-bit images are converted the Pillow way; 16-bit
    grey is scaled by 1/65535; transparent pixels (RGBA, LA, palette transparency) are
    composited on black, the background of the built-in data and of MNIST.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        An empty file, an unreadable or damaged image, one over Pillow's decompression bomb
        limit (Image.MAX_IMAGE_PIXELS) or claiming more pixels than its size can hold
        (PIXELS_PER_BYTE), or a .npy array of another shape or dtype, or with NaN, inf or
        float pixels outside [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    images = _read_npy(path, image_shape) if path.suffix == ".npy" else _read_picture(path, image_shape)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    if images.dtype.kind != "f":
        raise ValueError(f"{path}: expected uint8 or float pixels, got {images.dtype}")
    if not (np.isfinite(images).all() and images.min(initial=0) >= 0 and images.max(initial=0) <= 1):
        raise ValueError(f"{path}: float pixels must be finite and in [0, 1] (NaN, inf or out of range found)")
    return images.astype(np.float32)


def _read_npy(path, image_shape):
    """The (N, C, H, W) batch in a .npy file, its shape checked against image_shape."""
    channels, height, width = image_shape
    with open(path, "rb") as file:
        try:
            images = read_npy(file, os.fstat(file.fileno()).st_size, str(path))
        except (ValueError, EOFError) as error:
            raise ValueError(f"{path}: not a .npy array file ({error})") from error
    if images.ndim == 2 and channels == 1:
        images = images[None]
    if images.ndim not in (3, 4) or images.shape[-3:] != tuple(image_shape) or images.size == 0:
        raise ValueError(f"{path}: expected an array of shape (C, H, W) or (N, C, H, W) with C, H, W = "
                         f"{channels}, {height}, {width} (or (H, W) for grey images); got {images.shape}")
    return images.reshape(-1, *image_shape)


def _read_picture(path, image_shape):
    """The image file at path as a (1, C, H, W) batch, uint8 (or float32 from 16-bit grey)."""
    from PIL import Image

    raw = path.read_bytes()  # decoded from memory: a length a damaged file claims never allocates more
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                if image.width * image.height > PIXELS_PER_BYTE * len(raw):
                    raise Image.DecompressionBombError(f"{image.width} x {image.height} pixels, more than a "
                                                       f"{len(raw)}-byte file can hold")
                return _pixels(image, image_shape)[None]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{path}: refusing to decode {error}") from error
    except PILLOW_ERRORS as error:
        raise ValueError(f"{path}: not an image file Pillow can read ({type(error).__name__}: {error})") from error


def _pixels(image, image_shape):
    """A Pillow image resized to H x W as a (C, H, W) array with the model's channels."""
    from PIL import Image

    channels, height, width = image_shape
    if image.mode in SIXTEEN_BIT_GREY:
        grey = np.asarray(image.convert("F").resize((width, height)), np.float32) / np.float32(65535)
        return np.repeat(np.clip(grey, 0, 1)[None], channels, axis=0)
    if "A" in image.getbands() or "transparency" in image.info:
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image.convert("RGBA"))
    image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
    return np.asarray(image).reshape(height, width, channels).transpose(2, 0, 1)
