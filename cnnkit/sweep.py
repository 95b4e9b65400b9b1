"""Hyperparameter search over the options of `cnnkit train`, run on Dask distributed with Optuna.

A sweep is `cnnkit train` run many times: each trial is the options namespace of `cnnkit
train` with some values sampled, trained by the same pipeline (cnnkit.training.setup)
and scored by its best validation accuracy. Options that `cnnkit train` gains are
sweepable without a change here, because the space is checked against train's own parser.
So this module sits on top of that command, beside cnnkit.cli, not below it.

Who does what
-------------
- The client (the `cnnkit sweep` process, or the caller of `Sweep.run`) owns the Optuna
  study, an SQLite file in the sweep folder. It asks the study for a trial's parameters
  (ask-and-tell), submits one Dask task per trial carrying only the options, and tells
  the study the task's result. Workers never open the study: they need cnnkit, the data
  and the scheduler's address, not the client's disk.
- Pruning needs the study while a trial runs. After each epoch a worker puts (trial,
  epoch, validation accuracy) on a Dask queue, which lives on the scheduler, and waits
  for the answer on its trial's reply queue; the client reports the value to the study,
  asks the pruner (`trial.should_prune`) and answers. All study access stays in the client.
  (Workers writing the study themselves would need the SQLite file on a shared disk, which
  SQLite handles badly, or Optuna's GrpcStorageProxy: one more dependency and one more
  port to open. The queue uses the connection workers already have.)
- A completed trial sends back its Trainer checkpoint (bytes). The client keeps the best
  one; at the end the best trial is restored from it, scored once on the test split and
  written to DIR/best/ as `cnnkit train` writes its folder. So the client needs the data too.
- Each trial runs its kernels on --threads threads (default 1): start a worker thread per
  trial slot, e.g. `dask worker ADDRESS --nworkers $(nproc) --nthreads 1` on each machine.

Who may connect
---------------
A Dask client can run any Python code on the workers, so a sweep's cluster admits only
its own machines. A remote scheduler is reached over tls:// with certificates signed by
the cluster's CA (`cnnkit certs` makes them; Dask checks both ends and encrypts); a plain
tcp:// scheduler is refused unless it is on loopback or the caller says insecure. The
local cluster listens on 127.0.0.1 only and speaks TLS with a throwaway certificate
(Dask's Security.temporary), its HTTP servers included; without the cryptography package
it falls back to plain TCP, still on 127.0.0.1, and says so.

Faults and resuming
-------------------
- A worker that dies mid-trial: Dask runs the task again on another worker (a rerun
  repeats epochs already reported, which Optuna ignores); after repeated deaths Dask
  gives up and the trial is recorded as failed. A NaN loss (FloatingPointError) or any
  other error in the trial is recorded as failed with the reason.
- `trials` is the total for the folder. A rerun counts the trials the study holds,
  marks trials left RUNNING by a client that died as failed ("interrupted"), queues their
  parameters again and runs what is missing; finished trials never run again.
"""
import argparse
import contextlib
import csv
import functools
import importlib
import io
import ipaddress
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit._files import replace_file
from cnnkit.training import add_training_options, setup, write_outputs

INSTALL_HINT = 'cnnkit sweep needs Dask distributed and Optuna: pip install "cnnkit[sweep]"'
LOOPBACK = "127.0.0.1"  # where the local cluster listens
SAMPLERS = ("random", "tpe")
PRUNERS = ("halving", "median", "none")
NOT_SWEPT = ("help", "out", "resume")  # options of `cnnkit train` that a sweep sets itself
STUDY_FILE, CHECKPOINTS = "study.db", "checkpoints"
INTERRUPTED = "interrupted: the sweep stopped while this trial ran"
REPLY_TIMEOUT = 60  # seconds a worker waits for the client's pruning decision (it comes within POLL_SECONDS)
POLL_SECONDS = 0.1  # how often the client looks for finished trials and epoch reports


