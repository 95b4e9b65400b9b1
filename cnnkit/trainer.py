"""Trainer: minibatch training of any model with `params` and `loss`, with checkpoints."""
import math
import os

import numpy as np
from tqdm.auto import tqdm

from cnnkit._backend import kernel_runtime
from cnnkit._validation import check_real
from cnnkit.errors import CheckpointError
from cnnkit.models.io import assign_arrays, prefixed, read_npz, unprefixed, write_npz
from cnnkit.optim import get_update_rule

CHECKPOINT_FORMAT = "cnnkit-checkpoint"
SCHEDULES = ("step", "cosine")


class Trainer:
    """Train a classification model by minibatch gradient descent.

    Each epoch visits the training set once in a fresh random order (without
    replacement; the last batch may be smaller), then measures training and validation
    accuracy. All randomness (order, accuracy subsamples, augmentation) comes from one
    generator seeded by `seed`, whose state is saved in checkpoints, so a resumed run
    ends with exactly the parameters of an uninterrupted one.

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
        ``augment(X_batch, rng) -> X_batch``, applied to each training minibatch.
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
                 verbose=True, max_norm=None, warmup_steps=0):
        self.model = model
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
        self.optim_configs = {key: dict(optim_config) for key in model.params}
        self.epoch = self.iteration = self._bad_epochs = 0
        self.loss_history, self.train_acc_history, self.val_acc_history = [], [], []
        self.best_val_acc, self.best_params, self._best_buffers = None, {}, {}
        if resume is not None:
            self._load_checkpoint(resume)

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
        with kernel_runtime(), tqdm(total=self.num_epochs * batches, initial=self.iteration, disable=quiet,
                                    unit="batch") as bar:
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
            batch = order[start:start + self.batch_size]
            self._step(self.X_train[batch], self.y_train[batch])
            bar.update()

    def _step(self, X, y):
        if self.augment is not None:
            X = self.augment(X, self.rng)
        if self.iteration <= self.warmup_steps:
            self._set_learning_rate()
        loss, grads = self.model.loss(X, y)
        if not np.isfinite(loss):
            saved = (f"the last checkpoint {os.fspath(self.checkpoint)!r} is intact" if self.checkpoint
                     else "no checkpoint was written")
            raise FloatingPointError(f"loss is {loss} at iteration {self.iteration + 1} (epoch {self.epoch + 1}); "
                                     f"parameters were not updated and {saved}")
        missing = set(self.model.params) - set(grads)
        if missing:
            raise KeyError(f"model.loss returned no gradient for {sorted(missing)}")
        for key, w in list(self.model.params.items()):
            self.model.params[key], self.optim_configs[key] = self.update_rule(
                w, grads[key], self.optim_configs[key])
        if self.max_norm is not None:
            for key, axes in self.model.incoming_axes.items():
                self.model.params[key] = _clip_norms(self.model.params[key], self.max_norm, axes)
        self.loss_history.append(float(loss))
        self.iteration += 1

    def _end_epoch(self):
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
        """Accuracy of argmax(model.loss(X)) in eval mode against y, on num_samples random samples (None: all)."""
        self._set_mode("eval")
        if num_samples is not None and len(X) > num_samples:
            chosen = self.rng.choice(len(X), num_samples, replace=False)
            X, y = X[chosen], y[chosen]
        predicted = [np.argmax(self.model.loss(X[i:i + self.batch_size]), axis=1)
                     for i in range(0, len(X), self.batch_size)]
        return float(np.mean(np.concatenate(predicted) == y))

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
        params to path (default: the checkpoint option) atomically; no-op without a path."""
        path = path or self.checkpoint
        if path is None:
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
                 "warmup_steps": self.warmup_steps}
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
