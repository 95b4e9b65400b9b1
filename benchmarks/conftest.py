"""Shared pieces of the pytest-benchmark suites: dtypes, contenders, the correctness check.

Run with `pytest benchmarks/` (the default `pytest` collects tests/ only). Each group is
one row of `cnnkit bench` or one layer of its suite (an op on one shape and dtype, or a
training step); its members
are the reference, fast and (when it imports) PyTorch. The fast result is checked against
the reference before timing. pytest-benchmark runs every member in this one process, one
after the other; `cnnkit bench` (benchmarks/compare.py) times each alone in its own process.
"""
import contextlib

import pytest

import cnnkit
from cnnkit.bench.worker import case

BACKENDS = ["reference", "fast", "torch"]
ROUNDS = 5


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def run_benchmark(benchmark):
    """run_benchmark(name, backend, dtype): check, then time the case `name` (cnnkit.bench.cases.ROWS or
    cnnkit.bench.suite.SUITE) on backend."""
    def run(name, backend, dtype):
        chosen = case(name)
        if backend == "torch":
            pytest.importorskip("torch")
        if backend == "fast":
            assert chosen.check(dtype)
        with cnnkit.use_backend(backend) if backend in cnnkit.available_backends() else contextlib.nullcontext():
            call = chosen.contender(backend, dtype)
            benchmark.group = f"{chosen.op} {name} {dtype}: {chosen.describe()}"
            benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=2)
    return run