class _Extra:
    """A module of the sweep extra, imported when first used: a missing one raises ImportError with the install line."""

    def __init__(self, name):
        self._name = name

    def module(self):
        try:
            return importlib.import_module(self._name)
        except ImportError as error:
            raise ImportError(f"{INSTALL_HINT} ({error})") from None

    def __getattr__(self, attribute):
        return getattr(self.module(), attribute)


dask, distributed, optuna = _Extra("dask"), _Extra("distributed"), _Extra("optuna")


@dataclass(frozen=True)
class LogRange:
    """A numeric option sampled log-uniformly in [low, high]."""

    low: float
    high: float

    def distribution(self):
        distributions = optuna.distributions
        kind = distributions.IntDistribution if isinstance(self.low, int) else distributions.FloatDistribution
        return kind(self.low, self.high, log=True)

    def __str__(self):
        return f"{self.low}:{self.high}"


@dataclass(frozen=True)
class Choice:
    """An option sampled uniformly from a few values."""

    values: tuple

    def distribution(self):
        return optuna.distributions.CategoricalDistribution(self.values)

    def __str__(self):
        return ",".join(map(str, self.values))


class Pruned(Exception):
    """Raised in a trial when the pruner stops it."""


@functools.cache
def train_actions():
    """{dest: argparse action} of the options of `cnnkit train` a sweep can set."""
    parser = argparse.ArgumentParser()
    add_training_options(parser)
    return {action.dest: action for action in parser._actions if action.dest not in NOT_SWEPT}


def dimension(action, value):
    """A fixed value, LogRange or Choice for the train option `action`, checked by its parser.

    value: a string as on the command line ("3e-3", "1e-4:1e-1" for a log-uniform range of a
    numeric option, "8,16,32" for a choice), or from Python a value, a (low, high) tuple or a list.
    Raises ValueError saying what was expected.
    """
    if isinstance(value, str) and "," in value:
        value = value.split(",")
    elif isinstance(value, str) and ":" in value and _is_number(_parsed(action, value.partition(":")[0])):
        value = tuple(value.split(":"))
    if isinstance(value, list):
        if len(value) < 2:
            raise ValueError(f"{_flag(action)}: a choice needs at least two values, got {value!r}")
        return Choice(tuple(_jsonable(_parsed(action, item)) for item in value))
    if isinstance(value, tuple):
        return _log_range(action, value)
    return _parsed(action, value)


def _log_range(action, bounds):
    if len(bounds) != 2:
        raise ValueError(f"{_flag(action)}: a range is LOW:HIGH, got {':'.join(map(str, bounds))!r}")
    low, high = (_parsed(action, bound) for bound in bounds)
    if not (_is_number(low) and _is_number(high)):
        raise ValueError(f"{_flag(action)}: takes no range (LOW:HIGH is for numeric options)")
    if not 0 < low < high:
        raise ValueError(f"{_flag(action)}: {low}:{high} is no log-uniform range: it needs 0 < LOW < HIGH")
    return LogRange(low, high)


def _parsed(action, value):
    """value checked (and converted from a string) by the train option's type and choices."""
    if action.nargs == 0:  # a flag such as --no-augment
        if not isinstance(value, bool):
            raise ValueError(f"{_flag(action)}: is a flag, True or False, got {value!r}")
        return value
    try:
        parsed = action.type(str(value)) if action.type else str(value)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
        raise ValueError(f"{_flag(action)}: {error}") from None
    if action.choices is not None and parsed not in action.choices:
        raise ValueError(f"{_flag(action)}: expected one of {', '.join(map(str, action.choices))}, got {value!r}")
    return parsed


