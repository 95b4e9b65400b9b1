"""Atomic writes: the old file or the complete new one, and no temporary file left behind."""
import pytest

from cnnkit._files import atomic_write, replace_file


def test_replace_file_replaces_text_and_bytes(tmp_path):
    path = tmp_path / "out.json"
    replace_file(path, "first\n")
    replace_file(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as file:
        file.write(b"half of the new")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
