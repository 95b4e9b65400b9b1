"""Fetch official files into the cache with an md5 check; never leave or use a partial file.

A download streams into a temporary file beside the target, hashing as it goes; only
when the md5 matches is the temporary file renamed onto the target (os.replace is
atomic), so the target is either absent or complete and verified.
"""
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from cnnkit._files import atomic_write

CHUNK = 1 << 20
TIMEOUT = 30  # seconds without data before a mirror counts as down


class DownloadError(OSError):
    """Every mirror failed (offline, server down, or a checksum that does not match)."""


@dataclass(frozen=True)
class Source:
    """Where a dataset's official files live: mirrors tried in order, and each file's md5."""

    mirrors: tuple
    md5: dict  # file name -> md5 hex digest


def default_cache_dir():
    """The folder downloads go to: $CNNKIT_CACHE_DIR, else ~/.cache/cnnkit."""
    return Path(os.environ.get("CNNKIT_CACHE_DIR") or Path.home() / ".cache" / "cnnkit")


def md5sum(path):
    """md5 hex digest of the file at `path`."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(source, name, folder, progress=True):
    """Download file `name` of `source` into `folder` unless already there; return its path.

    Raises DownloadError naming every mirror tried and why it failed.
    """
    target = Path(folder) / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in source.mirrors:
        url = mirror + name
        try:
            _download(url, target, source.md5[name], progress)
            return target
        except (OSError, http.client.HTTPException, ValueError) as error:  # unreachable, HTTP error, bad md5
            failures.append(f"{url}: {_reason(error)}")
    raise DownloadError(
        f"could not download {name} ({'; '.join(failures)}); check the network connection, "
        f"or copy the official file into {target.parent} yourself")


def _reason(error):
    """'HTTP Error 404: Not Found', '[Errno 111] Connection refused', 'md5 mismatch: ...'."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return str(error.reason)
    return str(error)


def _download(url, target, md5, progress):
    """Stream `url` into a temporary file, check its md5, then rename it onto `target`."""
    digest = hashlib.md5(usedforsecurity=False)
    with atomic_write(target) as out, urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        size = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, desc=target.name, disable=not progress,
                  leave=False) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise ValueError(f"md5 mismatch: expected {md5}, got {digest.hexdigest()}; file discarded")
