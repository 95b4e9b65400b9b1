import math
import sys

import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit import optim
from cnnkit.models import FullyConnectedNet
from cnnkit.trainer import Trainer


class Linear:
    """A course-style model: params {"W": (D, C)}, scores X @ W, softmax loss.

    Records the first feature of every training batch and can return a NaN loss at
    training call `bad_call` (counted from 1).
    """

    def __init__(self, num_features=3, num_classes=2, bad_call=None, bad_value=np.nan):
        self.params = {"W": np.zeros((num_features, num_classes))}
        self.seen, self.bad_call, self.bad_value = [], bad_call, bad_value

    def loss(self, X, y=None):
        scores = X @ self.params["W"]
        if y is None:
            return scores
        self.seen.append(X[:, 0].copy())
        loss, dscores = F.softmax_loss(scores, y)
        return self.bad_value if len(self.seen) == self.bad_call else loss, {"W": X.T @ dscores}


class ModalLinear(Linear):
    """Linear with train()/eval(), recording the mode of every loss call."""

    mode = "train"

    def train(self):
        self.mode = "train"

    def eval(self):
        self.mode = "eval"

    def loss(self, X, y=None):
        self.calls = getattr(self, "calls", []) + [(self.mode, y is not None)]
        return super().loss(X, y)


def numbered(n, num_features=3):
    """Samples whose first feature is their index, with labels 0, 1, 0, 1, ..."""
    X = np.zeros((n, num_features))
    X[:, 0] = np.arange(n)
    return {"X_train": X, "y_train": np.arange(n) % 2}


def blobs(rng, n=100, num_features=6, num_classes=3):
    y = rng.integers(0, num_classes, n)
    X = 3 * np.eye(num_classes, num_features)[y] + 0.7 * rng.standard_normal((n, num_features))
    X = X.astype(np.float32)
    return {"X_train": X[:70], "y_train": y[:70], "X_val": X[70:], "y_val": y[70:]}


def test_each_epoch_visits_every_sample_once_in_a_new_seeded_order():
    model = Linear()
    trainer = Trainer(model, numbered(10), batch_size=4, num_epochs=3, seed=1, verbose=False).train()
    assert [len(batch) for batch in model.seen] == [4, 4, 2] * 3
    epochs = [np.concatenate(model.seen[i:i + 3]) for i in (0, 3, 6)]
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3
    again = Linear()
    Trainer(again, numbered(10), batch_size=4, num_epochs=3, seed=1, verbose=False).train()
    assert all(np.array_equal(a, b) for a, b in zip(model.seen, again.seen))
    assert len(trainer.loss_history) == trainer.iteration == 9 and len(trainer.train_acc_history) == 3
    assert trainer.val_acc_history == [] and trainer.best_val_acc is None


def recorded_rates(**options):
    rates = []

    def rule(w, dw, config):
        rates.append(config["learning_rate"])
        return optim.sgd(w, dw, config)

    Trainer(Linear(), numbered(4), update_rule=rule, optim_config={"learning_rate": 0.2}, batch_size=4,
            num_epochs=4, verbose=False, **options).train()
    return rates


@pytest.mark.parametrize("options, factors", [
    ({}, [1, 1, 1, 1]),
    ({"lr_decay": 0.5}, [1, 0.5, 0.25, 0.125]),
    ({"schedule": "step", "step_size": 2, "gamma": 0.1}, [1, 1, 0.1, 0.1]),
    ({"schedule": "cosine"}, [1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]),
    ({"schedule": lambda epoch: 1 / (epoch + 1), "lr_decay": 0.5}, [1, 0.25, 1 / 12, 1 / 32]),
], ids=["constant", "decay", "step", "cosine", "callable"])
def test_learning_rate_per_epoch(options, factors):
    assert recorded_rates(**options) == pytest.approx([0.2 * f for f in factors], rel=1e-12)


@pytest.mark.parametrize("warmup_steps, factors", [
    (3, [1 / 3, 2 / 3, 1, 1, 0.5, 0.5, 0.5, 0.5]),
    (6, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 0.5 * 5 / 6, 0.5, 0.5, 0.5]),
], ids=["within-an-epoch", "across-epochs"])
def test_linear_warmup_per_update_then_the_schedule(warmup_steps, factors):
    rates = []

    def rule(w, dw, config):
        rates.append(config["learning_rate"])
        return optim.sgd(w, dw, config)

    Trainer(Linear(), numbered(8), update_rule=rule, optim_config={"learning_rate": 0.2}, schedule="step",
            step_size=1, gamma=0.5, warmup_steps=warmup_steps, batch_size=2, num_epochs=2, verbose=False).train()
    assert rates == pytest.approx([0.2 * f for f in factors], rel=1e-12)


