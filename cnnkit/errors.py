"""The errors cnnkit raises for files it cannot read.

Each is a ValueError whose message starts with the file's path and says what was wrong;
the exception that revealed the problem (zlib.error, zipfile.BadZipFile, ...) is chained
as ``__cause__``. A missing or unreadable file raises OSError (FileNotFoundError, ...) as
usual. Every module may import this one: it imports nothing from cnnkit.
"""


class FileFormatError(ValueError):
    """A file that is truncated, corrupt, or not in the format cnnkit expects."""


class DatasetError(FileFormatError):
    """A dataset file (IDX, CIFAR-10 batch or batches.meta) that cannot be read."""


class ModelFileError(FileFormatError):
    """A model file (model.npz, or the model.json `cnnkit train` writes beside it) that cannot be loaded."""


class CheckpointError(FileFormatError):
    """A training checkpoint (checkpoint.npz) that cannot be resumed from."""
