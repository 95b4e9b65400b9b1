"""Inference time of the MNIST recipe's model: cnnkit against onnxruntime on its `cnnkit export`, each alone.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/inference.py
        [--model MODEL.npz] [--batches 1,256,10000] [--threads 2,1] [--rounds 3]
        [--contenders cnnkit,layers,onnxruntime,torch]

Contenders, each timed in a fresh process of its own (only its library's threads exist there):
  cnnkit       model.loss(X) in eval mode: the inference plan (cnnkit.models.inference)
  layers       the layer-by-layer eval forward (Network.forward) 256 images at a time, as predict ran before
  onnxruntime  an InferenceSession on the exported model, intra_op_num_threads=threads, inter 1
  torch        the same network in torch.nn, eval mode, under torch.inference_mode()
Each process warms up, then times one call on the whole batch repeatedly; a cell gives the
median wall time over all timed calls of all rounds (processes), the lowest and highest round
median, and the median CPU time of the process per call (all its threads, spinning included).
Idle OpenMP threads spin about a millisecond, then sleep (prefer_short_spin), as under the `cnnkit` command.
Without --model the recipe's model is built with its initial weights (the time does not depend on them).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cnnkit._runtime import prefer_short_spin

IMAGE = (1, 28, 28)
IMAGES = 10000  # the images drawn; batches take the first ones
TIMEOUT = 900  # seconds for one worker


def build_model():
    """The MNIST recipe's model (`cnnkit train --dataset mnist`): convnet width 16, hidden 256, dropout 0.4."""
    from cnnkit.recipes import build_model as recipe_model

    return recipe_model("convnet", IMAGE, 10, width=16, hidden=256, dropout=0.4)


def contender_call(contender, model_path, onnx_path, images, threads):
    """A no-argument function running `contender` once on `images`, in this process."""
    if contender == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: images})
    if contender == "torch":
        return _torch_call(model_path, images, threads)
    import cnnkit
    from cnnkit.models import load

    cnnkit.set_num_threads(threads)
    model = load(model_path).eval()
    if contender == "cnnkit":
        return lambda: model.loss(images)
    return lambda: np.concatenate([model.forward(images[i:i + 256]) for i in range(0, len(images), 256)])


def _torch_call(model_path, images, threads):
    import torch

    from cnnkit import layers as nn
    from cnnkit.models import load

    torch.set_num_threads(threads)
    model, modules = load(model_path), []
    for layer in model.layers:
        if isinstance(layer, nn.Conv2d):
            module = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                     layer.padding)
            module.weight.data = torch.from_numpy(layer.params["weight"].copy())
            module.bias.data = torch.from_numpy(layer.params["bias"].copy())
        elif isinstance(layer, nn.Linear):
            module = torch.nn.Linear(layer.in_features, layer.out_features)
            module.weight.data = torch.from_numpy(layer.params["weight"].T.copy())
            module.bias.data = torch.from_numpy(layer.params["bias"].copy())
        elif isinstance(layer, nn.MaxPool2d):
            module = torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        else:
            same = {nn.ReLU: torch.nn.ReLU, nn.Flatten: torch.nn.Flatten, nn.Dropout: torch.nn.Identity}
            module = same[type(layer)]()
        modules.append(module)
    network, tensor = torch.nn.Sequential(*modules).eval(), torch.from_numpy(images)

    def call():
        with torch.inference_mode():
            return network(tensor)
    return call


def worker(job):
    """Time one contender on one batch in this process: {"seconds": [...]}."""
    images = np.load(job["images"], mmap_mode="r")[:job["batch"]].copy()
    call = contender_call(job["contender"], job["model"], job["onnx"], images, job["threads"])
    repeat = max(5, min(400, 10000 // job["batch"]))  # 400 at batch 1, 39 at 256, 5 at 10,000
    for _ in range(max(2, repeat // 8)):  # warm-up: buffers, caches, thread pools
        call()
    seconds, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"seconds": seconds, "cpu": cpu}


def run_worker(job):
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                          timeout=TIMEOUT)
    if done.returncode:
        raise ChildProcessError(f"{job['contender']} worker failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(folder, model_path):
    """(model file, ONNX file, images .npy) in folder; the model built afresh unless model_path is given."""
    import cnnkit.onnx
    from cnnkit.models import load

    model = load(model_path) if model_path else build_model()
    paths = [str(Path(folder) / name) for name in ("model.npz", "model.onnx", "images.npy")]
    model.save(paths[0])
    cnnkit.onnx.export(model, paths[1], IMAGE)
    np.save(paths[2], np.random.default_rng(0).standard_normal((IMAGES, *IMAGE), dtype=np.float32))
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help="a cnnkit model file (default: the recipe's model, initial weights)")
    parser.add_argument("--batches", default="1,256,10000")
    parser.add_argument("--threads", default="2,1")
    parser.add_argument("--rounds", type=int, default=3, help="processes per contender and row")
    parser.add_argument("--contenders", default="cnnkit,layers,onnxruntime")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    prefer_short_spin()  # as the `cnnkit` command and benchmarks/compare.py do; the workers inherit it
    if "OPENBLAS_CORETYPE" in os.environ or "OPENBLAS_L2_SIZE" in os.environ:
        print("note: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set; run under `env -u ...` to time what users see")
    contenders = args.contenders.split(",")
    with tempfile.TemporaryDirectory() as folder:
        model, onnx_path, images = prepare(folder, args.model)
        print(f"{'threads':>7} {'batch':>6}" + "".join(f" {c:>32}" for c in contenders)
              + (" cnnkit/onnxruntime" if {"cnnkit", "onnxruntime"} <= set(contenders) else ""))
        for threads in map(int, args.threads.split(",")):
            for batch in map(int, args.batches.split(",")):
                medians, cells = {}, []
                for contender in contenders:
                    job = dict(contender=contender, batch=batch, threads=threads, model=model, onnx=onnx_path,
                               images=images)
                    medians[contender], cell = _timed(run_worker(job) for _ in range(args.rounds))
                    cells.append(cell)
                ratio = (f" {medians['cnnkit'] / medians['onnxruntime']:18.2f}x"
                         if {"cnnkit", "onnxruntime"} <= set(medians) else "")
                print(f"{threads:>7} {batch:>6}" + "".join(f" {c:>32}" for c in cells) + ratio, flush=True)


def _timed(rounds):
    """(median ms, table cell "median [lowest-highest round median] cpu median") of the workers' results."""
    rounds = list(rounds)
    wall, cpu = (statistics.median(t for r in rounds for t in r[key]) * 1e3 for key in ("seconds", "cpu"))
    per_round = [statistics.median(r["seconds"]) * 1e3 for r in rounds]
    return wall, f"{wall:.3f} [{min(per_round):.3f}-{max(per_round):.3f}] cpu {cpu:.3f}"


if __name__ == "__main__":
    main()
