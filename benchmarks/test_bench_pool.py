"""Pooling forward+backward: max pool on shape P, avg pool on shape Q and the pooling layers of
`cnnkit bench --suite`; fast vs PyTorch (and the reference on P and Q)."""
import pytest
from conftest import BACKENDS

from cnnkit.bench.cases import Pool
from cnnkit.bench.suite import SUITE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["P", "Q"])
def test_pool2d(run_benchmark, name, backend, dtype):
    run_benchmark(name, backend, dtype)


@pytest.mark.parametrize("backend", ["fast", "torch"])
@pytest.mark.parametrize("name", [name for name, layer in SUITE.items() if isinstance(layer, Pool)])
def test_suite_pool2d(run_benchmark, name, backend, dtype):
    run_benchmark(name, backend, dtype)
