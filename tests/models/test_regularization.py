"""L1 and elastic-net penalties on every model, and the Trainer's max-norm constraint."""
import numpy as np
import pytest

import cnnkit
from cnnkit import layers as nn
from cnnkit.cli import main
from cnnkit.gradcheck import check_loss_gradients
from cnnkit.models import FullyConnectedNet, LinearSVM, Sequential, Softmax, ThreeLayerConvNet, TwoLayerNet, load
from cnnkit.trainer import Trainer


def sequential(**options):
    return Sequential([
        nn.Conv2d(2, 3, 3, padding=1, bias=False, dtype=np.float64, rng=0), nn.BatchNorm2d(3, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Maxout(27, 5, pieces=3, dtype=np.float64, rng=1), nn.Dropout(0.2, rng=2),
        nn.Linear(5, 4, dtype=np.float64, rng=3),
    ], input_shape=(2, 6, 6), **options)


NETWORKS = {
    "sequential": (sequential, (2, 6, 6)),
    "two-layer": (lambda **kw: TwoLayerNet(8, 7, 4, weight_scale=0.5, dtype=np.float64, rng=0, **kw), (8,)),
    "fc-bn-dropout": (lambda **kw: FullyConnectedNet([6, 5], 8, 4, dropout=0.25, normalization="batchnorm",
                                                     weight_scale=0.5, dtype=np.float64, rng=0, **kw), (8,)),
    "three-layer-conv": (lambda **kw: ThreeLayerConvNet((2, 6, 6), num_filters=3, filter_size=3, hidden_dim=5,
                                                        num_classes=4, weight_scale=0.3, dtype=np.float64, rng=0,
                                                        **kw), (2, 6, 6)),
}
CLASSIFIERS = {"svm": LinearSVM, "softmax": Softmax}
PENALTIES = pytest.mark.parametrize("reg, l1", [(0.0, 0.3), (0.2, 0.3)], ids=["l1", "elastic-net"])
# The weights each penalty applies to (model keys): Linear, Maxout and Conv2d weights, not biases or batchnorm.
WEIGHTS = {"sequential": ["0.weight", "5.weight", "7.weight"], "two-layer": ["W1", "W2"],
           "fc-bn-dropout": ["W1", "W2", "W3"], "three-layer-conv": ["W1", "W2", "W3"]}


def frozen_loss(model, X, y):
    """model.loss(X, y) with the buffers restored first: the same dropout mask at every call."""
    snapshot = {key: value.copy() for key, value in model.buffers.items()}

    def loss():
        model.buffers.update({key: value.copy() for key, value in snapshot.items()})
        return model.loss(X, y)

    return loss


def network_batch(name, rng, n=5):
    return rng.standard_normal((n, *NETWORKS[name][1])), rng.integers(0, 4, n)


def fitted(kind, rng, **options):
    """A classifier of `kind` with random float64 weights for 6 features and 4 classes."""
    classifier = CLASSIFIERS[kind](**options).init_params(6, 4, seed=0)
    classifier.params["W"] *= 300  # weights of order 0.3: no numerical probe crosses 0
    return classifier


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
@PENALTIES
def test_network_gradients_match_numerical(name, reg, l1, rng):
    cnnkit.set_num_threads(1)
    model = NETWORKS[name][0](reg=reg, l1=l1)
    report = check_loss_gradients(frozen_loss(model, *network_batch(name, rng)), model.params)
    assert report.worst < 1e-6, report


@pytest.mark.parametrize("kind", CLASSIFIERS)
@PENALTIES
def test_classifier_gradients_match_numerical(kind, reg, l1, rng):
    classifier = fitted(kind, rng, reg=reg, l1=l1)
    X, y = rng.standard_normal((7, 6)), rng.integers(0, 4, 7)
    report = check_loss_gradients(lambda: classifier.loss(X, y), classifier.params)
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("name", NETWORKS)
def test_network_penalties_cover_exactly_the_weights(name, rng):
    X, y = network_batch(name, rng)
    losses = {(reg, l1): frozen_loss(NETWORKS[name][0](reg=reg, l1=l1), X, y)()[0]
              for reg, l1 in [(0, 0), (0, 0.3), (0.2, 0), (0.2, 0.3)]}
    model = NETWORKS[name][0]()
    assert sorted(model.incoming_axes) == sorted(WEIGHTS[name])
    weights = [model.params[key] for key in WEIGHTS[name]]
    l1_norm, squares = sum(np.abs(w).sum() for w in weights), sum((w * w).sum() for w in weights)
    np.testing.assert_allclose(losses[0, 0.3] - losses[0, 0], 0.3 * l1_norm, rtol=1e-10)
    np.testing.assert_allclose(losses[0.2, 0] - losses[0, 0], 0.5 * 0.2 * squares, rtol=1e-10)
    np.testing.assert_allclose(losses[0.2, 0.3] - losses[0, 0], 0.3 * l1_norm + 0.1 * squares, rtol=1e-10)


@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_classifier_penalty_is_reg_squares_plus_l1_norm(kind, rng):
    X, y = rng.standard_normal((7, 6)), rng.integers(0, 4, 7)
    plain, both = fitted(kind, rng, reg=0.0), fitted(kind, rng, reg=0.2, l1=0.3)
    W = plain.params["W"]
    np.testing.assert_allclose(both.loss(X, y)[0] - plain.loss(X, y)[0],
                               0.2 * np.sum(W * W) + 0.3 * np.sum(np.abs(W)), rtol=1e-10)


def test_l1_subgradient_is_zero_at_exactly_zero(rng):
    """Where a weight is exactly 0, the L1 term adds nothing to its gradient (sign(0) = 0)."""
    X, y = network_batch("two-layer", rng)
    plain, sparse = (NETWORKS["two-layer"][0](l1=l1) for l1 in (0.0, 0.3))
    for model in (plain, sparse):
        model.params["W1"][0, :3] = 0.0
    expected = plain.loss(X, y)[1]["W1"]
    got = sparse.loss(X, y)[1]["W1"]
    np.testing.assert_array_equal(got[0, :3], expected[0, :3])
    np.testing.assert_allclose(got[1:], expected[1:] + 0.3 * np.sign(plain.params["W1"][1:]), rtol=1e-12)
    classifier = fitted("softmax", rng, l1=0.3)
    classifier.params["W"][2] = 0.0
    without = fitted("softmax", rng)
    without.params["W"][2] = 0.0
    X = rng.standard_normal((5, 6))
    y = rng.integers(0, 4, 5)
    np.testing.assert_array_equal(classifier.loss(X, y)[1]["W"][2], without.loss(X, y)[1]["W"][2])


@pytest.mark.parametrize("name", NETWORKS)
def test_saved_models_keep_l1(name, tmp_path):
    model = NETWORKS[name][0](reg=0.2, l1=0.03)
    model.save(tmp_path / "model.npz")
    loaded = load(tmp_path / "model.npz")
    assert (loaded.reg, loaded.l1) == (0.2, 0.03) and loaded.config() == model.config()
    assert "l1 0.03" in loaded.summary()


@pytest.mark.parametrize("make", [
    lambda l1: Sequential([nn.Linear(2, 2)], l1=l1), lambda l1: TwoLayerNet(4, 3, 2, l1=l1),
    lambda l1: LinearSVM(l1=l1), lambda l1: Softmax().fit(np.zeros((2, 3)), np.array([0, 1]), l1=l1),
])
@pytest.mark.parametrize("l1", [-0.1, float("nan"), "0.1"])
def test_bad_l1_is_refused(make, l1):
    with pytest.raises(ValueError, match="l1 must be a finite number >= 0"):
        make(l1)


# ---------------------------------------------------------------- max-norm


def keep(w, dw, config):
    """An update rule that changes nothing, so only the max-norm constraint acts."""
    return w, config


def column_norms(weight, axes):
    return np.sqrt(np.sum(weight * weight, axis=axes))


def blobs(rng, shape, n=60, classes=4):
    y = rng.integers(0, classes, n)
    X = rng.standard_normal((n, *shape)) + np.eye(classes, int(np.prod(shape)))[y].reshape(n, *shape)
    return {"X_train": X, "y_train": y}


@pytest.mark.parametrize("name", NETWORKS)
def test_max_norm_bounds_every_unit_after_training_steps(name, rng):
    cnnkit.set_num_threads(1)
    model = NETWORKS[name][0]()
    Trainer(model, blobs(rng, NETWORKS[name][1]), update_rule="adam", optim_config={"learning_rate": 0.05},
            batch_size=10, num_epochs=2, max_norm=0.5, seed=0, verbose=False).train()
    for key, axes in model.incoming_axes.items():
        assert column_norms(model.params[key], axes).max() <= 0.5 * (1 + 1e-12), key


def test_max_norm_rescales_large_units_and_leaves_smaller_ones_untouched(rng):
    """A Linear column, a Conv2d filter and a Maxout (unit, piece) column each count as one unit."""
    model = sequential()
    for key, axes in model.incoming_axes.items():  # unit norms on both sides of 1
        units = np.delete(model.params[key].shape, axes)
        scale = np.expand_dims(np.linspace(0.1, 3.0, units.prod()).reshape(units), axes) / column_norms(
            model.params[key], axes).mean()
        model.params[key] *= scale
    before = {key: model.params[key].copy() for key in model.params}
    Trainer(model, blobs(rng, (2, 6, 6), n=5), update_rule=keep, num_epochs=1, max_norm=1.0,
            verbose=False).train()
    for key, axes in model.incoming_axes.items():
        old, new = column_norms(before[key], axes), column_norms(model.params[key], axes)
        assert (old < 1).any() and (old > 1).any(), key  # both kinds occur in each weight
        small = np.expand_dims(old <= 1.0, axes)
        np.testing.assert_array_equal(np.where(small, model.params[key], 0), np.where(small, before[key], 0))
        np.testing.assert_allclose(new[old > 1], 1.0, rtol=1e-12)
        np.testing.assert_allclose(model.params[key], before[key] * np.expand_dims(np.minimum(1, 1 / old), axes),
                                   rtol=1e-12)
    for key in set(model.params) - set(model.incoming_axes):  # biases and batchnorm
        np.testing.assert_array_equal(model.params[key], before[key])


@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_max_norm_applies_to_the_linear_classifiers(kind, rng):
    data = blobs(rng, (6,))
    classifier = CLASSIFIERS[kind](weight_scale=1.0).fit(data["X_train"], data["y_train"], learning_rate=0.1,
                                                         num_epochs=2, seed=0, max_norm=0.2)
    assert column_norms(classifier.params["W"], 0).max() <= 0.2 * (1 + 1e-12)


def test_max_norm_in_float32_bounds_to_rounding(rng):
    model = TwoLayerNet(8, 30, 4, weight_scale=1.0, rng=0)
    Trainer(model, {k: v.astype(np.float32) if k[0] == "X" else v for k, v in blobs(rng, (8,)).items()},
            update_rule="sgd", num_epochs=1, batch_size=20, max_norm=0.7, verbose=False).train()
    for key, axes in model.incoming_axes.items():
        assert model.params[key].dtype == np.float32
        assert column_norms(model.params[key].astype(np.float64), axes).max() <= 0.7 * (1 + 1e-6)


def test_resumed_max_norm_run_matches_the_uninterrupted_one_bit_for_bit(tmp_path, rng):
    data = blobs(rng, (8,))
    options = dict(update_rule="adam", optim_config={"learning_rate": 0.05}, batch_size=16, num_epochs=4, seed=3,
                   max_norm=0.6, verbose=False)
    full = Trainer(NETWORKS["fc-bn-dropout"][0](l1=0.01), data, **options).train()
    path = tmp_path / "run.npz"
    Trainer(NETWORKS["fc-bn-dropout"][0](l1=0.01), data, checkpoint=path, **{**options, "num_epochs": 2}).train()
    resumed = Trainer(NETWORKS["fc-bn-dropout"][0](l1=0.01), data, resume=path, **options).train()
    assert all(np.array_equal(full.model.params[k], resumed.model.params[k]) for k in full.model.params)
    assert resumed.loss_history == full.loss_history
    with pytest.raises(ValueError, match=r"written with max_norm 0\.6, this run has None"):
        Trainer(NETWORKS["fc-bn-dropout"][0](), data, resume=path, **{**options, "max_norm": None})


class Bare:
    """A model with params and loss but no incoming_axes."""

    def __init__(self):
        self.params = {"W": np.zeros((4, 2))}

    def loss(self, X, y=None):
        return X @ self.params["W"]


@pytest.mark.parametrize("model, max_norm, error, message", [
    (TwoLayerNet(4, 3, 2), 0, ValueError, "max_norm must be None or a finite number > 0, got 0"),
    (TwoLayerNet(4, 3, 2), -1.0, ValueError, "max_norm must be None or a finite number > 0"),
    (TwoLayerNet(4, 3, 2), float("inf"), ValueError, "max_norm must be None or a finite number > 0"),
    (TwoLayerNet(4, 3, 2), "3", ValueError, "max_norm must be None or a finite number > 0"),
    (Bare(), 3.0, TypeError, "max_norm needs a model with incoming_axes"),
])
def test_bad_max_norm_is_refused(model, max_norm, error, message):
    with pytest.raises(error, match=message):
        Trainer(model, {"X_train": np.zeros((2, 4)), "y_train": np.array([0, 1])}, max_norm=max_norm)


# ---------------------------------------------------------------- command line


@pytest.mark.slow
def test_train_command_takes_l1_and_max_norm(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--num-train", "300", "--num-val", "100", "--l1", "1e-4",
                 "--max-norm", "2", "--out", str(tmp_path)]) == 0
    model = load(tmp_path / "model.npz")
    assert model.l1 == 1e-4
    for key, axes in model.incoming_axes.items():
        assert column_norms(model.params[key].astype(np.float64), axes).max() <= 2 * (1 + 1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--l1", "-1"], "argument --l1: expected a number >= 0, got '-1'"),
    (["--l1", "nan"], "argument --l1: expected a number >= 0, got 'nan'"),
    (["--max-norm", "0"], "argument --max-norm: expected a number > 0, got '0'"),
    (["--max-norm", "big"], "argument --max-norm: expected a number > 0, got 'big'"),
])
def test_bad_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
