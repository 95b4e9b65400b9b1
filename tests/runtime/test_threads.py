"""Settings per thread: backend and kernel threads stay in the thread that chose them.

Threads started by the tests run on the fast backend's kernels, so the training and
prediction tests exercise OpenMP teams started from several Python threads at once and
the process-wide BLAS scope (cnnkit._runtime) they share.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import run_python

import cnnkit
from cnnkit.datasets import load_builtin
from cnnkit.recipes import convnet


def in_thread(function):
    """function() run in a new thread; returns its result or raises its exception."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the caller below
            outcome["error"] = error
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(autouse=True)
def fast_default():
    if "fast" not in cnnkit.available_backends():
        pytest.skip("the compiled extension is not built")
    cnnkit.set_backend("fast")


def test_use_backend_stays_in_its_thread():
    inside, release = threading.Event(), threading.Event()

    def hold_reference():
        with cnnkit.use_backend("reference"):
            inside.set()
            release.wait(10)
            return cnnkit.get_backend()

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(hold_reference)
        assert inside.wait(10)
        seen_meanwhile = [cnnkit.get_backend(), in_thread(cnnkit.get_backend)]
        release.set()
        assert held.result() == "reference"
    assert seen_meanwhile == ["fast", "fast"]


def test_set_in_a_thread_changes_that_thread_only():
    def choose():
        cnnkit.set_backend("reference")
        cnnkit.set_num_threads(1)
        return cnnkit.get_backend(), cnnkit.get_num_threads()

    assert in_thread(choose) == ("reference", 1)
    assert cnnkit.get_backend() == "fast" and in_thread(cnnkit.get_backend) == "fast"


def test_new_threads_inherit_the_main_threads_default():
    cnnkit.set_backend("reference")
    cnnkit.set_num_threads(1)
    assert in_thread(lambda: (cnnkit.get_backend(), cnnkit.get_num_threads())) == ("reference", 1)
    cnnkit.set_num_threads(2)
    assert in_thread(cnnkit.get_num_threads) == 2


@pytest.mark.subprocess
def test_environment_variable_sets_the_default_of_every_thread():
    code = ("import threading, cnnkit; seen = []; thread = threading.Thread(target=lambda: seen.append("
            "cnnkit.get_backend())); thread.start(); thread.join(); print(seen[0], cnnkit.get_backend())")
    out = run_python(code, env=dict(os.environ, CNNKIT_BACKEND="reference"))
    assert out.stdout.split() == ["reference", "reference"]


def test_use_backend_restores_after_an_error_in_the_block():
    with pytest.raises(KeyError), cnnkit.use_backend("reference"):
        raise KeyError("in the block")
    assert cnnkit.get_backend() == "fast"


@pytest.fixture(scope="module")
def shapes():
    return load_builtin(num_train=256, num_test=128, image_size=16, seed=3)


def train(data, seed):
    """Parameters of a convnet trained for one epoch with one kernel thread in the calling thread."""
    cnnkit.set_num_threads(1)
    model = convnet((3, 16, 16), 10, width=8, hidden=32, seed=seed)
    cnnkit.Trainer(model, {"X_train": data["X_train"], "y_train": data["y_train"]}, update_rule="adam",
                   optim_config={"learning_rate": 3e-3}, batch_size=32, num_epochs=1, seed=seed,
                   verbose=False).train()
    return {key: value.copy() for key, value in model.params.items()}


def test_two_trainers_in_two_threads_train_the_models_each_trains_alone(shapes):
    alone = [in_thread(lambda seed=seed: train(shapes, seed)) for seed in (0, 1)]
    start = threading.Barrier(2)

    def train_together(seed):
        start.wait(10)
        return train(shapes, seed)

    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(train_together, (0, 1)))
    for own, shared in zip(alone, together):
        assert own.keys() == shared.keys()
        for key in own:
            np.testing.assert_array_equal(shared[key], own[key], err_msg=key)
    assert not np.array_equal(alone[0]["0.weight"], alone[1]["0.weight"])


def test_concurrent_predict_gives_the_serial_scores(shapes):
    model = convnet((3, 16, 16), 10, width=8, hidden=32, seed=2).eval()
    batches = np.array_split(shapes["X_test"], 8)
    serial = [model.loss(batch) for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(model.loss, batches))
    for alone, together in zip(serial, concurrent):
        np.testing.assert_array_equal(together, alone)


def test_concurrent_predict_in_training_mode_predicts_in_eval_mode_and_restores_it(shapes):
    model = convnet((3, 16, 16), 10, width=8, hidden=32, dropout=0.5, seed=2)  # dropout: the mode matters
    batches = np.array_split(shapes["X_test"], 16)
    serial = [model.predict(batch) for batch in batches]
    for _ in range(5):  # the threads interleave differently each round
        with ThreadPoolExecutor(4) as pool:
            concurrent = list(pool.map(model.predict, batches))
        assert all(np.array_equal(a, b) for a, b in zip(serial, concurrent))
    assert model.training
