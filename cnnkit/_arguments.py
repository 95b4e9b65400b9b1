"""argparse option types and the option groups that the commands and the training run share."""
import argparse
from pathlib import Path

import numpy as np


def _number(kind, minimum, strict):
    """argparse type: a `kind` (int or float) > minimum (strict) or >= minimum."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not np.isfinite(value) or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"expected {'an int' if kind is int else 'a number'} {'>' if strict else '>='} {minimum}, got {text!r}")
        return value
    return parse


POSITIVE_INT = _number(int, 0, True)
POSITIVE_FLOAT = _number(float, 0, True)
NON_NEGATIVE_FLOAT = _number(float, 0, False)
NON_NEGATIVE_INT = _number(int, 0, False)


def add_runtime_options(parser):
    """--backend and --threads, applied by cnnkit.cli around the command."""
    parser.add_argument("--backend", choices=("auto", "fast", "reference"),
                        help="kernels to run on (default: $CNNKIT_BACKEND, else auto: fast when compiled)")
    parser.add_argument("--threads", type=POSITIVE_INT, help="threads for the kernels and BLAS (default: all cores)")


def add_data_options(parser):
    """--data-dir and --download."""
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's official files "
                        "(default: ~/.cache/cnnkit/<dataset>, or $CNNKIT_CACHE_DIR/<dataset>)")
    parser.add_argument("--download", action="store_true",
                        help="download missing official files (md5-checked) into the data folder")
