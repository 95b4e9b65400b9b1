"""Shared pieces of the pytest-benchmark suites: dtypes, contenders, the correctness check.

Run with `pytest benchmarks/` (the default `pytest` collects tests/ only). Each group is
one op on one shape and dtype; its members are the reference, fast and (when it imports)
PyTorch forward+backward. The fast result is checked against the reference before timing.
"""
import numpy as np
import pytest

from cnnkit import bench, fast, reference

BACKENDS = ["reference", "fast", "torch"]
ROUNDS = 5


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def run_benchmark(benchmark):
    """run_benchmark(name, backend, dtype): check, then time forward+backward of bench.SHAPES[name]."""
    def run(name, backend, dtype):
        shape = bench.SHAPES[name]
        arrays = shape.arrays(np.dtype(dtype), np.random.default_rng(0))
        if backend == "torch":
            torch = pytest.importorskip("torch")
            tensors = [torch.from_numpy(a.copy()).requires_grad_(i < len(arrays) - 1) for i, a in enumerate(arrays)]
            call = lambda: shape.torch_step(torch, *tensors)  # noqa: E731
        else:
            ops = fast if backend == "fast" else reference
            call = lambda: shape.step(ops, *arrays)  # noqa: E731
            if backend == "fast":
                assert bench.agrees(call(), shape.step(reference, *arrays), dtype)
        benchmark.group = f"{shape.op} {name} {dtype}: {shape.describe()}"
        benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=1)
    return run