def _flag(action):
    return action.option_strings[-1]


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _jsonable(value):
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class Sweep:
    """A hyperparameter search over the options of `cnnkit train`, kept in a folder.

    Parameters
    ----------
    space : dict
        {option: value} with the options of `cnnkit train` by their Python names ("lr",
        "num_train", "update_rule", ...). A value is fixed; a (low, high) tuple is sampled
        log-uniformly; a list is a choice; a string is read as on the command line
        ("1e-4:1e-1", "8,16,32", "3"). Options not named keep train's defaults.
    out : path
        The sweep folder: study.db (the Optuna study), trials.csv, sweep.png, best/ (what
        `cnnkit train` writes, for the best trial), checkpoints/ (the best trial's so far).
    trials : int
        Total number of trials for the folder; a rerun runs only the missing ones.
    scheduler : str, optional
        Address of a running Dask scheduler, "tls://HOST:PORT"; default: a LocalCluster on
        127.0.0.1 that speaks TLS with a throwaway certificate (plain TCP, still on 127.0.0.1
        only, when the cryptography package is missing). A plain "tcp://HOST:PORT" lets
        anyone who reaches it run code on the workers: it is refused unless HOST is this
        machine (loopback) or insecure is True.
    tls_ca_file, tls_cert, tls_key : path, optional
        For a tls:// scheduler: the cluster's CA certificate, this client's certificate and
        its key (see `cnnkit certs`); those not given come from Dask's configuration
        (distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and .key).
    insecure : bool
        Accept a plain tcp:// scheduler on another machine.
    workers : int, optional
        Workers of the LocalCluster (default: cores // kernel threads per trial).
    sampler : "random" or "tpe"
    pruner : "halving" (successive halving), "median" or "none"
    verbose : bool
        One line per finished trial and a progress bar (on a terminal).

    Examples
    --------
    >>> rows = Sweep({"lr": (1e-4, 1e-1), "epochs": 3}, "sweep-out", trials=16).run()  # doctest: +SKIP
    """

    def __init__(self, space, out, trials, scheduler=None, workers=None, sampler="random", pruner="halving",
                 verbose=True, tls_ca_file=None, tls_cert=None, tls_key=None, insecure=False):
        actions = train_actions()
        unknown = sorted(set(space) - set(actions))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; a sweep takes the options of "
                             f"cnnkit train: {', '.join(sorted(actions))}")
        dimensions = {name: dimension(actions[name], value) for name, value in space.items()}
        self.space = {name: d for name, d in dimensions.items() if isinstance(d, (LogRange, Choice))}
        self.fixed = {name: d for name, d in dimensions.items() if name not in self.space}
        self.out, self.trials, self.scheduler = Path(out), _at_least(trials, 1, "trials"), scheduler
        self.workers = None if workers is None else _at_least(workers, 1, "workers")
        if scheduler and workers:
            raise ValueError("workers is for the local cluster; a scheduler's workers are started by `dask worker`")
        self.sampler, self.pruner = _one_of(sampler, SAMPLERS, "sampler"), _one_of(pruner, PRUNERS, "pruner")
        self.verbose = verbose
        self.tls = {key: os.fspath(path) for key, path in
                    [("tls_ca_file", tls_ca_file), ("tls_client_cert", tls_cert), ("tls_client_key", tls_key)] if path}
        _check_scheduler(scheduler, self.tls, insecure)

    def __repr__(self):
        space = ", ".join(f"{name}={value}" for name, value in {**self.fixed, **self.space}.items())
        return f"Sweep({space}; trials={self.trials}, out={os.fspath(self.out)!r})"

    # ------------------------------------------------------------------ running

    def run(self):
        """Run the missing trials, then write trials.csv, sweep.png and best/.

        Returns
        -------
        list of dict, one per trial of the folder: number, state (complete, pruned or
        failed), each sampled option, val_accuracy, epochs, seconds, worker, reason.
        """
        security = self._security()
        self.out.mkdir(parents=True, exist_ok=True)
        study = self._study()
        missing = self.trials - len(_counted(study))
        if missing > 0:
            with self._client(security) as client:
                self._run_trials(client, study, missing)
        rows = self._rows(study)
        self._write_results(study, rows)
        return rows

    def _run_trials(self, client, study, missing):
        """Keep every worker thread busy with a trial until `missing` more trials have finished."""
        reports = distributed.Queue(f"cnnkit-sweep-{uuid.uuid4().hex}", client=client)
        running, finished = {}, distributed.as_completed()  # running: Dask future -> Optuna trial
        with _progress(self, study) as bar:
            try:
                while missing or running:
                    while missing and len(running) < max(1, sum(client.nthreads().values())):
                        trial = study.ask({name: d.distribution() for name, d in self.space.items()})
                        future = client.submit(run_trial, self.options(trial.params), trial.number, reports.name,
                                               key=f"{reports.name}-trial-{trial.number}", retries=1)
                        running[future], missing = trial, missing - 1
                        finished.add(future)
                    time.sleep(POLL_SECONDS)
                    _answer_reports(reports, running.values(), client)
                    for future in finished.next_batch(block=False):
                        self._record(study, running.pop(future), _result(future), bar)
            except BaseException:
                for future, trial in running.items():
                    future.cancel()
                    _interrupt(study, trial.number, trial.params)
                raise
            finally:
                reports.close()

    def options(self, params=None):
        """The `cnnkit train` options namespace of a trial with sampled `params` (default: fixed only)."""
        actions = train_actions()
        options = argparse.Namespace(**{dest: action.default for dest, action in actions.items()})
        vars(options).update(self.fixed)
        vars(options).update({name: _parsed(actions[name], value) for name, value in (params or {}).items()})
        return options

    def _study(self):
        """The study of the folder (created or loaded), with trials a dead client left RUNNING failed."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
        pruners = {"halving": optuna.pruners.SuccessiveHalvingPruner, "median": optuna.pruners.MedianPruner,
                   "none": optuna.pruners.NopPruner}
        study = optuna.create_study(storage=f"sqlite:///{(self.out / STUDY_FILE).resolve()}",
                                    study_name="cnnkit-sweep", direction="maximize", load_if_exists=True,
                                    pruner=pruners[self.pruner]())
        self._check_same_sweep(study)
        # seeded, yet a rerun does not draw again the parameters the first run drew
        study.sampler = samplers[self.sampler](seed=self._seed() + len(study.trials))
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            _interrupt(study, trial.number, trial.params)
        return study

    def _seed(self):
        return int(self.fixed.get("seed", train_actions()["seed"].default))

    def _check_same_sweep(self, study):
        description = json.dumps({"fixed": {k: _jsonable(v) for k, v in self.fixed.items()},
                                  "space": {k: str(v) for k, v in self.space.items()}}, sort_keys=True)
        recorded = study.user_attrs.get("sweep")
        if recorded is None:
            study.set_user_attr("sweep", description)
        elif recorded != description:
            raise ValueError(f"{self.out} holds a sweep of other options ({recorded}); rerun it with the same "
                             f"options or choose another folder")

    def _security(self):
        """The distributed.Security of the client: None for plain TCP.

        A tls:// scheduler: this client's certificate from self.tls or Dask's configuration,
        encryption required. The local cluster: a throwaway certificate, or None without the
        cryptography package. Raises ValueError or FileNotFoundError saying what is missing.
        """
        for extra in (distributed, optuna):
            extra.module()  # ImportError with the install line before anything is written
        if self.scheduler is None:
            try:
                return distributed.Security.temporary()
            except ImportError:  # no cryptography (or an OpenSSL older than 1.1.1): plain TCP on loopback
                return None
        if _scheme(self.scheduler) == "tcp":
            return None
        for path in self.tls.values():
            if not Path(path).is_file():
                raise FileNotFoundError(f"TLS file {path} not found")
        security = distributed.Security(require_encryption=True, **self.tls)
        if not (security.tls_ca_file and security.tls_client_cert):
            raise ValueError(f"the scheduler {self.scheduler} needs the cluster's CA certificate and this client's "
                             "certificate and key: --tls-ca-file, --tls-cert, --tls-key (or Dask's configuration "
                             "distributed.comm.tls.ca-file, .client.cert, .client.key); `cnnkit certs` makes them")
        return security

    @contextlib.contextmanager
    def _client(self, security):
        """A Dask client of the scheduler at self.scheduler, else of a new LocalCluster."""
        if self.scheduler:
            if self.verbose and security is None:
                print(f"scheduler {self.scheduler}: plain TCP, unencrypted and open to anyone who reaches it",
                      file=sys.stderr, flush=True)
            with distributed.Client(self.scheduler, security=security, timeout="30s") as client:
                yield client
            return
        threads = self.fixed.get("threads") or 1
        workers = self.workers or max(1, (os.cpu_count() or 1) // threads)
        if self.verbose:
            print(f"local cluster on {LOOPBACK}: " + (
                "TLS with a throwaway certificate" if security else
                "plain TCP (TLS needs the cryptography package: pip install cryptography)"), flush=True)
        # every listener on loopback, on any free port (several sweeps may run at once); the HTTP servers
        # (dashboard, health) speak TLS too
        with _https(security), \
                distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host=LOOPBACK,
                                         protocol="tls://" if security else "tcp://", security=security,
                                         dashboard_address=f"{LOOPBACK}:0") as cluster, \
                distributed.Client(cluster, security=security) as client:
            yield client

    def _record(self, study, trial, result, bar):
        """Tell the study a trial's result; keep its checkpoint while it is the best."""
        TrialState = optuna.trial.TrialState
        for key in ("val_accuracy", "epochs", "seconds", "worker", "reason"):
            trial.set_user_attr(key, result[key])
        checkpoints = self.out / CHECKPOINTS
        if result["state"] == "complete" and _improves(study, result["val_accuracy"]):
            checkpoints.mkdir(exist_ok=True)
            replace_file(checkpoints / f"trial-{trial.number}.npz", result["checkpoint"])
        states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
        study.tell(trial, result["val_accuracy"] if result["state"] == "complete" else None,
                   state=states[result["state"]])
        _drop_stale_checkpoints(self.out, study)
        self._write_csv(self._rows(study))
        _report(self, study, trial.number, result, bar)

    # ------------------------------------------------------------------ results

    def _rows(self, study):
        """One dict per trial of the study (see run)."""
        TrialState = optuna.trial.TrialState
        names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
                 TrialState.RUNNING: "running"}
        interrupted = set(study.user_attrs.get("interrupted", []))
        return [{"number": trial.number, "state": names[trial.state],
                 **{name: trial.params.get(name) for name in self.space},
                 **{key: trial.user_attrs.get(key) for key in ("val_accuracy", "epochs", "seconds", "worker")},
                 "reason": INTERRUPTED if trial.number in interrupted else trial.user_attrs.get("reason", "")}
                for trial in study.get_trials(deepcopy=False) if trial.state != TrialState.WAITING]

    def _write_csv(self, rows):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        replace_file(self.out / "trials.csv", text.getvalue().encode())

    def _write_results(self, study, rows):
        """trials.csv, sweep.png and best/; prints the best trial."""
        from cnnkit.plots import plot_sweep

        self._write_csv(rows)
        _drop_stale_checkpoints(self.out, study)  # left by a client killed in _record
        plot_sweep(rows, {name: isinstance(d, LogRange) for name, d in self.space.items()}, self.out / "sweep.png")
        checkpoint = _best_checkpoint(self.out, study)
        if checkpoint is None:
            raise ValueError(f"no trial of {self.out} completed; see the reasons in {self.out / 'trials.csv'}")
        test_accuracy = self._write_best(study.best_trial, checkpoint)
        if self.verbose:
            print(f"best trial {study.best_trial.number}: {_params_text(study.best_trial.params)}, validation "
                  f"accuracy {study.best_value:.2%}, test accuracy {test_accuracy:.2%}; wrote {self.out}/: "
                  f"trials.csv, sweep.png, best/", flush=True)

    def _write_best(self, trial, checkpoint):
        """Restore the best trial from its checkpoint, score it on the test split once, write best/."""
        best = self.out / "best"
        best.mkdir(exist_ok=True)
        replace_file(best / "checkpoint.npz", checkpoint.read_bytes())
        model, trainer, data, info = setup(self.options(trial.params), resume=best / "checkpoint.npz", verbose=False)
        trainer.train()  # no epochs left: restores the best epoch's parameters
        info["test_accuracy"] = float(np.mean(model.predict(data["X_test"]) == data["y_test"]))
        info["sweep_trial"] = trial.number
        write_outputs(best, model, trainer, info)
        return info["test_accuracy"]


