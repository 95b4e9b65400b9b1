"""Shared fixtures (dtype, rng, backend, thread grains and Winograd for small inputs) and the markers that imply slow;
helpers live in helpers.py."""
import numpy as np
import pytest

import cnnkit
from cnnkit import _runtime


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=cnnkit.available_backends())
def backend(request):
    with cnnkit.use_backend(request.param):
        yield request.param


@pytest.fixture(scope="module")
def tiny_grains():
    """Let small test inputs run on every thread asked for, as large inputs do (cnnkit.fast._threads)."""
    from cnnkit.fast import _threads

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_threads, "POOL_GRAIN", 1)
        patch.setattr(_threads, "CONV_GRAIN", 1)
        yield


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Every 3x3 stride-1 convolution of cnnkit.fast runs on Winograd, whatever C, F, OW and N."""
    from cnnkit.fast import conv

    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv, "WINOGRAD_MIN_WIDTH", 1)
    monkeypatch.setattr(conv, "WINOGRAD_MIN_TILES", 0)
    monkeypatch.setattr(conv, "WINOGRAD_FEW_TILES", 0)


@pytest.fixture
def no_direct(monkeypatch):
    """cnnkit.fast's convolutions do not run forward on the direct kernel (im2col or Winograd instead)."""
    from cnnkit.fast import conv

    monkeypatch.setattr(conv, "_direct_kernels", None)


@pytest.fixture(autouse=True)
def _restore_backend_and_threads():
    """Each test starts and ends with the same backend and thread settings."""
    name, threads = cnnkit.get_backend(), _runtime._num_threads
    yield
    cnnkit.set_backend(name)
    cnnkit.set_num_threads(threads)


IMPLY_SLOW = ("subprocess", "data", "mpi")  # tests with these markers are also `slow`


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items):
    """Mark `slow` every test that starts processes, reads the real data or runs under MPI."""
    for item in items:
        if any(item.get_closest_marker(name) for name in IMPLY_SLOW):
            item.add_marker(pytest.mark.slow)
