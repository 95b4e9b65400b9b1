"""Shared pieces of the pytest-benchmark suites: dtypes, contenders, the correctness check.

Run with `pytest benchmarks/` (the default `pytest` collects tests/ only). Each group is
one row of `cnnkit bench` (an op on one shape and dtype, or a training step); its members
are the reference, fast and (when it imports) PyTorch. The fast result is checked against
the reference before timing. pytest-benchmark runs every member in this one process, one
after the other; `cnnkit bench` (benchmarks/compare.py) times each alone in its own process.
"""
import contextlib

import pytest

import cnnkit
from cnnkit.bench.cases import ROWS

BACKENDS = ["reference", "fast", "torch"]
ROUNDS = 5


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def run_benchmark(benchmark):
    """run_benchmark(name, backend, dtype): check, then time cnnkit.bench.cases.ROWS[name] on backend."""
    def run(name, backend, dtype):
        case = ROWS[name]
        if backend == "torch":
            pytest.importorskip("torch")
        if backend == "fast":
            assert case.check(dtype)
        with cnnkit.use_backend(backend) if backend in cnnkit.available_backends() else contextlib.nullcontext():
            call = case.contender(backend, dtype)
            benchmark.group = f"{case.op} {name} {dtype}: {case.describe()}"
            benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=2)
    return run