# ---------------------------------------------------------------------- the trial, on a worker

def run_trial(options, number, reports):
    """Train one trial on a Dask worker.

    options: the `cnnkit train` namespace; number: the trial's number; reports: name of the
    queue for per-epoch validation accuracies (see the module docstring).

    Returns
    -------
    dict with state ("complete", "pruned", "failed"), val_accuracy (best epoch's, or None),
    epochs, seconds, worker (address), reason, checkpoint (bytes of the Trainer checkpoint
    when complete, else None).
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnkit-trial-") as folder, \
            _trial_runtime(options.backend, options.threads or 1):
        checkpoint = Path(folder) / "checkpoint.npz"
        _, trainer, _, _ = setup(options, callbacks=[_pruning_callback(number, reports)], checkpoint=checkpoint,
                                 verbose=False)
        state, reason = "complete", ""
        try:
            trainer.train()
        except Pruned as pruned:
            state, reason = "pruned", str(pruned)
        except FloatingPointError as error:
            state, reason = "failed", f"FloatingPointError: {error}"
        return {"state": state, "val_accuracy": trainer.best_val_acc, "epochs": trainer.epoch,
                "seconds": round(time.perf_counter() - start, 2), "worker": distributed.get_worker().address,
                "reason": reason, "checkpoint": checkpoint.read_bytes() if state == "complete" else None}


def _pruning_callback(number, reports):
    """Trainer callback: send the epoch's validation accuracy to the client, raise Pruned if it says so."""
    outbox, inbox = distributed.Queue(reports), distributed.Queue(_reply_queue(reports, number))

    def report(trainer):
        outbox.put((number, trainer.epoch, trainer.val_acc_history[-1]))
        epoch, prune = inbox.get(timeout=REPLY_TIMEOUT)
        while epoch != trainer.epoch:  # an answer to an earlier run of this trial (its worker died)
            epoch, prune = inbox.get(timeout=REPLY_TIMEOUT)
        if prune:
            raise Pruned(f"pruned after epoch {epoch}, validation accuracy {trainer.val_acc_history[-1]:.4f}")
    return report


