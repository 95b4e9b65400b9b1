"""What several subcommands share: reading a model that `cnnkit train` wrote."""
import json
from pathlib import Path

import numpy as np

from cnnkit.errors import ModelFileError
from cnnkit.models import load


def load_trained(path, require_info=True):
    """(model, info) from MODEL.npz and the MODEL.json that `cnnkit train` wrote beside it.

    Without MODEL.json, info is None when require_info is False, else FileNotFoundError.
    A damaged MODEL.npz or MODEL.json raises ModelFileError (a ValueError) naming it.
    """
    path = Path(path)
    info_path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    if require_info and not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: predict, evaluate and export need the preprocessing "
                                "that `cnnkit train` writes beside the model")
    info = _read_info(info_path) if info_path.is_file() else None
    return load(path).eval(), info


def _read_info(info_path):
    """The MODEL.json of `cnnkit train`, with mean and std as float32 arrays of shape (C,).

    Raises ModelFileError (a ValueError) unless it holds finite mean and std (std > 0) per
    channel, image_shape (C, H, W) of positive ints and a list of class names.
    """
    try:
        info = json.loads(info_path.read_text())
        mean, std = np.asarray(info["mean"], np.float32), np.asarray(info["std"], np.float32)
        info.update(mean=mean, std=std, image_shape=tuple(info["image_shape"]), classes=list(info["classes"]))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{info_path} is not a model description written by cnnkit train ({error!r})") from error
    shape, classes = info["image_shape"], info["classes"]
    shapes_fit = (len(shape) == 3 and all(type(d) is int and d > 0 for d in shape)
                  and mean.shape == std.shape == shape[:1])
    statistics_fit = np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    if not (shapes_fit and statistics_fit and classes and all(isinstance(name, str) for name in classes)):
        raise ModelFileError(f"{info_path}: expected image_shape (C, H, W), C finite means and stds (std > 0) and "
                             f"class names; got image_shape {shape}, mean {mean}, std {std}, classes {classes}")
    return info
