"""cnnkit sweep: the space from train's options, a real Dask cluster with a worker killed, resume, pruning."""
import csv
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import run_python

from cnnkit import cli
from cnnkit.models import load
from cnnkit.sweep import INSTALL_HINT, INTERRUPTED, Choice, LogRange, Sweep, dimension, train_actions

pytest.importorskip("distributed")
optuna = pytest.importorskip("optuna")

# Trials of a few seconds: 400 training and 200 validation images of the built-in data, 2 epochs
SMALL = ["--num-train", "600", "--num-val", "200", "--epochs", "2", "--threads", "1"]
TIMEOUT = 300  # seconds; generous, the test machine is shared


def cnnkit_command(*args):
    return [sys.executable, "-m", "cnnkit.cli", *map(str, args)]


def read_rows(out):
    with open(out / "trials.csv", newline="") as file:
        return list(csv.DictReader(file))


def output_lines(process):
    """A queue receiving the process's output lines, then None when it ends."""
    lines = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines, prefix):
    """The lines up to the first that starts with prefix."""
    seen = []
    while not seen or not seen[-1].startswith(prefix):
        line = lines.get(timeout=TIMEOUT)
        assert line is not None, f"output ended before a line starting {prefix!r}:\n{''.join(seen)}"
        seen.append(line)
    return seen


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """(address, worker processes) of a `dask scheduler` and two `dask worker`s (no nanny, 1 thread) on 127.0.0.1."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    log = open(tmp_path / "dask.log", "w")
    dask = [sys.executable, "-m", "dask"]
    processes = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                   "--no-dashboard"], stdout=log, stderr=log)]
    try:
        processes += [subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                        "--host", "127.0.0.1", "--name", f"worker-{i}"], stdout=log, stderr=log)
                      for i in range(2)]
        with Client(address, timeout=TIMEOUT) as client:
            client.wait_for_workers(2, timeout=TIMEOUT)
        yield address, processes[1:]
    finally:
        for process in processes:
            process.kill()
            process.wait()
        log.close()


# ---------------------------------------------------------------------- the space

def test_values_ranges_and_choices_are_read_by_train_options():
    actions = train_actions()
    assert dimension(actions["lr"], "1e-4:1e-1") == LogRange(1e-4, 1e-1)
    assert dimension(actions["lr"], (1e-4, 1e-1)) == LogRange(1e-4, 1e-1)
    assert dimension(actions["lr"], "3e-3") == 3e-3
    assert dimension(actions["model"], "convnet,twolayer") == Choice(("convnet", "twolayer"))
    assert dimension(actions["batch_size"], [32, "64"]) == Choice((32, 64))
    assert dimension(actions["no_augment"], True) is True
    epochs = dimension(actions["epochs"], "2:8").distribution()
    assert isinstance(epochs, optuna.distributions.IntDistribution) and epochs.log
    assert isinstance(dimension(actions["lr"], "1e-4:1e-1").distribution(), optuna.distributions.FloatDistribution)


def test_a_trial_gets_the_namespace_cnnkit_train_would(tmp_path):
    """Built from train's parser: options train gains (--l1, --width, ...) need no change in the sweep."""
    train = vars(cli.build_parser().parse_args(["train", "--lr", "0.01", "--model", "twolayer"]))
    trial = vars(Sweep({"model": "twolayer", "lr": (1e-3, 1e-1)}, tmp_path, trials=1).options({"lr": 0.01}))
    assert trial == {key: value for key, value in train.items() if key not in ("command", "run", "out", "resume")}


@pytest.mark.parametrize(("argv", "message"), [
    (["--lr", "1:0"], "expected a number > 0, got '0'"),
    (["--lr", "1e-1:1e-3"], "0 < LOW < HIGH"),
    (["--lr", "abc"], "expected a number > 0, got 'abc'"),
    (["--reg", "0:1e-2"], "0 < LOW < HIGH"),
    (["--model", "convnet,resnet"], "expected one of"),
    (["--update-rule", "sgd:adam"], "expected one of"),
    (["--lr", "1e-3:1e-2:1e-1"], "a range is LOW:HIGH"),
    (["--no-such-option", "3"], "unrecognized arguments: --no-such-option"),
])
def test_bad_ranges_are_usage_errors_before_anything_runs(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["sweep", "--out", str(tmp_path / "sweep"), *argv])
    assert exit_status.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(("space", "message"), [
    ({"lr": (1e-1, 1e-3)}, "0 < LOW < HIGH"),
    ({"lr": "abc"}, "expected a number"),
    ({"model": ("convnet", "twolayer")}, "takes no range"),
    ({"width_of_everything": 3}, "unknown option"),
    ({"epochs": [3]}, "at least two values"),
])
def test_the_python_api_rejects_bad_spaces(tmp_path, space, message):
    with pytest.raises(ValueError, match=message):
        Sweep(space, tmp_path, trials=2)