@contextlib.contextmanager
def _trial_runtime(backend, threads):
    """The trial's backend (None: the worker's default) and kernel and BLAS thread count."""
    from threadpoolctl import threadpool_limits

    import cnnkit

    cnnkit.set_num_threads(threads)
    with cnnkit.use_backend(backend or cnnkit.get_backend()), threadpool_limits(limits=threads, user_api="blas"):
        yield


# ---------------------------------------------------------------------- client helpers

def _answer_reports(reports, trials, client):
    """Report each queued epoch to the study and answer whether to prune."""
    by_number = {trial.number: trial for trial in trials}
    for number, epoch, value in reports.get(batch=True):
        trial = by_number.get(number)  # None: a run of a finished trial on a worker Dask had given up for dead
        if trial is not None:
            trial.report(value, epoch)
        prune = trial is None or trial.should_prune()
        distributed.Queue(_reply_queue(reports.name, number), client=client).put((epoch, prune))


def _reply_queue(reports, number):
    return f"{reports}-reply-{number}"


def _result(future):
    """The trial's result, or a failed one when its task raised or its workers died."""
    try:
        return future.result()
    except Exception as error:
        return {"state": "failed", "val_accuracy": None, "epochs": None, "seconds": None, "worker": None,
                "reason": f"{type(error).__name__}: {' '.join(str(error).split())}", "checkpoint": None}