def test_default_learning_rate_of_a_named_rule_is_scheduled():
    trainer = Trainer(Linear(), numbered(4), update_rule="adam", lr_decay=0.5, batch_size=4, num_epochs=2,
                      verbose=False).train()
    assert trainer.optim_configs["W"]["learning_rate"] == 0.5e-3 and trainer.optim_configs["W"]["t"] == 2


def test_models_are_trained_in_train_mode_and_checked_in_eval_mode():
    model = ModalLinear()
    data = {**numbered(6), "X_val": numbered(4)["X_train"], "y_val": numbered(4)["y_train"]}
    Trainer(model, data, batch_size=3, num_epochs=2, verbose=False).train()
    assert {mode for mode, labelled in model.calls if labelled} == {"train"}
    assert {mode for mode, labelled in model.calls if not labelled} == {"eval"}
    assert model.mode == "eval"


def switch_weights(schedule):
    """Callback setting W to schedule[epoch] after the given epochs."""
    def callback(trainer):
        if trainer.epoch in schedule:
            trainer.model.params["W"] = schedule[trainer.epoch]
    return callback


def separable():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    y = np.array([0, 1, 0, 1])
    return {"X_train": X, "y_train": y, "X_val": X, "y_val": y}, np.eye(2)


def test_best_validation_parameters_are_restored():
    data, good = separable()
    model = Linear(num_features=2)
    trainer = Trainer(model, data, optim_config={"learning_rate": 0.0}, num_epochs=3, verbose=False,
                      callbacks=[switch_weights({1: good, 2: -good})]).train()
    assert trainer.val_acc_history == [0.5, 1.0, 0.0] and trainer.best_val_acc == 1.0
    np.testing.assert_array_equal(model.params["W"], good)


def test_early_stopping_after_patience_epochs_without_improvement():
    data, _ = separable()
    trainer = Trainer(Linear(num_features=2), data, optim_config={"learning_rate": 0.0}, num_epochs=10, patience=2,
                      verbose=False).train()
    assert trainer.epoch == 3 and trainer.val_acc_history == [0.5] * 3


def test_callbacks_run_after_every_epoch():
    epochs = []
    callbacks = [lambda trainer: epochs.append(trainer.epoch)]
    Trainer(Linear(), numbered(4), num_epochs=3, verbose=False, callbacks=callbacks).train()
    assert epochs == [1, 2, 3]


class Interrupted(Exception):
    pass


def interrupt_after(epoch):
    def callback(trainer):
        if trainer.epoch == epoch:
            raise Interrupted
    return callback


def test_resumed_run_ends_with_exactly_the_uninterrupted_parameters(tmp_path, rng):
    data = blobs(rng)

    def model():
        return FullyConnectedNet([12, 10], input_dim=6, num_classes=3, dropout=0.2, normalization="batchnorm",
                                 weight_scale=0.3, rng=1)

    def jitter(X, generator):  # generator.random's row i is example i's
        return X + (0.1 * generator.random(X.shape) - 0.05).astype(X.dtype)

    options = dict(update_rule="adam", optim_config={"learning_rate": 2e-2}, schedule="cosine", lr_decay=0.9,
                   batch_size=16, num_epochs=5, seed=3, num_train_samples=40, augment=jitter, verbose=False,
                   warmup_steps=11)  # the warm-up outlasts the interrupted run's 10 updates
    full = Trainer(model(), data, **options).train()
    path = tmp_path / "run.npz"
    with pytest.raises(Interrupted):
        Trainer(model(), data, checkpoint=path, callbacks=[interrupt_after(2)], **options).train()
    resumed = Trainer(model(), data, checkpoint=path, resume=path, **options)
    assert resumed.epoch == 2 and resumed.iteration == 10
    resumed.train()
    for views in ("params", "buffers"):
        a, b = getattr(full.model, views), getattr(resumed.model, views)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert resumed.loss_history == full.loss_history and resumed.val_acc_history == full.val_acc_history
    assert resumed.train_acc_history == full.train_acc_history and resumed.best_val_acc == full.best_val_acc
    assert full.train_acc_history[-1] > 0.9