@pytest.mark.parametrize(("options", "message"), [
    ({"trials": 0}, "trials must be an int >= 1"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}, "workers is for the local cluster"),
    ({"sampler": "grid"}, "sampler must be one of random, tpe"),
])
def test_the_python_api_rejects_bad_settings(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        Sweep({"lr": (1e-3, 1e-2)}, tmp_path, **{"trials": 2, **options})


def test_without_the_extras_the_command_names_the_install_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert cli.main(["sweep", "--out", str(tmp_path), "--trials", "1"]) == 1
    assert INSTALL_HINT in capsys.readouterr().err


@pytest.mark.subprocess
def test_importing_cnnkit_imports_neither_dask_nor_optuna():
    code = ("import sys, cnnkit; cnnkit.Sweep; "
            "print(sorted({'dask', 'distributed', 'optuna'} & {m.split('.')[0] for m in sys.modules}))")
    assert run_python(code).stdout == "[]\n"


# ---------------------------------------------------------------------- running sweeps

@pytest.mark.subprocess
def test_sweep_on_a_dask_cluster_survives_a_killed_worker(dask_cluster, tmp_path):
    address, workers = dask_cluster
    out = tmp_path / "sweep"
    client = subprocess.Popen(cnnkit_command("sweep", "--scheduler", address, "--trials", 6, "--update-rule", "sgd",
                                             "--lr", "1e-2,1e3", "--pruner", "none", *SMALL, "--out", out),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = output_lines(client)
    printed = wait_for_line(lines, "trial ")  # one trial done, the other worker is mid-trial
    workers[0].kill()
    assert client.wait(timeout=TIMEOUT) == 0, "".join(printed + list(iter(lines.get, None)))
    rows = read_rows(out)
    assert [int(row["number"]) for row in rows] == list(range(6))
    outcomes = {(row["lr"], row["state"], row["reason"].partition(" is ")[0]) for row in rows}
    # the killed worker's trial ran again elsewhere; lr 1000 makes the loss NaN
    assert outcomes == {("0.01", "complete", ""), ("1000.0", "failed", "FloatingPointError: loss")}
    assert load(out / "best" / "model.npz").num_params > 0
    assert {path.name for path in (out / "best").iterdir()} >= {"model.npz", "model.json", "history.json",
                                                                "curves.png", "checkpoint.npz"}
    assert (out / "sweep.png").stat().st_size > 0


def wait_for_running_trial(study_file):
    """Return once the study holds a trial that has started and not finished."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        study = optuna.load_study(study_name="cnnkit-sweep", storage=f"sqlite:///{study_file}")
        if any(trial.state == optuna.trial.TrialState.RUNNING for trial in study.trials):
            return
        time.sleep(0.05)
    raise AssertionError(f"no trial of {study_file} started within {TIMEOUT} s")


@pytest.mark.subprocess
def test_resume_after_the_client_is_killed_runs_only_the_missing_trials(tmp_path):
    out = tmp_path / "sweep"
    command = cnnkit_command("sweep", "--workers", 1, "--trials", 3, "--lr", "1e-3:1e-2", "--pruner", "none",
                             *SMALL, "--epochs", 8, "--out", out)  # trials of seconds: time to kill one mid-way
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        wait_for_line(output_lines(client), "trial 0 ")
        wait_for_running_trial(out / "study.db")
    finally:
        os.killpg(client.pid, signal.SIGKILL)  # the client and its local cluster's workers
        client.wait()
    study = optuna.load_study(study_name="cnnkit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    finished = {trial.number: trial.user_attrs for trial in study.trials if trial.state.is_finished()}
    cut_short = {trial.number: trial.params for trial in study.trials if not trial.state.is_finished()}
    assert 0 in finished and cut_short

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rows = {int(row["number"]): row for row in read_rows(out)}
    for number, attrs in finished.items():  # not run again: the same seconds and worker as before the kill
        assert (float(rows[number]["seconds"]), rows[number]["worker"]) == (attrs["seconds"], attrs["worker"])
        assert f"trial {number} " not in rerun.stdout
    for number, params in cut_short.items():  # failed as interrupted, replaced by a trial of the same params
        assert (rows[number]["state"], rows[number]["reason"]) == ("failed", INTERRUPTED)
        assert any(float(row["lr"]) == params["lr"] and row["state"] == "complete" for row in rows.values())
    assert sum(row["state"] == "complete" for row in rows.values()) == 3


@pytest.mark.slow
def test_local_cluster_sweep_prunes_the_trials_falling_behind(tmp_path):
    """One worker runs the trials in turn: after the first, those behind after epoch 1 stop there."""
    space = {"lr": (1e-6, 1e-1), "epochs": 2, "num_train": 600, "num_val": 200, "threads": 1}
    rows = Sweep(space, tmp_path, trials=6, workers=1, verbose=False).run()
    assert [row["number"] for row in rows] == list(range(6))
    pruned = [row for row in rows if row["state"] == "pruned"]
    complete = [row for row in rows if row["state"] == "complete"]
    assert pruned and complete
    assert all(row["epochs"] == 1 for row in pruned) and all(row["epochs"] == 2 for row in complete)
    best = max(complete, key=lambda row: row["val_accuracy"])
    info = json.loads((tmp_path / "best" / "model.json").read_text())
    assert info["sweep_trial"] == best["number"] and 0 <= info["test_accuracy"] <= 1
    assert [path.name for path in (tmp_path / "checkpoints").iterdir()] == [f"trial-{best['number']}.npz"]
    assert read_rows(tmp_path)[best["number"]]["state"] == "complete"
