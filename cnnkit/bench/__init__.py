"""`cnnkit bench`: reference vs fast vs PyTorch, each contender timed alone in its own process.

Rows: conv2d (A, B, C), max pooling (P) and average pooling (Q) forward+backward in
float32 and float64, and training steps (float32) of `cnnkit train`'s convnet (mnist,
cifar, cifar-wide) and of three other nets (lenet5, small, all-conv). Every contender of
every row (and numpy's matmul, the GEMM rate the conv is measured against) runs in a
fresh `python -m cnnkit.bench` process (cnnkit.bench.worker) with the same thread count
for the kernels, BLAS and torch: a warm-up, then the timed repeats; the table gives their
median and spread. The fast result is checked against the reference after fast's timings.

`--suite` times the layers of cnnkit.bench.suite instead, fast against torch, at each
thread count: each contender in its own process for SUITE_CHUNK layers at a time, fast
then torch, so both see the machine in about the same state; `--csv` writes the table.
``add_arguments`` and ``run`` serve both ``cnnkit bench`` and ``benchmarks/compare.py``.
"""
import argparse
import importlib.metadata
import importlib.util
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit._files import replace_file
from cnnkit._runtime import user_environment
from cnnkit.bench import report, suite
from cnnkit.bench.cases import ROWS, Conv, Net, agrees
from cnnkit.bench.worker import WARMUP, case, profiled, run_job, run_python
from cnnkit.profiler import format_profile

__all__ = ["ROWS", "add_arguments", "agrees", "run"]

NETS = [name for name, row in ROWS.items() if isinstance(row, Net)]
QUICK_BATCH, QUICK_MATMUL, MATMUL = 8, 512, 1024
SUITE_CHUNK = 8  # suite layers per worker process (see above)
CHECK_BATCH = 2  # batch of a suite layer's check against the reference, which is slow on large ones
RULE_NAMES = {"adam": "Adam", "sgd_momentum": "SGD momentum"}
OPENBLAS_HINTS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SHOWN_ENVIRONMENT = ("OMP_", "OPENBLAS_", "MKL_", "GOMP_", "KMP_", "CNNKIT_")


def add_arguments(parser):
    """Add the benchmark's options to an argparse parser; returns it."""
    parser.add_argument("--rows", "--shapes", dest="rows", default=",".join(ROWS), type=_row_list,
                        help="comma-separated rows (default: all); "
                             + "; ".join(f"{k} = {v.describe()}" for k, v in ROWS.items()))
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both",
                        help="dtypes of the op rows (training steps are float32)")
    parser.add_argument("--repeat", type=_positive_int, help="timed runs per contender (default 5, 3 with --quick)")
    parser.add_argument("--batch", type=_positive_int, help="override every row's batch size N")
    parser.add_argument("--quick", action="store_true",
                        help=f"batch {QUICK_BATCH}, 3 repeats, {QUICK_MATMUL}x{QUICK_MATMUL} matmul: a sanity run")
    parser.add_argument("--threads", type=_positive_int,
                        help="threads of every contender: cnnkit.set_num_threads, BLAS, torch.set_num_threads "
                             "(default: cnnkit's, the cores)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when it is installed")
    parser.add_argument("--markdown", action="store_true", help="print the table in markdown")
    parser.add_argument("--train-epoch", metavar="DIR",
                        help="also time `cnnkit train --dataset mnist --data-dir DIR --epochs 1` (fast backend)")
    parser.add_argument("--profile", nargs="?", const="mnist", type=_profile_target, metavar="NET|MODEL",
                        help=f"instead of the table, time each layer of a training step of NET "
                             f"({', '.join(NETS)}; default mnist) or of a saved model file (e.g. the "
                             f"model.npz of `cnnkit train`, batch 64 unless --batch) on the fast backend")
    parser.add_argument("--suite", action="store_true",
                        help="instead of the table, time the broad suite of conv and pooling layers "
                             "(cnnkit.bench.suite) against torch, at --threads or at the cores and 1 thread")
    parser.add_argument("--layers", type=_patterns, default=[], metavar="PATTERNS",
                        help="with --suite: comma-separated shell patterns of the layers to time "
                             "(e.g. 'lenet-*,*gap*'; default all)")
    parser.add_argument("--csv", metavar="PATH", help="with --suite: also write the table to PATH as CSV")
    parser.add_argument("--rounds", type=_positive_int, default=1,
                        help="with --suite: time every layer in this many rounds of fresh processes, the "
                             "contenders taking turns, and keep each contender's fastest round of a layer "
                             "(a shared machine's slow spells inflate single runs; default 1)")
    return parser


