import contextvars
import os
import sys
import warnings

import pytest
from helpers import run_python

import cnnkit
from cnnkit import _backend, _runtime


def test_fast_is_built_here():
    assert cnnkit.available_backends() == ("fast", "reference")
    assert _runtime.openmp_enabled()


def test_set_and_get_backend():
    cnnkit.set_backend("reference")
    assert cnnkit.get_backend() == "reference"
    cnnkit.set_backend("fast")
    assert cnnkit.get_backend() == "fast"
    cnnkit.set_backend("auto")
    assert cnnkit.get_backend() == "fast"


def test_use_backend_scopes_and_restores_on_error():
    cnnkit.set_backend("fast")
    with pytest.raises(RuntimeError):
        with cnnkit.use_backend("reference") as name:
            assert name == cnnkit.get_backend() == "reference"
            raise RuntimeError
    assert cnnkit.get_backend() == "fast"


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="'auto', 'fast', 'reference'"):
        cnnkit.set_backend("gpu")


def test_dispatch_follows_backend():
    cnnkit.set_backend("reference")
    assert _backend.resolve_op("im2col").__module__ == "cnnkit.reference.im2col"
    cnnkit.set_backend("fast")
    assert _backend.resolve_op("im2col").__module__ == "cnnkit.fast.im2col"


def test_dispatch_falls_back_to_reference_for_ops_fast_lacks(monkeypatch):
    import cnnkit.fast
    monkeypatch.delattr(cnnkit.fast, "col2im")
    cnnkit.set_backend("fast")
    assert _backend.resolve_op("col2im").__module__ == "cnnkit.reference.im2col"


@pytest.fixture
def no_extension(monkeypatch):
    """Make cnnkit.fast unimportable, as when the extension was never compiled."""
    monkeypatch.setitem(sys.modules, "cnnkit.fast", None)
    monkeypatch.setattr(_backend, "_default_backend", None)
    monkeypatch.setattr(_backend, "_backend_choice", contextvars.ContextVar("cnnkit_backend", default=None))
    monkeypatch.setattr(_backend, "_fallback_warned", False)


