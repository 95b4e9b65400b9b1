"""KNearestNeighbor, LinearSVM, Softmax and cross_validate_k."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit.datasets import load_builtin
from cnnkit.gradcheck import check_loss_gradients
from cnnkit.models import classifiers
from cnnkit.models.classifiers import KNearestNeighbor, LinearSVM, Softmax, cross_validate_k


def blobs(rng, num_per_class=40, num_classes=3, shape=(2, 3), spread=0.5, dtype=np.float64):
    """Well-separated Gaussian blobs: samples (N, *shape), labels (N,), classes interleaved."""
    centres = 4 * rng.standard_normal((num_classes, *shape))
    y = np.tile(np.arange(num_classes), num_per_class)
    X = centres[y] + spread * rng.standard_normal((len(y), *shape))
    return X.astype(dtype), y


# --- kNN ----------------------------------------------------------------------------------

@pytest.mark.parametrize("distance, norm", [("l2", 2), ("l1", 1)])
def test_distances_match_a_loop(rng, dtype, distance, norm):
    X_train, X_test = rng.standard_normal((13, 2, 5)), rng.standard_normal((6, 2, 5))
    knn = KNearestNeighbor(distance=distance).fit(X_train.astype(dtype), np.arange(13))
    dists = knn.compute_distances(X_test.astype(dtype))
    expected = [[np.linalg.norm((a - b).ravel(), ord=norm) for b in X_train] for a in X_test]
    assert dists.dtype == dtype and dists.shape == (6, 13)
    np.testing.assert_allclose(dists, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_l1_blocks_cover_every_pair(rng, monkeypatch):
    """Blocks smaller than one test row still give the full distance matrix."""
    X_train, X_test = rng.standard_normal((9, 4)), rng.standard_normal((5, 4))
    full = KNearestNeighbor(distance="l1").fit(X_train, np.zeros(9, int)).compute_distances(X_test)
    monkeypatch.setattr(classifiers, "_BLOCK_ELEMENTS", 10)
    knn = KNearestNeighbor(k=2, distance="l1").fit(X_train, np.arange(9) % 3)
    np.testing.assert_array_equal(knn.compute_distances(X_test), full)
    np.testing.assert_array_equal(knn.predict(X_test), _brute_force_predict(X_train, np.arange(9) % 3, X_test, 2, 1))


def test_l2_distance_to_itself_is_zero_not_nan(rng):
    X = 1e3 * rng.standard_normal((20, 7))
    dists = KNearestNeighbor().fit(X, np.zeros(20, int)).compute_distances(X)
    assert np.all(dists >= 0) and np.allclose(np.diag(dists), 0, atol=1e-4)


def _brute_force_predict(X_train, y_train, X_test, k, norm):
    """The course's double loop: sort by distance (stable), count votes, smallest label on a tie."""
    predictions = []
    for x in X_test:
        dists = [np.linalg.norm((x - t).ravel(), ord=norm) for t in X_train]
        nearest = y_train[np.argsort(dists, kind="stable")[:k]]
        labels, counts = np.unique(nearest, return_counts=True)
        predictions.append(labels[np.argmax(counts)])
    return np.array(predictions)


@pytest.mark.parametrize("k", [1, 4, 7])
@pytest.mark.parametrize("distance, norm", [("l2", 2), ("l1", 1)])
def test_predict_matches_brute_force(rng, k, distance, norm):
    X_train, X_test = rng.standard_normal((30, 3)), rng.standard_normal((12, 3))
    y_train = rng.integers(0, 4, 30)
    knn = KNearestNeighbor(k=k, distance=distance).fit(X_train, y_train)
    np.testing.assert_array_equal(knn.predict(X_test), _brute_force_predict(X_train, y_train, X_test, k, norm))


