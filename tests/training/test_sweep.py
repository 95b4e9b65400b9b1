"""cnnkit sweep: the space from train's options, resume after the client is killed.

Real `dask scheduler` / `dask worker` clusters, TLS, who may connect, the local cluster: test_sweep_cluster.py."""
import csv
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import run_python

from cnnkit import cli
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


def test_importing_cnnkit_imports_neither_dask_nor_optuna():
    code = ("import sys, cnnkit; cnnkit.Sweep; "
            "print(sorted({'dask', 'distributed', 'optuna'} & {m.split('.')[0] for m in sys.modules}))")
    assert run_python(code).stdout == "[]\n"


# ---------------------------------------------------------------------- running sweeps

def wait_for_running_trial(study_file):
    """Return once the study holds a trial that has started and not finished."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        study = optuna.load_study(study_name="cnnkit-sweep", storage=f"sqlite:///{study_file}")
        if any(trial.state == optuna.trial.TrialState.RUNNING for trial in study.trials):
            return
        time.sleep(0.05)
    raise AssertionError(f"no trial of {study_file} started within {TIMEOUT} s")


@pytest.mark.slow
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
