"""max_pool2d forward+backward on shape P: reference vs fast vs PyTorch."""
import pytest

from conftest import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool2d(run_benchmark, backend, dtype):
    run_benchmark("P", backend, dtype)
