"""A training step of every net of `cnnkit bench` (cnnkit.bench.NETS): reference vs fast vs PyTorch."""
import pytest
from conftest import BACKENDS

from cnnkit.bench import NETS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NETS)
def test_train_step(run_benchmark, name, backend):
    run_benchmark(name, backend, "float32")
