"""conv2d forward+backward on shapes A, B, C: reference vs fast vs PyTorch."""
import pytest
from conftest import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_conv2d(run_benchmark, name, backend, dtype):
    run_benchmark(name, backend, dtype)
