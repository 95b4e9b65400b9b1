"""Benchmark table: reference vs fast (vs PyTorch when importable) conv2d, max and avg pooling.

Every figure comes from one run. For each shape and dtype the contenders run forward +
backward in turn on every repeat (interleaved, so load from other processes hits them
alike), together with numpy's own matrix product, whose rate is the ceiling the fast
conv is measured against. The table shows medians. ``add_arguments`` and ``run`` serve
both ``cnnkit bench`` and ``benchmarks/compare.py``.
"""
import argparse
import dataclasses
import os
import platform
import time

import numpy as np

import cnnkit
from cnnkit import fast, reference


def _out_hw(x_shape, kernel, stride, padding):
    """(OH, OW) of square windows over x (N, C, H, W)."""
    return tuple((size + 2 * padding - kernel) // stride + 1 for size in x_shape[2:])


@dataclasses.dataclass(frozen=True)
class Conv:
    """conv2d of x (N, C, H, W) with `filters` square kernels."""

    x: tuple
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    op = "conv2d"

    def arrays(self, dtype, rng):
        """x, w, b, dout in `dtype`."""
        n, c = self.x[:2]
        out_hw = _out_hw(self.x, self.kernel, self.stride, self.padding)
        return [rng.standard_normal(shape).astype(dtype) for shape in
                (self.x, (self.filters, c, self.kernel, self.kernel), (self.filters,), (n, self.filters) + out_hw)]

    def flops(self):
        """Forward + backward multiply-adds x 2: three products of 2*N*F*C*KH*KW*OH*OW each."""
        n, c = self.x[:2]
        oh, ow = _out_hw(self.x, self.kernel, self.stride, self.padding)
        return 3 * 2 * n * self.filters * c * self.kernel ** 2 * oh * ow

    def describe(self):
        return (f"conv x{self.x} {self.filters}x{self.kernel}x{self.kernel} "
                f"s{self.stride} p{self.padding}")

    def step(self, ops, x, w, b, dout):
        """Forward + backward with `ops` (cnnkit.reference or cnnkit.fast); returns (out, cache, grads)."""
        out, cache = ops.conv2d_forward(x, w, b, (self.stride,) * 2, (self.padding,) * 2)
        return out, cache, ops.conv2d_backward(dout, cache)

    def torch_step(self, torch, x, w, b, dout):
        for t in (x, w, b):
            t.grad = None
        torch.nn.functional.conv2d(x, w, b, self.stride, self.padding).backward(dout)


@dataclasses.dataclass(frozen=True)
class Pool:
    """max ("max") or average ("avg") pooling of x (N, C, H, W) with square windows."""

    x: tuple
    kernel: int
    stride: int
    padding: int = 0
    kind: str = "max"

    @property
    def op(self):
        return f"{self.kind}_pool2d"

    def arrays(self, dtype, rng):
        """x, dout in `dtype`."""
        out_hw = _out_hw(self.x, self.kernel, self.stride, self.padding)
        return [rng.standard_normal(shape).astype(dtype) for shape in (self.x, self.x[:2] + out_hw)]

    def flops(self):
        return None

    def describe(self):
        return f"{self.kind} pool x{self.x} {self.kernel}x{self.kernel} s{self.stride} p{self.padding}"

    def step(self, ops, x, dout):
        window = (self.kernel,) * 2, (self.stride,) * 2, (self.padding,) * 2
        out, cache = getattr(ops, f"{self.op}_forward")(x, *window)
        return out, cache, (getattr(ops, f"{self.op}_backward")(dout, cache),)

    def torch_step(self, torch, x, dout):
        x.grad = None
        getattr(torch.nn.functional, self.op)(x, self.kernel, self.stride, self.padding).backward(dout)


SHAPES = {
    "A": Conv((100, 3, 32, 32), 32, 3, padding=1),
    "B": Conv((64, 64, 32, 32), 64, 3, padding=1),
    "C": Conv((128, 32, 16, 16), 64, 3, padding=1),
    "P": Pool((100, 32, 32, 32), 2, 2),
    "Q": Pool((100, 32, 32, 32), 3, 2, padding=1, kind="avg"),
}
# issue 4's targets: fast/torch time at most `torch`, conv rate at least `gemm` of numpy's matmul
TARGETS = {
    ("A", "float32"): dict(torch=1.0), ("B", "float32"): dict(torch=1.25, gemm=0.75),
    ("C", "float32"): dict(torch=1.25), ("A", "float64"): dict(torch=0.5), ("B", "float64"): dict(torch=0.5),
    ("C", "float64"): dict(torch=0.5), ("P", "float32"): dict(torch=1 / 3), ("P", "float64"): dict(torch=1 / 3),
}
COLUMNS = [("shape", 5), ("dtype", 7), ("ref ms", 9), ("fast ms", 8), ("torch ms", 8), ("fast/torch", 10),
           ("speedup", 8), ("GEMM %", 6), ("target", 0)]


def add_arguments(parser):
    """Add the benchmark's options to an argparse parser."""
    parser.add_argument("--shapes", default=",".join(SHAPES), type=_shape_list,
                        help=f"comma-separated shapes among {', '.join(SHAPES)} (default: all); "
                             + "; ".join(f"{k} = {v.describe()}" for k, v in SHAPES.items()))
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--repeat", type=_positive_int, help="timed runs per contender (default 5, 3 with --quick)")
    parser.add_argument("--batch", type=_positive_int, help="override every shape's batch size N")
    parser.add_argument("--quick", action="store_true", help="batch 8, 3 repeats, 512x512 matmul: a fast sanity run")
    parser.add_argument("--threads", type=_positive_int, help="kernel (and torch) threads (default: cnnkit's)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when it imports")
    return parser


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _shape_list(text):
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SHAPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown shapes {unknown}; expected names among {', '.join(SHAPES)}")
    return names


def run(args):
    """Measure and print the table; return 0, or 1 if the fast backend disagreed with the reference."""
    torch = None if args.no_torch else _import_torch()
    threads = args.threads or cnnkit.get_num_threads()
    previous = cnnkit._backend._num_threads, torch and torch.get_num_threads()
    cnnkit.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        rows = _run_table(args, threads, torch)
    finally:
        cnnkit.set_num_threads(previous[0])
        if torch is not None:
            torch.set_num_threads(previous[1])
    return int(any(row["check"] != "ok" for row in rows))


def _run_table(args, threads, torch):
    repeat = args.repeat or (3 if args.quick else 5)
    batch = args.batch or (8 if args.quick else None)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    _print_conditions(threads, repeat, torch)
    start, rows, notes = _cpu_snapshot(), [], []
    for name in args.shapes:
        shape = SHAPES[name]
        if batch:
            shape = dataclasses.replace(shape, x=(batch,) + shape.x[1:])
        for dtype in dtypes:
            row, note = _measure(name, shape, dtype, repeat, torch, 512 if args.quick else 1024)
            rows.append(row)
            notes += [note] if note else []
    _print_table(rows)
    print(*notes, sep="\n")
    print(f"load average after: {_load()}; {_others_share(start, _cpu_snapshot())}")
    return rows


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _cpu_snapshot():
    """(machine busy CPU seconds, this process's CPU seconds, wall seconds); None without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]
    except OSError:
        return None
    own = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()


def _others_share(start, end):
    """How busy other processes kept the CPUs during the run, as text."""
    if start is None or end is None:
        return "CPU use by other processes unknown"
    busy, own, wall = (b - a for a, b in zip(start, end))
    return f"other processes kept the CPUs {100 * max(0.0, busy - own) / (wall * os.cpu_count()):.0f}% busy meanwhile"


def _load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _print_conditions(threads, repeat, torch):
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{lib['internal_api']} {lib['version']} ({lib['num_threads']} threads)"
                     for lib in threadpool_info() if lib["user_api"] == "blas") or "not detected"
    print(f"cnnkit {cnnkit.__version__} bench: forward+backward, median of {repeat} interleaved runs after a warm-up")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, load average before: {_load()}")
    print(f"fast: {threads} kernel threads (BLAS capped to match inside conv); numpy {np.__version__} BLAS: {blas}")
    print(f"torch: {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "torch: not timed")
    print("GEMM %: fast conv FLOP/s (3 x 2*N*F*C*KH*KW*OH*OW per fwd+bwd) / numpy matmul FLOP/s, same run\n")


def _measure(name, shape, dtype, repeat, torch, matmul_size):
    """One table row (dict) and a note on the fast cache's memory (None for pooling)."""
    rng = np.random.default_rng(0)
    arrays = shape.arrays(np.dtype(dtype), rng)
    a, b = rng.standard_normal((2, matmul_size, matmul_size)).astype(dtype)
    contenders = {"ref": lambda: shape.step(reference, *arrays), "fast": lambda: shape.step(fast, *arrays),
                  "matmul": lambda: np.matmul(a, b)}
    if torch is not None:
        tensors = [torch.from_numpy(array.copy()).requires_grad_(i < len(arrays) - 1)
                   for i, array in enumerate(arrays)]
        contenders["torch"] = lambda: shape.torch_step(torch, *tensors)
    first, seconds = _time(contenders, repeat)
    ms = {key: 1e3 * value for key, value in seconds.items()}
    row = dict(shape=name, dtype=dtype, check="ok" if agrees(first["fast"], first["ref"], dtype) else "MISMATCH",
               ref=ms["ref"], fast=ms["fast"], torch=ms.get("torch"))
    if shape.flops():
        row["gemm"] = (shape.flops() / ms["fast"]) / (2 * matmul_size ** 3 / ms["matmul"])
    row["target"] = _target(TARGETS.get((name, dtype)), row)
    return row, _cache_note(name, shape, first["fast"], arrays, dtype)


def _time(contenders, repeat):
    """(results of a warm-up call, median seconds per call) for each contender, run in turn `repeat` times."""
    first = {key: call() for key, call in contenders.items()}
    times = {key: [] for key in contenders}
    for _ in range(repeat):
        for key, call in contenders.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    return first, {key: float(np.median(values)) for key, values in times.items()}


def agrees(got, expected, dtype):
    """True when two step() results (out, cache, grads) agree in dtype and to the dtype's rounding."""
    tolerance = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    pairs = [(got[0], expected[0])] + list(zip(got[2], expected[2]))
    return all(g.dtype == e.dtype and np.allclose(g, e, rtol=tolerance, atol=tolerance * np.abs(e).max())
               for g, e in pairs)


def _cache_note(name, shape, fast_result, arrays, dtype):
    """Memory held by the fast conv's cache, next to what keeping the im2col columns would cost."""
    if shape.op != "conv2d":
        return None
    out, cache, _ = fast_result
    held = [a for a in cache if isinstance(a, np.ndarray)]
    new = sum(a.nbytes for a in held if not any(np.shares_memory(a, given) for given in arrays))
    n, c = shape.x[:2]
    columns = n * c * shape.kernel ** 2 * out.shape[2] * out.shape[3] * np.dtype(dtype).itemsize
    return (f"{name} {dtype}: the fast cache holds {sum(a.nbytes for a in held) / 2**20:.1f} MB (x, w, b, the "
            f"caller's own arrays: {new / 2**20:.1f} MB new); whole-batch im2col columns, not kept, "
            f"would take {columns / 2**20:.1f} MB")


def _target(target, row):
    """"<=1.25x torch, >=75% GEMM: met" (or missed), "" when there is no target or no torch."""
    if target is None or row["torch"] is None:
        return ""
    parts, met = [f"<={target['torch']:.2f}x torch"], row["fast"] <= target["torch"] * row["torch"]
    if "gemm" in target:
        parts.append(f">={100 * target['gemm']:.0f}% GEMM")
        met = met and row["gemm"] >= target["gemm"]
    return ", ".join(parts) + (": met" if met else ": missed")


def _print_table(rows):
    print("  ".join(f"{title:<{width}}" if title in ("shape", "dtype", "target") else f"{title:>{width}}"
                    for title, width in COLUMNS))
    for row in rows:
        torch_ms = row["torch"]
        cells = [row["shape"], row["dtype"], _number(row["ref"]), _number(row["fast"]),
                 "-" if torch_ms is None else _number(torch_ms),
                 "-" if torch_ms is None else _number(row["fast"] / torch_ms),
                 _number(row["ref"] / row["fast"]) + "x", f"{100 * row['gemm']:.0f}" if "gemm" in row else "-",
                 row["target"] + ("" if row["check"] == "ok" else " FAST DISAGREES WITH REFERENCE")]
        print("  ".join(f"{cell:<{width}}" if title in ("shape", "dtype", "target") else f"{cell:>{width}}"
                        for cell, (title, width) in zip(cells, COLUMNS)))


def _number(value):
    """Three significant digits, without an exponent for values up to 10**5."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"
