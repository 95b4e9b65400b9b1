"""Trainer: minibatch training of any model with `params` and `loss`, with checkpoints, on one
process or data-parallel over the ranks of an MPI communicator."""
import contextlib
import json
import math
import os

import numpy as np
from tqdm.auto import tqdm

from cnnkit._backend import kernel_runtime
from cnnkit._npz import assign_arrays, prefixed, read_npz, unprefixed, write_npz
from cnnkit._random import KeyedRows
from cnnkit._validation import check_real
from cnnkit.distributed import DataParallel, synchronize_batchnorm
from cnnkit.errors import CheckpointError
from cnnkit.layers import Dropout
from cnnkit.optim import get_update_rule

CHECKPOINT_FORMAT = "cnnkit-checkpoint"
SCHEDULES = ("step", "cosine")


class Trainer:
    """Train a classification model by minibatch gradient descent.

    Each epoch visits the training set once in a fresh random order (without
    replacement; the last batch may be smaller), then measures training and validation
    accuracy. The order and the accuracy subsamples come from one generator seeded by
    `seed`, whose state is saved in checkpoints, so a resumed run ends with exactly the
    parameters of an uninterrupted one. Augmentation and dropout draw per example, keyed
    by seed, epoch (or update) and the example's position in the epoch, so what an
    example sees does not depend on how many ranks share its batch.

    With `comm` (an mpi4py communicator), every rank runs this Trainer on the same data
    and options: rank r takes its slice of each batch (batch_size stays the global
    batch, and every rank runs every step, even with an empty slice), the weights start
    as rank 0's, the gradients are summed in one flat buffer per step and every rank
    applies the same update. Batchnorm normalises with the statistics of each rank's
    slice and its running statistics are averaged over the ranks before each accuracy
    check, unless sync_batchnorm; accuracies are counts summed over the ranks' slices. Only
    rank 0 writes checkpoints. An exception on any rank ends every rank (MPI Abort).

    Parameters
    ----------
    model : object
        Needs `params`, a dict of arrays that the Trainer replaces as
        ``model.params[key] = new_array``, and `loss(X, y=None)` returning scores (N, C)
        without y, else (loss, grads) with grads keyed like params. Optional: `train()`
        and `eval()` (both), called before training steps and before accuracy checks,
        and `buffers`, a dict of non-trainable arrays (e.g. running means) saved in
        checkpoints and with the best parameters. max_norm needs `incoming_axes`, a dict
        {param key: axes holding one unit's incoming weights}.
    data : dict
        "X_train" (N, ...) and "y_train" (N,) int labels; optionally "X_val", "y_val".
    update_rule : str or callable
        A name from cnnkit.optim ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam")
        or a function ``(w, dw, config) -> (next_w, config)``.
    optim_config : dict, optional
        Hyperparameters given to the rule; each parameter gets its own copy, which
        also holds its optimiser state.
    lr_decay : float
        The learning rate of epoch e is learning_rate * lr_decay**e * schedule(e).
    schedule : None, "step", "cosine" or callable
        "step": gamma**(e // step_size); "cosine": (1 + cos(pi * e / num_epochs)) / 2;
        a callable maps the epoch (from 0) to a factor.
    step_size, gamma : int, float
        Of the "step" schedule.
    warmup_steps : int
        Linear warm-up: update i (from 0) with i < warmup_steps multiplies the learning
        rate of its epoch by (i + 1) / warmup_steps; 0 for none.
    batch_size, num_epochs : int
    seed : int or None
        Seeds the generator of shuffling, accuracy subsamples and augmentation.
    num_train_samples : int or None
        Training samples (drawn at random each epoch) used to measure training accuracy;
        None for all.
    num_val_samples : int or None
        Likewise for validation accuracy.
    patience : int or None
        Stop after this many epochs without a better validation accuracy (needs X_val).
    augment : callable, optional
        ``augment(X_batch, rng) -> X_batch``, applied to each training minibatch. rng
        has numpy's ``rng.random(shape)``, whose row i (shape[0] = len(X_batch)) holds
        image i's draws (cnnkit.datasets.augmentation's functions draw that way).
    max_norm : float or None
        After every update, rescale each unit's incoming weight vector (the params of
        model.incoming_axes: a Linear or Maxout weight column, a Conv2d filter) whose norm
        exceeds max_norm to norm max_norm; smaller ones are left as they are.
    callbacks : sequence of callables
        Each called as ``callback(trainer)`` at the end of every epoch, after the checkpoint.
    checkpoint : path, optional
        Written atomically at the end of every epoch (.npz, no pickle).
    resume : path, optional
        Checkpoint to continue from; the other options must match the interrupted run's.
        A damaged checkpoint, or one from another run, raises cnnkit.CheckpointError (a
        ValueError) naming the file and what was wrong.
    verbose : bool
        Show a tqdm progress bar (on a terminal, or as a widget in Jupyter).
    comm : mpi4py.MPI.Comm or None
        Train data-parallel over its ranks (see above); None: this process alone.
    reduction : "ordered" or "mpi"
        How gradients are summed over the ranks: "ordered" in rank order (the same bits on
        every rerun with the same number of ranks), "mpi" by the library's Allreduce.
    sync_batchnorm : bool
        With comm: every BatchNorm1d and BatchNorm2d layer of the model, in containers too,
        trains with the statistics of the whole global batch, its forward and backward
        summing what they need over the ranks with `reduction`
        (cnnkit.distributed.synchronize_batchnorm): the updates are one process's on the
        whole batch, to rounding, and the running statistics agree on every rank. Costs two
        small sums over the ranks per layer and step; the layers keep the setting after
        training. Without comm nothing changes. ValueError for a model without such layers.

    Attributes
    ----------
    epoch, iteration : int
        Epochs and updates completed.
    loss_history : list of float, one per update
    train_acc_history, val_acc_history : list of float, one per epoch
    best_val_acc : float or None
    best_params : dict of arrays, the params of the best validation accuracy; train()
        restores them (with the buffers of that epoch) at the end.
    """

    def __init__(self, model, data, *, update_rule="sgd", optim_config=None, lr_decay=1.0, schedule=None,
                 step_size=10, gamma=0.1, batch_size=100, num_epochs=10, seed=None, num_train_samples=1000,
                 num_val_samples=None, patience=None, augment=None, callbacks=(), checkpoint=None, resume=None,
                 verbose=True, max_norm=None, warmup_steps=0, comm=None, reduction="ordered",
                 sync_batchnorm=False):
        self.model = model
        self._parallel = None if comm is None else DataParallel(comm, reduction)
        self.X_train, self.y_train, self.X_val, self.y_val = _split_data(data)
        self.update_rule = get_update_rule(update_rule)
        self.lr_decay, self.schedule, self.step_size, self.gamma = lr_decay, schedule, step_size, gamma
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.num_epochs = _positive_int(num_epochs, "num_epochs")
        self.warmup_steps = _positive_int(warmup_steps, "warmup_steps", minimum=0)
        self.num_train_samples, self.num_val_samples = num_train_samples, num_val_samples
        self.patience, self.augment, self.callbacks = patience, augment, list(callbacks)
        self.checkpoint, self.verbose = checkpoint, verbose
        if patience is not None and self.X_val is None:
            raise ValueError("patience (early stopping) needs validation data X_val, y_val")
        self.max_norm = _max_norm(max_norm, model)
        optim_config = {k: v.item() if isinstance(v, np.generic) else v for k, v in (optim_config or {}).items()}
        defaults = getattr(self.update_rule, "defaults", {})
        self._base_lr = optim_config.get("learning_rate", defaults.get("learning_rate"))
        self._check_schedule()
        self.rng = np.random.default_rng(seed)
        self._key = np.random.SeedSequence(seed).entropy  # of per-example draws
        self.optim_configs = {key: dict(optim_config) for key in model.params}
        self.epoch = self.iteration = self._bad_epochs = 0
        self.loss_history, self.train_acc_history, self.val_acc_history = [], [], []
        self.best_val_acc, self.best_params, self._best_buffers = None, {}, {}
        if resume is not None:
            self._load_checkpoint(resume)
        if self._parallel is not None:
            self._start_identical()
        self.sync_batchnorm, self._idle = bool(sync_batchnorm), False
        if self.sync_batchnorm:
            synchronize_batchnorm(model, None if self._parallel is None else self._batchnorm_sum)

    @property
    def rank(self):
        """This process's rank in the communicator (0 without one)."""
        return 0 if self._parallel is None else self._parallel.rank

    @property
    def num_ranks(self):
        """How many processes train the model (1 without a communicator)."""
        return 1 if self._parallel is None else self._parallel.size

    def _start_identical(self):
        """Rank 0's parameters, buffers, seed key and generator state on every rank."""
        for target, what in ((self.model.params, "rank 0's parameters"), (_buffers(self.model), "rank 0's buffers")):
            arrays = {key: np.array(value, copy=True, order="C") for key, value in target.items()}
            self._parallel.broadcast(arrays)
            assign_arrays(target, arrays, what)
        state = json.dumps([str(self._key), self.rng.bit_generator.state]).encode()
        key, self.rng.bit_generator.state = json.loads(self._parallel.broadcast_bytes(state))
        self._key = int(key)

    # ------------------------------------------------------------------ training

    def train(self):
        """Run the remaining epochs; restore the best parameters; leave the model in eval mode.

        Returns
        -------
        self

        Raises
        ------
        FloatingPointError
            When a loss is NaN or Inf, naming the iteration; the parameters keep their
            last values and the last checkpoint stays as it was.
        """
        batches = math.ceil(len(self.X_train) / self.batch_size)
        quiet = None if self.verbose else True  # None: tqdm shows the bar on a terminal or in Jupyter
        ending = contextlib.nullcontext() if self._parallel is None else self._parallel.abort_on_error()
        with ending, kernel_runtime(), tqdm(total=self.num_epochs * batches, initial=self.iteration,
                                            disable=quiet, unit="batch") as bar:
            while self.epoch < self.num_epochs and not self._out_of_patience():
                self._train_epoch(bar)
                self._end_epoch()
                bar.set_postfix(epoch=self.epoch, train_acc=self.train_acc_history[-1],
                                **({"val_acc": self.val_acc_history[-1]} if self.val_acc_history else {}))
                self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self)
        if self.best_val_acc is not None:
            assign_arrays(self.model.params, _copies(self.best_params), "best parameters")
            assign_arrays(_buffers(self.model), _copies(self._best_buffers), "best buffers")
        self._set_mode("eval")
        return self

    def _train_epoch(self, bar):
        self._set_learning_rate()
        self._set_mode("train")
        order = self.rng.permutation(len(self.X_train))
        for start in range(0, len(order), self.batch_size):
            self._step(order[start:start + self.batch_size], start)
            bar.update()

    def _step(self, batch, start):
        """One update on the examples X_train[batch], positions start... of the epoch's order (this rank's
        slice of them under MPI)."""
        if self.iteration <= self.warmup_steps:
            self._set_learning_rate()
        if self._parallel is None:
            loss, grads = self._gradients(batch, start, 0)
        else:
            first, stop = self._parallel.span(len(batch))
            loss, grads = self._summed_gradients(batch[first:stop], start + first, first, len(batch))
        if not np.isfinite(loss):
            saved = (f"the last checkpoint {os.fspath(self.checkpoint)!r} is intact" if self.checkpoint
                     else "no checkpoint was written")
            raise FloatingPointError(f"loss is {loss} at iteration {self.iteration + 1} (epoch {self.epoch + 1}); "
                                     f"parameters were not updated and {saved}")
        for key, w in list(self.model.params.items()):
            self.model.params[key], self.optim_configs[key] = self.update_rule(
                w, grads[key], self.optim_configs[key])
        if self.max_norm is not None:
            for key, axes in self.model.incoming_axes.items():
                self.model.params[key] = _clip_norms(self.model.params[key], self.max_norm, axes)
        self.loss_history.append(float(loss))
        self.iteration += 1

    def _gradients(self, indices, position, offset):
        """Loss and gradients of model.loss on the training examples `indices`, at `position` in the
        epoch's order and `offset` in their batch: the keys of their augmentation and dropout draws."""
        X = self.X_train[indices]
        if self.augment is not None:
            X = self.augment(X, KeyedRows([self._key, self.epoch], position))
        with Dropout.keyed(self.iteration, offset):
            loss, grads = self.model.loss(X, self.y_train[indices])
        missing = set(self.model.params) - set(grads)
        if missing:
            raise KeyError(f"model.loss returned no gradient for {sorted(missing)}")
        return loss, grads

    def _summed_gradients(self, indices, position, offset, batch_size):
        """This rank's loss and gradients (see _gradients), weighted by its share of the batch and summed
        over the ranks in one flat buffer: params in their dict order, then the loss."""
        params = self.model.params
        sizes = [value.size for value in params.values()]
        bounds = np.cumsum([0, *sizes]).tolist()
        buffer = np.zeros(bounds[-1] + 1, dtype=np.result_type(*params.values()))
        if len(indices):
            loss, grads = self._gradients(indices, position, offset)
            share = len(indices) / batch_size
            for key, start, stop in zip(params, bounds, bounds[1:]):
                np.multiply(np.reshape(grads[key], -1), share, out=buffer[start:stop])
            buffer[-1] = loss * share
        elif self.sync_batchnorm:  # join the batchnorm layers' sums: a stand-in example, which adds zeros
            self._idle = True
            try:
                self._gradients(np.arange(1), position, offset)
            finally:
                self._idle = False
        self._parallel.sum(buffer)
        return float(buffer[-1]), {key: buffer[start:stop].reshape(params[key].shape)
                                   for key, start, stop in zip(params, bounds, bounds[1:])}

    def _batchnorm_sum(self, array):
        """array summed over the ranks, for the synchronized batchnorm layers; an idle rank adds zeros."""
        return self._parallel.sum(np.zeros_like(array) if self._idle else array)

    def _end_epoch(self):
        if self._parallel is not None and not self.sync_batchnorm:  # each rank's running statistics -> their mean
            self._parallel.average(_buffers(self.model))
        self.train_acc_history.append(self.check_accuracy(self.X_train, self.y_train, self.num_train_samples))
        if self.X_val is not None:
            val_acc = self.check_accuracy(self.X_val, self.y_val, self.num_val_samples)
            self.val_acc_history.append(val_acc)
            if self.best_val_acc is None or val_acc > self.best_val_acc:
                self.best_val_acc, self._bad_epochs = val_acc, 0
                self.best_params = _copies(self.model.params)
                self._best_buffers = _copies(_buffers(self.model))
            else:
                self._bad_epochs += 1
        self.epoch += 1

    def check_accuracy(self, X, y, num_samples=None):
        """Accuracy of argmax(model.loss(X)) in eval mode against y, on num_samples random samples (None: all).

        Under MPI each rank scores its slice and the counts of right answers are summed.
        """
        self._set_mode("eval")
        if num_samples is not None and len(X) > num_samples:
            chosen = self.rng.choice(len(X), num_samples, replace=False)
            X, y = X[chosen], y[chosen]
        start, stop = (0, len(X)) if self._parallel is None else self._parallel.span(len(X))
        right = sum(int(np.sum(np.argmax(self.model.loss(X[i:min(i + self.batch_size, stop)]), axis=1)
                               == y[i:min(i + self.batch_size, stop)]))
                    for i in range(start, stop, self.batch_size))
        if self._parallel is not None:
            right = int(self._parallel.count([right])[0])
        return right / len(X)

    def _out_of_patience(self):
        return self.patience is not None and self._bad_epochs >= self.patience

    def _set_mode(self, mode):
        if callable(getattr(self.model, "train", None)) and callable(getattr(self.model, "eval", None)):
            getattr(self.model, mode)()

    # ------------------------------------------------------------------ learning rate

    def _check_schedule(self):
        if self.schedule is not None and self.schedule not in SCHEDULES and not callable(self.schedule):
            raise ValueError(f"schedule must be None, a callable or one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "step":
            _positive_int(self.step_size, "step_size")
        if self._lr_is_scheduled() and self._base_lr is None:
            raise ValueError("lr_decay, schedule and warmup_steps need optim_config['learning_rate'] "
                             "for this update rule")

    def learning_rate_factor(self, epoch):
        """lr_decay**epoch times the schedule's factor for epoch (counted from 0)."""
        factor = self.lr_decay**epoch
        if self.schedule == "step":
            return factor * self.gamma ** (epoch // self.step_size)
        if self.schedule == "cosine":
            return factor * (1 + math.cos(math.pi * epoch / self.num_epochs)) / 2
        return factor * (self.schedule(epoch) if callable(self.schedule) else 1.0)

    def warmup_factor(self, iteration):
        """The warm-up's factor of update `iteration` (counted from 0): 1 once warm-up is over."""
        return min(1.0, (iteration + 1) / self.warmup_steps) if self.warmup_steps else 1.0

    def _lr_is_scheduled(self):
        return self.lr_decay != 1.0 or self.schedule is not None or self.warmup_steps > 0

    def _set_learning_rate(self):
        if self._lr_is_scheduled():
            rate = self._base_lr * self.learning_rate_factor(self.epoch) * self.warmup_factor(self.iteration)
            for config in self.optim_configs.values():
                config["learning_rate"] = rate

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, path=None):
        """Write params, buffers, optimiser state, RNG state, epoch, histories and the best
        params to path (default: the checkpoint option) atomically; no-op without a path and
        on every rank but 0. The state is global (no rank or rank count in it): any number
        of ranks can resume from it."""
        path = path or self.checkpoint
        if path is None or self.rank != 0:
            return
        arrays = {**prefixed("params", self.model.params), **prefixed("buffers", _buffers(self.model)),
                  **prefixed("best_params", self.best_params), **prefixed("best_buffers", self._best_buffers),
                  "history/loss": np.array(self.loss_history, dtype=np.float64),
                  "history/train_acc": np.array(self.train_acc_history, dtype=np.float64),
                  "history/val_acc": np.array(self.val_acc_history, dtype=np.float64)}
        optim_state = {}
        for key, config in self.optim_configs.items():
            arrays.update(prefixed(f"optim/{key}", {k: v for k, v in config.items() if isinstance(v, np.ndarray)}))
            optim_state[key] = {k: v for k, v in config.items() if not isinstance(v, np.ndarray)}
        state = {"format": CHECKPOINT_FORMAT, "version": 1, "epoch": self.epoch, "iteration": self.iteration,
                 "bad_epochs": self._bad_epochs, "best_val_acc": self.best_val_acc,
                 "rng": self.rng.bit_generator.state, "optim": optim_state,
                 "batch_size": self.batch_size, "num_train": len(self.X_train), "max_norm": self.max_norm,
                 "warmup_steps": self.warmup_steps, "key": str(self._key)}
        write_npz(path, arrays, "state", state)

    def _load_checkpoint(self, path):
        """Restore the state save_checkpoint wrote to path; the model changes only on success.

        Raises
        ------
        OSError
            The file cannot be opened.
        CheckpointError
            (A ValueError.) The file is damaged, not a checkpoint, or was written by a run
            with other data, options or model.
        """
        where = f"checkpoint {os.fspath(path)}"
        state, arrays = read_npz(path, "state", CHECKPOINT_FORMAT, CheckpointError)
        for name, value in [("batch_size", self.batch_size), ("num_train", len(self.X_train)),
                            ("max_norm", self.max_norm), ("warmup_steps", self.warmup_steps)]:
            if state.get(name) != value:
                raise CheckpointError(f"{where} was written with {name} {state.get(name)}, "
                                      f"this run has {value}; resuming needs the same data and options")
        try:
            self._restore(state, arrays)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(f"{where}: damaged training state ({type(error).__name__}: {error})") from error
        assign_arrays(self.model.params, unprefixed("params", arrays), f"{os.fspath(path)}: checkpoint parameters",
                      CheckpointError)
        assign_arrays(_buffers(self.model), unprefixed("buffers", arrays), f"{os.fspath(path)}: checkpoint buffers",
                      CheckpointError)

    def _restore(self, state, arrays):
        """The trainer's own state (all but the model's arrays) from a checkpoint, checked."""
        self.optim_configs = {key: {**scalars, **unprefixed(f"optim/{key}", arrays)}
                              for key, scalars in state["optim"].items()}
        self.best_params = unprefixed("best_params", arrays)
        self._best_buffers = unprefixed("best_buffers", arrays)
        self.loss_history, self.train_acc_history, self.val_acc_history = (
            arrays[f"history/{name}"].astype(np.float64, casting="same_kind").reshape(-1).tolist()
            for name in ("loss", "train_acc", "val_acc"))
        self.rng.bit_generator.state = state["rng"]
        self._key = int(state.get("key", self._key))
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self._bad_epochs, self.best_val_acc = state["bad_epochs"], state["best_val_acc"]
        counters = (self.epoch, self.iteration, self._bad_epochs)
        scalars = [value for config in self.optim_configs.values() for value in config.values()
                   if not isinstance(value, np.ndarray)]
        if (not all(type(count) is int and count >= 0 for count in counters)
                or not all(type(value) in (int, float) for value in scalars)
                or sorted(self.optim_configs) != sorted(self.model.params)
                or not (self.best_val_acc is None or type(self.best_val_acc) in (int, float))):
            raise ValueError("counters, optimiser settings or best accuracy of the wrong type, "
                             "or optimiser state for other parameters")

def _split_data(data):
    """(X_train, y_train, X_val, y_val) from the data dict, validation None when absent."""
    missing = {"X_train", "y_train"} - set(data)
    if missing:
        raise KeyError(f"data must have X_train and y_train (and optionally X_val, y_val); "
                       f"missing {sorted(missing)}")
    if ("X_val" in data) != ("y_val" in data):
        raise KeyError("data must have both X_val and y_val, or neither")
    val = _checked(data, "X_val", "y_val") if "X_val" in data else (None, None)
    return (*_checked(data, "X_train", "y_train"), *val)


def _checked(data, x_name, y_name):
    """data[x_name], data[y_name] as arrays, after checking y holds one int label per sample."""
    X, y = np.asarray(data[x_name]), np.asarray(data[y_name])
    if y.ndim != 1 or len(X) != len(y) or len(y) == 0:
        raise ValueError(f"{y_name} must have shape (N,) with N = len({x_name}) >= 1; got {x_name} "
                         f"{X.shape}, {y_name} {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{y_name} must hold integer class labels, got {y.dtype}")
    return X, y


def _positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _max_norm(value, model):
    """value as a float > 0 (or None), after checking the model says which weights it bounds."""
    if value is None:
        return None
    value = check_real(value, "max_norm", "None or a finite number > 0", lambda c: c > 0)
    if not isinstance(getattr(model, "incoming_axes", None), dict):
        raise TypeError(f"max_norm needs a model with incoming_axes ({{param key: axes of a unit's incoming "
                        f"weights}}); {type(model).__name__} has none")
    return value


def _clip_norms(weight, max_norm, axes):
    """weight with each unit's incoming vector (its entries along `axes`) rescaled to norm at most max_norm.

    Vectors within max_norm are multiplied by exactly 1, so they stay as they are, bit for bit.
    """
    norms = np.sqrt(np.sum(weight * weight, axis=axes, keepdims=True))
    return weight * (max_norm / np.maximum(norms, max_norm))


def _buffers(model):
    return getattr(model, "buffers", {})


def _copies(arrays):
    return {key: np.array(value, copy=True) for key, value in arrays.items()}