def _profile_target(text):
    if text in NETS or os.path.isfile(text):
        return text
    raise argparse.ArgumentTypeError(f"expected a net ({', '.join(NETS)}) or a saved model file, got {text!r}")


def _patterns(text):
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    try:
        suite.select(patterns)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return patterns


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _row_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    names = [name.upper() if name.upper() in ROWS else name for name in names]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown rows {unknown}; expected names among {', '.join(ROWS)}")
    return names


def run(args, env=None):
    """Measure and print the table (or the profile); return 0, or 1 if fast disagreed with the reference.

    Every worker process starts with the environment env (default: this process's).
    """
    settings = dict(threads=args.threads or cnnkit.get_num_threads(), batch=args.batch or (
        QUICK_BATCH if args.quick else None), repeat=args.repeat or (3 if args.quick else 5))
    env = dict(os.environ if env is None else env)
    torch_version = None if args.no_torch else _torch_version()
    _print_conditions(settings, env, torch_version)
    if args.profile:
        return _print_profile(args.profile, settings, env)
    start = _cpu_snapshot()
    if args.suite:
        rows = _suite(args, settings, env, torch=torch_version is not None)
        print(f"load average after: {_load()}; {_others_share(start, _cpu_snapshot())}")
        return int(any(row["agrees"] is False for row in rows))
    rows = list(_table(args, settings, env, torch=torch_version is not None))
    if args.train_epoch:
        print(_epoch(args.train_epoch, settings["threads"], env))
    print(f"load average after: {_load()}; {_others_share(start, _cpu_snapshot())}")
    return int(any(row["agrees"] is False for row in rows))


def _table(args, settings, env, torch):
    """Time every selected row and dtype (torch too when `torch`), printing each row when done; yields the rows."""
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    chosen = [(name, dtype) for name in args.rows for dtype in ROWS[name].dtypes if dtype in dtypes]
    gemm = {dtype: _gemm_rate(dtype, args.quick, settings, env)
            for dtype in dict.fromkeys(dtype for name, dtype in chosen if isinstance(ROWS[name], Conv))}
    _print_method(settings["repeat"])
    print(report.header(args.markdown), flush=True)
    for name, dtype in chosen:
        row, timed = _measure(name, dtype, settings, env, torch), case(name, settings["batch"])
        row["gemm"] = timed.flops() / np.median(row["fast"]) / gemm[dtype] if timed.flops() else None
        texts = report.cells(row)
        print(report.markdown_line(texts, timed.describe()) if args.markdown else report.text_line(texts),
              flush=True)
        yield row


def _measure(name, dtype, settings, env, torch):
    """Row dict (see report.cells) from one worker process per contender."""
    def timed(contender):
        worker_env = env if contender in ("fast", "reference") else user_environment(env)
        return run_job(dict(case=name, dtype=dtype, contender=contender, **settings), worker_env)

    fast = timed("fast")
    return dict(name=name, dtype=dtype, ref=timed("reference")["seconds"], fast=fast["seconds"],
                torch=timed("torch")["seconds"] if torch else None, agrees=fast["agrees"])


def _suite(args, settings, env, torch):
    """Time the suite's selected layers at each thread count, printing rows and summaries; the rows."""
    names, rows = suite.select(args.layers), []
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    _print_method(settings["repeat"], ops="suite layers: forward+backward")
    print(report.suite_header(), flush=True)
    for threads in [args.threads] if args.threads else list(dict.fromkeys([cnnkit.get_num_threads(), 1])):
        counted = []
        for dtype in dtypes:
            for start in range(0, len(names), SUITE_CHUNK):
                chunk = _suite_chunk(names[start:start + SUITE_CHUNK], dtype, {**settings, "threads": threads},
                                     env, torch, args.rounds)
                for row in chunk:
                    print(report.suite_line(report.suite_cells(row)), flush=True)
                counted += chunk
        print(report.suite_summary(counted) + "\n", flush=True)
        rows += counted
    if args.csv:
        replace_file(args.csv, report.suite_csv(rows))
        print(f"wrote {args.csv}")
    return rows