def test_tie_between_labels_goes_to_the_smallest_label():
    X_train = np.array([[1.0], [-1.0], [2.0], [-2.0]])
    knn = KNearestNeighbor(k=2).fit(X_train, np.array([7, 3, 7, 3]))
    # each test point has one neighbour of each label among its 2 nearest
    np.testing.assert_array_equal(knn.predict(np.array([[0.0], [0.1], [-0.1]])), [3, 3, 3])
    assert knn.predict(np.array([[0.1]]), k=3)[0] == 7  # 1, -1, 2: label 7 wins two votes to one


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_tie_in_distance_goes_to_the_earlier_training_sample(rng, distance):
    radius = rng.integers(1, 3, 60)  # samples at distance 1 or 2 from the origin, shuffled
    X_train = radius[:, None] * np.concatenate([np.eye(30), -np.eye(30)])[rng.permutation(60)]
    y_train = rng.permutation(60)
    knn = KNearestNeighbor(distance=distance).fit(X_train, y_train)
    origin = np.zeros((1, 30))
    in_fit_order = np.concatenate([np.flatnonzero(radius == 1), np.flatnonzero(radius == 2)])
    np.testing.assert_array_equal(knn.nearest_labels(origin, 60), y_train[None, in_fit_order])
    assert knn.predict(origin)[0] == y_train[in_fit_order[0]]
    assert knn.predict(origin, k=5)[0] == y_train[in_fit_order[:5]].min()  # five labels, one vote each


def test_labels_keep_their_values_and_dtype(rng):
    X, y = blobs(rng, num_per_class=5)
    labels = np.array([-4, 10, 99], dtype=np.int16)[y]
    predicted = KNearestNeighbor().fit(X, labels).predict(X)
    assert predicted.dtype == np.int16
    np.testing.assert_array_equal(predicted, labels)


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_knn_separates_blobs(rng, distance):
    X, y = blobs(rng)
    X_test, y_test = blobs(np.random.default_rng(0), num_per_class=20)  # same centres
    knn = KNearestNeighbor(k=5, distance=distance).fit(X, y)
    assert knn.predict(X_test).shape == (60,)
    assert knn.score(X_test, y_test) > 0.95


def test_knn_accepts_integer_images(rng):
    X = rng.integers(0, 256, (20, 3, 4, 4), dtype=np.uint8)
    knn = KNearestNeighbor().fit(X, np.arange(20) % 2)
    dists = knn.compute_distances(X[:3])
    assert dists.dtype == np.float64  # no uint8 overflow in the squares
    np.testing.assert_allclose(dists[0, 1], np.linalg.norm(X[0].astype(float) - X[1]))


