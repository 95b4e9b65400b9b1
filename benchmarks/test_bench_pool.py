"""Pooling forward+backward: max pool on shape P, avg pool on shape Q; reference vs fast vs PyTorch."""
import pytest
from conftest import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["P", "Q"])
def test_pool2d(run_benchmark, name, backend, dtype):
    run_benchmark(name, backend, dtype)
