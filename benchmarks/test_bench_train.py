"""A training step of `cnnkit train`'s convnet on the mnist, cifar and cifar-wide nets: reference vs fast vs PyTorch."""
import pytest
from conftest import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["mnist", "cifar", "cifar-wide"])
def test_train_step(run_benchmark, name, backend):
    run_benchmark(name, backend, "float32")