def test_checkpoint_is_a_plain_npz_written_every_epoch(tmp_path):
    path = tmp_path / "run.npz"
    epochs = []

    def look(trainer):
        with np.load(path, allow_pickle=False) as file:
            epochs.append(file["history/train_acc"].size)
            assert np.array_equal(file["params/W"], trainer.model.params["W"])

    Trainer(Linear(), numbered(6), update_rule="sgd_momentum", num_epochs=2, checkpoint=path, verbose=False,
            callbacks=[look]).train()
    assert epochs == [1, 2] and [p.name for p in tmp_path.iterdir()] == ["run.npz"]
    with np.load(path, allow_pickle=False) as file:
        assert {"params/W", "optim/W/velocity", "history/loss", "state"} <= set(file.files)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_loss_stops_and_leaves_the_checkpoint_intact(bad_value, tmp_path):
    path = tmp_path / "run.npz"
    model = Linear(bad_call=5, bad_value=bad_value)
    trainer = Trainer(model, numbered(8), batch_size=4, num_epochs=4, checkpoint=path, verbose=False)
    with pytest.raises(FloatingPointError, match=rf"loss is {bad_value} at iteration 5 \(epoch 3\)"):
        trainer.train()
    assert trainer.iteration == 4
    with np.load(path, allow_pickle=False) as file:
        assert file["history/loss"].size == 4
        np.testing.assert_array_equal(file["params/W"], model.params["W"])
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_resume_refuses_a_different_setup(tmp_path):
    path = tmp_path / "run.npz"
    Trainer(Linear(), numbered(6), batch_size=3, num_epochs=1, checkpoint=path, verbose=False).train()
    with pytest.raises(ValueError, match="written with batch_size 3, this run has 2"):
        Trainer(Linear(), numbered(6), batch_size=2, resume=path, verbose=False)
    with pytest.raises(ValueError, match="written with warmup_steps 0, this run has 5"):
        Trainer(Linear(), numbered(6), batch_size=3, warmup_steps=5, resume=path, verbose=False)
    with pytest.raises(ValueError, match="checkpoint parameters 'W': expected float64 of shape \\(4, 2\\)"):
        Trainer(Linear(num_features=4), numbered(6, num_features=4), batch_size=3, resume=path, verbose=False)


def test_progress_bar_only_on_a_terminal_and_when_verbose(capsys, monkeypatch):
    Trainer(Linear(), numbered(4), num_epochs=1).train()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    Trainer(Linear(), numbered(4), num_epochs=1, verbose=False).train()
    assert capsys.readouterr().err == ""
    Trainer(Linear(), numbered(4), num_epochs=1).train()
    assert "1/1" in capsys.readouterr().err


@pytest.mark.parametrize("data, options, error, message", [
    ({"X_train": np.zeros((3, 2))}, {}, KeyError, "missing \\['y_train'\\]"),
    ({**numbered(3), "X_val": np.zeros((2, 3))}, {}, KeyError, "both X_val and y_val"),
    ({"X_train": np.zeros((3, 2)), "y_train": np.zeros(2, int)}, {}, ValueError, "y_train must have shape \\(N,\\)"),
    ({"X_train": np.zeros((3, 2)), "y_train": np.zeros(3)}, {}, TypeError, "integer class labels, got float64"),
    (numbered(3), {"patience": 2}, ValueError, "patience .* needs validation data"),
    (numbered(3), {"update_rule": "adagrad"}, ValueError, "unknown update rule"),
    (numbered(3), {"schedule": "linear"}, ValueError, "schedule must be None, a callable or one of"),
    (numbered(3), {"update_rule": lambda w, dw, c: (w, c), "lr_decay": 0.5}, ValueError, "need optim_config"),
    (numbered(3), {"batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
    (numbered(3), {"warmup_steps": -1}, ValueError, "warmup_steps must be an int >= 0"),
    (numbered(3), {"update_rule": lambda w, dw, c: (w, c), "warmup_steps": 2}, ValueError, "need optim_config"),
])
def test_bad_data_and_options(data, options, error, message):
    with pytest.raises(error, match=message):
        Trainer(Linear(), data, **options)