def test_auto_falls_back_with_one_warning(no_extension):
    with pytest.warns(RuntimeWarning, match="rebuild"):
        cnnkit.set_backend("auto")
    assert cnnkit.get_backend() == "reference"
    assert cnnkit.available_backends() == ("reference",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cnnkit.set_backend("auto")  # no second warning


def test_fast_without_extension_raises_with_hint(no_extension):
    with pytest.raises(ImportError, match="pip install"):
        cnnkit.set_backend("fast")


@pytest.mark.subprocess
@pytest.mark.parametrize("value, expected", [("reference", "reference"), ("fast", "fast"), ("auto", "fast")])
def test_environment_variable_sets_default(value, expected):
    out = run_python("import cnnkit; print(cnnkit.get_backend())", env=dict(os.environ, CNNKIT_BACKEND=value))
    assert out.stdout.strip() == expected


@pytest.mark.subprocess
def test_bad_environment_variable_names_it():
    out = run_python("import cnnkit; cnnkit.get_backend()", env=dict(os.environ, CNNKIT_BACKEND="cuda"), check=False)
    assert out.returncode != 0 and "CNNKIT_BACKEND" in out.stderr and "'reference'" in out.stderr


def test_thread_settings():
    assert cnnkit.get_num_threads() >= 1
    cnnkit.set_num_threads(1)
    assert cnnkit.get_num_threads() == 1
    cnnkit.set_num_threads(3)
    assert cnnkit.get_num_threads() == 3
    cnnkit.set_num_threads(None)
    assert cnnkit.get_num_threads() >= 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_thread_count(bad):
    with pytest.raises(ValueError, match="int >= 1"):
        cnnkit.set_num_threads(bad)


def test_show_config(capsys):
    cnnkit.show_config()
    out = capsys.readouterr().out
    assert "backends available: fast, reference" in out
    assert "openmp:             yes" in out
    assert "blas:" in out


@pytest.fixture
def no_wait_choice(monkeypatch):
    for key in (*_runtime.WAIT_SETTINGS, _runtime.WAIT_CHOICE_MARK):
        monkeypatch.delenv(key, raising=False)


def test_short_spin_is_cnnkits_choice_only(no_wait_choice):
    _runtime.prefer_short_spin()
    assert os.environ["GOMP_SPINCOUNT"] == "100000" and os.environ["KMP_BLOCKTIME"] == "1"
    assert "OMP_WAIT_POLICY" not in os.environ
    theirs = _runtime.user_environment(os.environ)
    assert not {"GOMP_SPINCOUNT", "KMP_BLOCKTIME", _runtime.WAIT_CHOICE_MARK} & set(theirs)


@pytest.mark.parametrize("key, value", [("OMP_WAIT_POLICY", "passive"), ("GOMP_SPINCOUNT", "0"),
                                        ("KMP_BLOCKTIME", "200")])
def test_users_wait_choice_is_kept(no_wait_choice, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    _runtime.prefer_short_spin()
    assert _runtime.WAIT_CHOICE_MARK not in os.environ
    assert {k: os.environ.get(k) for k in _runtime.WAIT_SETTINGS} == {
        k: value if k == key else None for k in _runtime.WAIT_SETTINGS}
    assert _runtime.user_environment(os.environ)[key] == value


def test_kernel_runtime_holds_blas_at_one_thread_on_fast_only():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):
        with cnnkit.use_backend("fast"), _backend.kernel_runtime():
            assert blas_threads() == {1}
        with cnnkit.use_backend("reference"), _backend.kernel_runtime():
            assert blas_threads() == {2}
        assert blas_threads() == {2}


def test_blas_thread_counts_use_openblas_functions_where_they_exist_else_the_controller():
    calls = []

    class Controller:
        internal_api, threading_layer = "openblas", "pthreads"

        def get_num_threads(self):
            return 3

        def set_num_threads(self, count):
            calls.append(count)

    class WithSymbols(Controller):
        def _get_symbol(self, name):
            return {"openblas_get_num_threads": "get", "openblas_set_num_threads": "set"}.get(name)

    class OpenMPBuild(WithSymbols):
        threading_layer = "openmp"

    class MKL(WithSymbols):
        internal_api = "mkl"

    assert _runtime._thread_count_functions(WithSymbols()) == ("get", "set")
    for lib in (Controller(), OpenMPBuild(), MKL()):
        get_count, set_count = _runtime._thread_count_functions(lib)
        set_count(get_count())
    assert calls == [3, 3, 3]


PAGE_FAULTS_PER_STEP = """
import contextlib, resource, sys
import numpy as np
import cnnkit
from cnnkit._backend import kernel_runtime

sizes = [int(size) << 20 for size in sys.argv[2].split(",")]  # MiB


def step():  # arrays allocated in turn and freed together, as a training step does
    return [np.ones(size, np.uint8) for size in sizes]


with cnnkit.use_backend("fast"), (kernel_runtime() if sys.argv[1] == "trainer" else contextlib.nullcontext()):
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
@pytest.mark.skipif("fast" not in cnnkit.available_backends(), reason="fast backend not built")
@pytest.mark.parametrize("sizes", ["1,2,4,8,16", "40"], ids=["below glibc's mmap ceiling", "above it (32 MiB)"])
def test_kernel_runtime_keeps_freed_memory_for_the_next_step(sizes):
    def faults(mode):
        return float(run_python(PAGE_FAULTS_PER_STEP, mode, sizes).stdout)

    plain, trainer = faults("plain"), faults("trainer")
    assert plain >= 20 and trainer < 2, (plain, trainer)  # measured: 227.5 and 0 (1-16 MiB), 532 and 0 (40 MiB)