def _interrupt(study, number, params):
    """Record a trial cut short by the client stopping as failed and queue its parameters again."""
    study.set_user_attr("interrupted", [*study.user_attrs.get("interrupted", []), number])
    study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(params)


def _counted(study):
    """The trials that count towards the total: all but those interrupted (and waiting)."""
    interrupted = set(study.user_attrs.get("interrupted", []))
    return [trial for trial in study.get_trials(deepcopy=False)
            if trial.state != optuna.trial.TrialState.WAITING and trial.number not in interrupted]


def _improves(study, value):
    return not _completed(study) or value > study.best_value


def _best_checkpoint(out, study):
    """Path of the checkpoint of the study's best trial, None before any trial completed."""
    if not _completed(study):
        return None
    path = out / CHECKPOINTS / f"trial-{study.best_trial.number}.npz"
    return path if path.is_file() else None


def _completed(study):
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _drop_stale_checkpoints(out, study):
    """Delete the checkpoints of trials that are not (or no longer) the best."""
    for stale in set((out / CHECKPOINTS).glob("trial-*.npz")) - {_best_checkpoint(out, study)}:
        stale.unlink()


@contextlib.contextmanager
def _progress(sweep, study):
    from tqdm.auto import tqdm

    with tqdm(total=sweep.trials, initial=len(_counted(study)), unit="trial",
              disable=None if sweep.verbose else True) as bar:  # None: shown on a terminal
        yield bar