def _suite_chunk(names, dtype, settings, env, torch, rounds=1):
    """Suite rows (see report.suite_cells) of `names`: in each round fast's process, then torch's; each layer
    keeps each contender's round of the lowest median, and disagrees if fast disagreed in any round.
    """
    job = dict(cases=names, dtype=dtype, check_batch=min(CHECK_BATCH, settings["batch"] or CHECK_BATCH), **settings)
    fast, timed = [], []
    for _ in range(rounds):
        fast.append(run_job({**job, "contender": "fast"}, env)["results"])
        if torch:
            timed.append(run_job({**job, "contender": "torch"}, user_environment(env))["results"])
    return [dict(layer=name, shape=case(name, settings["batch"]).describe(), dtype=dtype,
                 threads=settings["threads"], fast=_fastest(r[i] for r in fast),
                 torch=_fastest(r[i] for r in timed) if torch else None,
                 agrees=False if any(r[i]["agrees"] is False for r in fast) else fast[0][i]["agrees"])
            for i, name in enumerate(names)]


def _fastest(results):
    """The seconds of the result (a time job's) whose median is lowest."""
    return min((result["seconds"] for result in results), key=np.median)


def _gemm_rate(dtype, quick, settings, env):
    """numpy matmul FLOP/s (median of the repeats) in a worker of its own."""
    size = QUICK_MATMUL if quick else MATMUL
    job = dict(case=f"matmul{size}", dtype=dtype, contender="numpy", **settings)
    seconds = run_job(job, user_environment(env))["seconds"]
    return 2 * size ** 3 / np.median(seconds)


def _print_profile(target, settings, env):
    net = profiled(target, settings["batch"])
    print(f"profile: {net.describe()}, fast backend, in a process of its own: mean of {settings['repeat']} "
          f"steps after {WARMUP} warm-up steps\n", flush=True)
    print(format_profile(run_job(dict(profile=target, **settings), env), rest=f"update ({RULE_NAMES[net.rule]})"))
    return 0


def _epoch(data_dir, threads, env):
    """One line: wall seconds of `cnnkit train --dataset mnist --epochs 1` in a process of its own."""
    command = ["train", "--dataset", "mnist", "--data-dir", str(Path(data_dir).resolve()), "--epochs", "1",
               "--threads", str(threads)]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_python(["-m", "cnnkit.cli", *command, "--out", out], env, f"cnnkit {' '.join(command)}")
        seconds = time.perf_counter() - start
    return (f"cnnkit {' '.join(command)}: {seconds:.1f} s wall, the whole command (loading, one epoch, "
            "accuracy checks, test set, writing the model)")


def _torch_version():
    """torch's version when it is installed, without importing it here; else None."""
    if importlib.util.find_spec("torch") is None:
        return None
    return importlib.metadata.version("torch")


def _print_conditions(settings, env, torch_version):
    """The machine, libraries and the workers' environment, with a hint when OpenBLAS is tuned here."""
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{lib['internal_api']} {lib['version']}" for lib in threadpool_info()
                     if lib["user_api"] == "blas") or "not detected"
    shown = " ".join(f"{key}={value}" for key, value in sorted(env.items()) if key.startswith(SHOWN_ENVIRONMENT))
    print(f"cnnkit {cnnkit.__version__} bench on {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"before: {_load()}; numpy {np.__version__}, BLAS: {blas}; torch: {torch_version or 'not timed'}")
    print(f"workers: {settings['threads']} threads each (cnnkit.set_num_threads, BLAS via threadpoolctl, "
          f"torch.set_num_threads); environment: {shown or 'no OMP_/OPENBLAS_/MKL_/CNNKIT_ variables'}")
    hints = [key for key in OPENBLAS_HINTS if key in env]
    if hints:
        print(f"note: {' and '.join(hints)} set here; a user's machine does not set them. "
              f"`env {' '.join(f'-u {key}' for key in hints)} cnnkit bench` measures what a user gets")


def _print_method(repeat, ops="ops: forward+backward; speedup: reference/fast; GEMM %: fast conv FLOP/s "
                                  "(3 x 2*N*F*C*KH*KW*OH*OW) over numpy matmul FLOP/s"):
    print(f"each contender timed alone, in a process of its own (python -m cnnkit.bench): {WARMUP} warm-up calls, "
          f"then {repeat} timed; median ms ±half the min-max range; fast checked against the reference after "
          "its timings")
    print(ops + "\n", flush=True)


def _cpu_snapshot():
    """(machine busy CPU seconds, CPU seconds of this process and its workers, wall seconds); None without /proc."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]
    except OSError:
        return None
    own = os.times()
    return ((sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"),
            own.user + own.system + own.children_user + own.children_system, time.monotonic())


def _others_share(start, end):
    """How busy other processes kept the CPUs during the run, as text."""
    if start is None or end is None:
        return "CPU use by other processes unknown"
    busy, own, wall = (b - a for a, b in zip(start, end))
    return f"other processes kept the CPUs {100 * max(0.0, busy - own) / (wall * os.cpu_count()):.0f}% busy meanwhile"


def _load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
