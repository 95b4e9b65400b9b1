"""The README's Python tour runs as written (when the README is at hand, as in a checkout)."""
import re

import pytest
from helpers import ROOT

README = ROOT / "README.md"


def python_blocks():
    if not README.is_file():
        pytest.skip("README.md not found beside tests/")
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.slow
def test_python_tour_runs(tmp_path, monkeypatch, capsys):
    tour = next(block for block in python_blocks() if "Trainer" in block)
    monkeypatch.chdir(tmp_path)
    exec(compile(tour, "README.md (tour)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert (tmp_path / "model.npz").is_file() and (tmp_path / "run.npz").is_file()
    gradient_error, backend_error = float(printed[-3]), float(printed[-2])
    assert gradient_error < 1e-7 and backend_error < 1e-6
    assert 0.1 < float(printed[-1]) <= 1.0  # kNN above chance on the built-in shapes