def _report(sweep, study, number, result, bar):
    """Advance the progress bar (best so far) and print the trial's line."""
    bar.update()
    if _completed(study):
        bar.set_postfix(best=f"{study.best_value:.4f}")
    if sweep.verbose:
        accuracy = "-" if result["val_accuracy"] is None else f"{result['val_accuracy']:.2%}"
        params = _params_text(study.trials[number].params)
        bar.write(f"trial {number} {result['state']}: {params}: validation accuracy {accuracy}, "
                  f"{result['epochs']} epochs, {result['seconds']} s {result['reason']}".rstrip())
        sys.stdout.flush()


def _params_text(params):
    return ", ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in params.items())


def _at_least(value, minimum, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _one_of(value, choices, name):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


# ---------------------------------------------------------------------- who may connect

def _check_scheduler(scheduler, tls, insecure):
    """Raise ValueError unless the scheduler address and TLS files make a cluster closed to strangers.

    A plain tcp:// scheduler is accepted on loopback (this machine only) or with insecure.
    """
    if scheduler is None:
        if tls:
            raise ValueError("TLS files are for a tls:// scheduler; the local cluster makes its own certificate")
        return
    scheme = _scheme(scheduler)
    if scheme not in ("tcp", "tls"):
        raise ValueError(f"expected a scheduler address tls://HOST:PORT, got {scheduler!r}")
    if scheme == "tcp" and tls:
        raise ValueError(f"TLS files need a tls:// scheduler, got {scheduler!r}")
    if scheme == "tcp" and not insecure and not _is_loopback(_host(scheduler)):
        raise ValueError(
            f"refusing the plain-TCP scheduler {scheduler}: anyone who can reach it can run any code on its workers "
            "and read the trials' data. Set up TLS instead: `cnnkit certs DIR --hosts HOST ...` writes a CA and a "
            "certificate per machine; start `dask scheduler --protocol tls --tls-ca-file ca.pem --tls-cert HOST.pem "
            "--tls-key HOST-key.pem` and `dask worker tls://HOST:8786` with the same options, then sweep with "
            "--scheduler tls://HOST:8786 --tls-ca-file ca.pem --tls-cert client.pem --tls-key client-key.pem. "
            "To accept plain TCP on a network you trust, pass --insecure (insecure=True from Python).")


def _scheme(address):
    """The protocol of a Dask address; tcp for a bare HOST:PORT, as Dask reads it."""
    scheme, separator, _ = address.partition("://")
    return scheme if separator else "tcp"


def _host(address):
    """The host of a Dask address: "PROTOCOL://HOST:PORT", "HOST:PORT" or "[IPV6]:PORT"."""
    location = address.partition("://")[2] or address
    if location.startswith("["):
        return location[1:].partition("]")[0]
    return location.rpartition(":")[0] if location.count(":") == 1 else location


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@contextlib.contextmanager
def _https(security):
    """Dask's HTTP servers (dashboard, health, metrics) started in the block serve HTTPS with security's certificate."""
    if security is None:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="cnnkit-sweep-tls-") as folder:  # mode 0700: only its owner reads the key
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        replace_file(cert, security.tls_scheduler_cert)
        replace_file(key, security.tls_scheduler_key, mode=0o600)
        with dask.config.set({"distributed.scheduler.dashboard.tls.cert": os.fspath(cert),
                              "distributed.scheduler.dashboard.tls.key": os.fspath(key)}):
            yield
