"""The download path against a local HTTP server serving files the tests write."""
import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from functools import partial

import numpy as np
import pytest
from helpers import write_cifar_dataset, write_idx_dataset

from cnnkit.datasets import DownloadError, default_cache_dir, files, load_cifar10, load_mnist
from cnnkit.datasets._download import Source, fetch


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class TruncatingHandler(QuietHandler):
    """Announces 1000 bytes, sends 10, and hangs up: an interrupted download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")


def serve(folder, handler=QuietHandler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


@pytest.fixture
def server(tmp_path):
    """(served folder, base URL) of a server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = serve(folder)
    yield folder, f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def down_url():
    """URL of a port on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def md5(data):
    return hashlib.md5(data).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_downloads_and_verifies(server, tmp_path):
    served, url = server
    (served / "a.bin").write_bytes(b"payload" * 1000)
    path = fetch(Source((url,), {"a.bin": md5(b"payload" * 1000)}), "a.bin", tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "a.bin" and path.read_bytes() == b"payload" * 1000
    assert leftovers(path.parent) == []


def test_existing_file_is_not_fetched_again(tmp_path, down_url):
    (tmp_path / "a.bin").write_bytes(b"cached")
    assert fetch(Source((down_url,), {"a.bin": md5(b"other")}), "a.bin", tmp_path).read_bytes() == b"cached"


def test_md5_mismatch_keeps_nothing(server, tmp_path):
    served, url = server
    (served / "a.bin").write_bytes(b"tampered")
    with pytest.raises(DownloadError, match=r"a.bin .*md5 mismatch: expected 0+, got .*file discarded"):
        fetch(Source((url,), {"a.bin": "0" * 32}), "a.bin", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == [served]


def test_interrupted_download_is_never_used(tmp_path):
    httpd = serve(tmp_path, TruncatingHandler)
    url = f"http://127.0.0.1:{httpd.server_port}/"
    try:
        with pytest.raises(DownloadError, match="md5 mismatch"):
            fetch(Source((url,), {"a.bin": md5(b"0123456789" * 100)}), "a.bin", tmp_path / "cache", progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert list((tmp_path / "cache").iterdir()) == []


def test_server_down_is_one_clear_error(tmp_path, down_url):
    with pytest.raises(DownloadError) as error:
        fetch(Source((down_url,), {"a.bin": "0" * 32}), "a.bin", tmp_path, progress=False)
    message = str(error.value)
    assert f"{down_url}a.bin: " in message and "refused" in message.lower()
    assert "check the network connection" in message and str(tmp_path) in message
    assert list(tmp_path.iterdir()) == []


def test_missing_file_on_server_names_http_error(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError, match="HTTP Error 404"):
        fetch(Source((url,), {"a.bin": "0" * 32}), "a.bin", tmp_path / "cache", progress=False)


def test_next_mirror_is_tried(server, tmp_path, down_url):
    served, url = server
    (served / "a.bin").write_bytes(b"data")
    assert fetch(Source((down_url, url), {"a.bin": md5(b"data")}), "a.bin", tmp_path, progress=False).exists()


def test_load_mnist_downloads_into_cache(server, tmp_path, rng, monkeypatch):
    served, url = server
    written = write_idx_dataset(served, rng)
    sums = {p.name: md5(p.read_bytes()) for p in served.iterdir()}
    monkeypatch.setitem(files.SOURCES, "mnist", Source((url,), sums))
    monkeypatch.setenv("CNNKIT_CACHE_DIR", str(tmp_path / "cache"))
    data = load_mnist(download=True)
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(sums)
    np.testing.assert_array_equal(data["y_train"], written["y_train"])


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "cnnkit"


def cifar_archive(source_folder, extra_member=None):
    """The official archive layout: cifar-10-batches-py/<files>, optionally with one more member."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source_folder, arcname=files.CIFAR_FOLDER)
        if extra_member:
            info = tarfile.TarInfo(extra_member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


def test_load_cifar10_downloads_and_extracts_only_the_batches(server, tmp_path, rng, monkeypatch):
    served, url = server
    images, _ = write_cifar_dataset(tmp_path / "source", rng)
    archive = cifar_archive(tmp_path / "source", extra_member="../escaped")
    (served / files.CIFAR_ARCHIVE).write_bytes(archive)
    monkeypatch.setitem(files.SOURCES, "cifar10", Source((url,), {files.CIFAR_ARCHIVE: md5(archive)}))
    data = load_cifar10(tmp_path / "cache", download=True)
    np.testing.assert_allclose(data["X_test"] * 255, images[20:], rtol=1e-6)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "cache" / "escaped").exists()
    assert sorted(p.name for p in (tmp_path / "cache" / files.CIFAR_FOLDER).iterdir()) == sorted(files.CIFAR_FILES)


def test_corrupt_cifar_archive_is_a_clear_error(server, tmp_path, monkeypatch):
    served, url = server
    bad = gzip.compress(b"not a tar file")
    (served / files.CIFAR_ARCHIVE).write_bytes(bad)
    monkeypatch.setitem(files.SOURCES, "cifar10", Source((url,), {files.CIFAR_ARCHIVE: md5(bad)}))
    with pytest.raises(files.DatasetError, match=r"cannot extract the CIFAR-10 batches .* delete it and retry"):
        load_cifar10(tmp_path / "cache", download=True)