def test_cross_validation_picks_a_k_that_averages_out_label_noise():
    rng = np.random.default_rng(1)
    X, y = blobs(rng, num_per_class=30, spread=1.0)
    noisy = y.copy()
    flipped = rng.choice(len(y), size=len(y) // 5, replace=False)
    noisy[flipped] = (noisy[flipped] + 1) % 3
    result = cross_validate_k(X, noisy, ks=[1, 3, 5, 8, 12], num_folds=5, seed=0)
    assert set(result.accuracies) == {1, 3, 5, 8, 12}
    assert all(acc.shape == (5,) for acc in result.accuracies.values())
    assert result.best_k > 1
    assert result.accuracies[result.best_k].mean() > result.accuracies[1].mean()


def test_cross_validation_accuracies_match_explicit_folds(rng):
    X, y = blobs(rng, num_per_class=8, spread=3.0)
    result = cross_validate_k(X, y, ks=[3, 1], num_folds=4, distance="l1")
    folds = np.array_split(np.arange(len(y)), 4)
    for k in (1, 3):
        expected = []
        for held_out in folds:
            train = np.setdiff1d(np.arange(len(y)), held_out)
            knn = KNearestNeighbor(k=k, distance="l1").fit(X[train], y[train])
            expected.append(knn.score(X[held_out], y[held_out]))
        np.testing.assert_allclose(result.accuracies[k], expected)


def test_knn_errors_say_what_was_expected(rng):
    X, y = rng.standard_normal((5, 4)), np.arange(5)
    with pytest.raises(RuntimeError, match="not fitted"):
        KNearestNeighbor().predict(X)
    knn = KNearestNeighbor().fit(X, y)
    with pytest.raises(ValueError, match=r"3 features per sample.*fitted on 4"):
        knn.predict(X[:, :3])
    with pytest.raises(ValueError, match="k=6 is larger than the number of training samples"):
        knn.predict(X, k=6)
    with pytest.raises(ValueError, match="k must be a positive int"):
        KNearestNeighbor(k=0)
    with pytest.raises(ValueError, match="distance must be one of"):
        KNearestNeighbor(distance="cosine")
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        KNearestNeighbor().fit(X, y[:4])
    with pytest.raises(TypeError, match="integer class labels"):
        KNearestNeighbor().fit(X, y.astype(float))
    with pytest.raises(TypeError, match="float32 but the model was fitted on float64"):
        knn.predict(X.astype(np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        knn.predict(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="shape"):
        knn.predict(np.ones(4))
    with pytest.raises(ValueError, match="num_folds"):
        cross_validate_k(X, y, ks=[1], num_folds=1)


# --- LinearSVM and Softmax ----------------------------------------------------------------

def naive_svm_loss(scores, y):
    """The course's double loop over samples and classes."""
    total = 0.0
    for s, label in zip(scores, y):
        total += sum(max(0.0, s[j] - s[label] + 1) for j in range(len(s)) if j != label)
    return total / len(y)


def naive_softmax_loss(scores, y):
    return -np.mean([np.log(np.exp(s[label]) / np.exp(s).sum()) for s, label in zip(scores, y)])


LINEAR = [(LinearSVM, naive_svm_loss), (Softmax, naive_softmax_loss)]


def initialised(model_class, rng, num_features=7, num_classes=4, reg=0.3, dtype=np.float64):
    return model_class(reg=reg, weight_scale=0.5).init_params(num_features, num_classes, dtype, rng)


@pytest.mark.parametrize("model_class, naive_loss", LINEAR)
def test_linear_loss_is_data_loss_plus_l2_of_w(rng, model_class, naive_loss):
    model = initialised(model_class, rng)
    model.params["b"] = rng.standard_normal(4)
    X, y = rng.standard_normal((10, 7)), rng.integers(0, 4, 10)
    loss, _ = model.loss(X, y)
    scores = X @ model.params["W"] + model.params["b"]
    expected = naive_loss(scores, y) + 0.3 * np.sum(model.params["W"] ** 2)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(model.loss(X), scores, rtol=1e-12)


@pytest.mark.parametrize("model_class", [LinearSVM, Softmax])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_linear_gradients_match_numerical(rng, model_class, reg):
    model = initialised(model_class, rng, num_features=6, reg=reg)
    model.params["b"] = rng.standard_normal(4)
    X, y = rng.standard_normal((6, 2, 3, 1)), rng.integers(0, 4, 6)  # flattened to D = 6
    report = check_loss_gradients(lambda: model.loss(X, y), model.params)
    assert set(report.errors) == {"W", "b"}
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("model_class", [LinearSVM, Softmax])
def test_bias_is_not_regularised(rng, model_class):
    model = initialised(model_class, rng)
    X, y = rng.standard_normal((5, 7)), rng.integers(0, 4, 5)
    loss, grads = model.loss(X, y)
    model.reg = 0.0
    loss_free, grads_free = model.loss(X, y)
    np.testing.assert_allclose(loss - loss_free, 0.3 * np.sum(model.params["W"] ** 2), rtol=1e-12)
    np.testing.assert_array_equal(grads["b"], grads_free["b"])
    np.testing.assert_allclose(grads["W"] - grads_free["W"], 0.6 * model.params["W"], rtol=1e-10)


@pytest.mark.parametrize("model_class", [LinearSVM, Softmax])
def test_linear_models_separate_blobs(rng, dtype, model_class):
    X, y = blobs(rng, num_per_class=60, dtype=dtype)
    X_test, y_test = blobs(np.random.default_rng(0), num_per_class=20, dtype=dtype)  # same centres
    model = model_class().fit(X, y, learning_rate=1e-2, num_epochs=8, batch_size=20, seed=0)
    assert model.params["W"].dtype == dtype and model.params["b"].dtype == dtype
    assert model.loss(X_test).dtype == dtype
    assert len(model.loss_history) == 8 * 9 and model.loss_history[-1] < model.loss_history[0]
    assert model.predict(X_test).shape == (60,)
    assert model.score(X_test, y_test) > 0.95


@pytest.mark.parametrize("model_class", [LinearSVM, Softmax])
def test_fit_is_reproducible_and_keeps_the_best_validation_epoch(rng, model_class):
    X, y = blobs(rng, num_per_class=20, spread=4.0)
    X_val, y_val = blobs(np.random.default_rng(0), num_per_class=10, spread=4.0)
    options = dict(learning_rate=0.5, reg=1e-3, num_epochs=6, batch_size=10, seed=3, X_val=X_val, y_val=y_val)
    first, second = model_class().fit(X, y, **options), model_class().fit(X, y, **options)
    np.testing.assert_array_equal(first.params["W"], second.params["W"])
    assert first.reg == 1e-3 and len(first.val_acc_history) == 6
    assert first.val_acc_history[-1] < max(first.val_acc_history)  # this run's last epoch is not its best
    assert first.score(X_val, y_val) == max(first.val_acc_history)


def test_fit_passes_trainer_options(rng):
    X, y = blobs(rng, num_per_class=10)
    plain = Softmax().fit(X, y, num_epochs=2, seed=0)
    momentum = Softmax().fit(X, y, num_epochs=2, seed=0, update_rule="sgd_momentum")
    assert len(momentum.loss_history) == len(plain.loss_history) == 2
    assert momentum.loss_history[0] == plain.loss_history[0]  # same start, different steps
    assert not np.array_equal(momentum.params["W"], plain.params["W"])


def test_integer_images_train_in_float64(rng):
    X = rng.integers(0, 256, (30, 3, 2, 2), dtype=np.uint8)
    model = LinearSVM().fit(X, np.arange(30) % 3, learning_rate=1e-6, num_epochs=1)
    assert model.params["W"].shape == (12, 3) and model.params["W"].dtype == np.float64
    assert model.predict(X).shape == (30,)


def test_linear_errors_say_what_was_expected(rng):
    X, y = rng.standard_normal((6, 4)), np.arange(6) % 2
    with pytest.raises(RuntimeError, match="not fitted"):
        Softmax().predict(X)
    model = LinearSVM().fit(X, y, num_epochs=1)
    with pytest.raises(ValueError, match=r"5 features per sample.*fitted on 4"):
        model.predict(rng.standard_normal((2, 5)))
    with pytest.raises(TypeError, match="float32 but the model was fitted on float64"):
        model.loss(X.astype(np.float32))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        model.loss(X, np.full(6, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(6,\)"):
        model.score(X, y[:3])
    with pytest.raises(ValueError, match=r"class labels must be 0, 1, ..., C-1, got -1"):
        Softmax().fit(X, y - 1)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        LinearSVM().fit(X, y, X_val=X)
    with pytest.raises(ValueError, match=r"5 features per sample.*fitted on 4"):
        LinearSVM().fit(X, y, X_val=rng.standard_normal((2, 5)), y_val=np.zeros(2, int))
    with pytest.raises(ValueError, match="reg must be a finite number >= 0"):
        Softmax(reg=-1.0)
    with pytest.raises(ValueError, match="reg must be a finite number >= 0"):
        Softmax().fit(X, y, reg=float("nan"))


@pytest.fixture(scope="module")
def shapes():
    """Standardised built-in shapes: 4000 training and 1000 test images of 10 classes."""
    data = load_builtin(num_train=4000, num_test=1000, seed=0)
    mean, std = data["X_train"].mean(axis=0), data["X_train"].std()
    return [(data[f"X_{split}"] - mean) / std for split in ("train", "test")], data["y_train"], data["y_test"]


SGD = {"reg": 1e-3, "num_epochs": 10, "batch_size": 200, "seed": 0, "update_rule": "sgd_momentum"}


@pytest.mark.parametrize("model, options, test_floor", [
    (KNearestNeighbor(k=5), {}, 0.3),
    (LinearSVM(), dict(SGD, learning_rate=1e-3), 0.13),
    (Softmax(), dict(SGD, learning_rate=1e-3), 0.17),
], ids=["knn", "svm", "softmax"])
def test_classifiers_learn_the_builtin_shapes(shapes, model, options, test_floor):
    """Chance is 10%; position, colour and scale vary within a class, so linear models stay weak."""
    (X_train, X_test), y_train, y_test = shapes
    assert model.fit(X_train, y_train, **options).score(X_test, y_test) >= test_floor


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_k_smallest_is_a_stable_sort_prefix(rows, columns, k, seed):
    """Distinct values and many ties (a few distinct levels) alike."""
    rng = np.random.default_rng(seed)
    k = min(k, columns)
    for dists in (rng.standard_normal((rows, columns)), rng.integers(0, 3, (rows, columns)).astype(float)):
        np.testing.assert_array_equal(classifiers._k_smallest(dists, k),
                                      np.argsort(dists, axis=1, kind="stable")[:, :k])
