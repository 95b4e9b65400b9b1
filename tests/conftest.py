"""Shared fixtures: dtype, rng, backend, the tolerance each dtype allows, and Python in a process of its own."""
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import cnnkit

TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def run_python(code, *args, env=None, check=True):
    """`python -c code args` in an empty folder, so that it imports the installed cnnkit, not the
    checkout's source tree (which has no compiled kernels under CI's non-editable install)."""
    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                              check=check, cwd=folder)


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


@pytest.fixture(autouse=True)
def _restore_backend_and_threads():
    """Each test starts and ends with the same backend and thread settings."""
    name, threads = cnnkit.get_backend(), cnnkit._backend._num_threads
    yield
    cnnkit.set_backend(name)
    cnnkit.set_num_threads(threads)
