"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Every module may import this one: it imports nothing from cnnkit.
"""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode=0o644):
    """A binary file object whose content replaces the file at path when the block ends.

    The data goes to a temporary file in the same folder, which then replaces path; on an
    error (or an interrupt) path is untouched and the temporary file is removed. The file
    gets permissions `mode`; the temporary file is 0600 until then, so a private file
    (mode 0o600, e.g. a key) is never readable by others, not even half-written.
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".cnnkit-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_atomic(path, data):
    """Replace the file at path with `data` (bytes, or str written as UTF-8), atomically."""
    with atomic_write(path) as file:
        file.write(data.encode() if isinstance(data, str) else data)
