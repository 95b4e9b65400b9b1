"""One contender timed alone: `python -m cnnkit.bench JOB` runs a JSON job in a fresh process.

A job times one contender on one case (or profiles a training step) and prints one JSON
line. Only that contender's library does work in the process, so no other library's
thread pool is spinning while it is timed.

Jobs (JSON objects):

- time: case (a cases.ROWS or suite.SUITE name, or "matmul<size>"), batch (N or null), dtype,
  contender ("reference", "fast", "torch" or "numpy"), repeat, threads, and optionally
  check_batch (N of fast's check against the reference; default: batch) ->
  {"seconds": [one per timed call], "agrees": fast vs reference after the timings, else null}
- suite: as time, with cases (a list of names) instead of case -> {"results": [time's result
  for each case, in order]}
- profile: profile (a net's name or a saved model file), batch, repeat, threads ->
  profiler.profile_step's dict, on the fast backend
"""
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

import cnnkit
from cnnkit._backend import kernel_runtime
from cnnkit.bench.cases import ROWS, Matmul, Net, SavedModel
from cnnkit.bench.suite import SUITE
from cnnkit.profiler import profile_step

WARMUP = 2  # untimed calls first: Adam's state, the kernels' buffers, torch's allocator
SAVED_BATCH = 64  # batch of a saved model's profiled step (`cnnkit train`'s default)


def case(name, batch=None):
    """The case named `name` (a ROWS or SUITE key, or "matmul<size>"), with batch size N when batch is given."""
    if name.startswith("matmul"):
        return Matmul(int(name[len("matmul"):]))
    chosen = ROWS[name] if name in ROWS else SUITE[name]
    return dataclasses.replace(chosen, x=(batch, *chosen.x[1:])) if batch else chosen


def time_alone(job):
    """Run a time job in this process; its result dict."""
    chosen, contender = case(job["case"], job["batch"]), job["contender"]
    with _threads(job["threads"], contender):
        call = chosen.contender(contender, job["dtype"])
        for _ in range(WARMUP):
            call()
        seconds = []
        for _ in range(job["repeat"]):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        checked = case(job["case"], job.get("check_batch") or job["batch"])
        agrees = checked.check(job["dtype"]) if contender == "fast" else None
    return {"seconds": seconds, "agrees": agrees}


def time_suite(job):
    """Run a suite job in this process: time_alone for each of its cases, in order."""
    return {"results": [time_alone({**job, "case": name}) for name in job["cases"]]}


def profile(job):
    """Run a profile job in this process: profiler.profile_step of `profiled`'s training step (fast backend)."""
    net = profiled(job["profile"], job["batch"])
    with _threads(job["threads"], "fast"):
        model, step = net.training()
        for _ in range(WARMUP):
            step()
        return profile_step(model, step, job["repeat"])


def profiled(target, batch=None):
    """The training step a profile job names: a Net row of ROWS, or else a SavedModel of the file target
    (batch SAVED_BATCH unless given); ValueError for a row that is not a training step."""
    if target not in ROWS:
        return SavedModel(target, batch or SAVED_BATCH)
    net = case(target, batch)
    if not isinstance(net, Net):
        raise ValueError(f"--profile takes a training step's row or a model file, got {target!r}")
    return net


@contextlib.contextmanager
def _threads(threads, contender):
    """`threads` kernel, BLAS and (for torch) torch threads, and the backend when contender names one;
    the fast backend runs in the Trainer's kernel_runtime.

    Meant for a worker process: the kernel threads, torch threads and backend stay set after the block.
    """
    cnnkit.set_num_threads(threads)
    if contender in cnnkit.available_backends():
        cnnkit.set_backend(contender)
    if contender == "torch":
        import torch

        torch.set_num_threads(threads)
    fast = kernel_runtime() if contender == "fast" else contextlib.nullcontext()
    with threadpool_limits(threads, user_api="blas"), fast:
        yield


def run_job(job, env=None):
    """Run `job` in a fresh `python -m cnnkit.bench` process with environment env (None: this one's).

    Returns the job's result; raises ChildProcessError with the worker's last error line.
    """
    out = run_python(["-m", "cnnkit.bench", json.dumps(job)], env, f"benchmark worker for {json.dumps(job)}")
    return json.loads(out.strip().splitlines()[-1])


def run_python(args, env, what):
    """stdout of `python ARGS` run with environment env; ChildProcessError naming `what` if it fails."""
    # run where the cnnkit of this process lives, so that `-m` imports that one and not a
    # source tree (without compiled kernels) in the current folder
    home = Path(cnnkit.__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=home)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise ChildProcessError(f"{what} failed: {last}")
    return done.stdout


def result(job):
    """Run any job (profile, suite or time) in this process; its result dict."""
    return profile(job) if "profile" in job else time_suite(job) if "cases" in job else time_alone(job)


def main(argv):
    """Entry point of `python -m cnnkit.bench JOB`: print the job's result as one JSON line."""
    if len(argv) != 1:
        sys.exit("usage: python -m cnnkit.bench JOB (a JSON object; `cnnkit bench` starts these workers)")
    sys.stdout.write(json.dumps(result(json.loads(argv[0]))) + os.linesep)
