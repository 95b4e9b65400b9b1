"""Classic classifiers from the course: k-nearest neighbours, linear SVM and softmax.

Samples of any shape (N, d1, d2, ...) are flattened to rows of shape (N, D). The models
compute in float32 when X is float32 and in float64 otherwise (integer pixels included);
once fitted, float input of the other precision raises TypeError instead of being cast.
"""
from collections import namedtuple
from typing import ClassVar

import numpy as np

from cnnkit import functional
from cnnkit._validation import check_real
from cnnkit.models.network import weight_penalty
from cnnkit.trainer import Trainer

__all__ = ["CrossValidation", "KNearestNeighbor", "LinearClassifier", "LinearSVM", "Softmax", "cross_validate_k"]

# Largest number of array elements a distance block may hold (32 MB in float64).
_BLOCK_ELEMENTS = 2**22


class _Classifier:
    """What every classifier shares: feature checks and accuracy."""

    def score(self, X, y):
        """Accuracy of predict(X) against y.

        Parameters
        ----------
        X : ndarray of shape (N, d1, ...)
        y : ndarray of shape (N,)

        Returns
        -------
        float in [0, 1]
        """
        predicted = self.predict(X)
        y = _check_labels(y, len(predicted))
        return float(np.mean(predicted == y))

    def _fitted_on(self):
        """(D, dtype) of the data the model was fitted on, or None before fit."""
        raise NotImplementedError

    def _features(self, X):
        """X as (N, D) rows in the fitted dtype, or an error saying what was expected."""
        fitted = self._fitted_on()
        if fitted is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")
        num_features, dtype = fitted
        X = _as_features(X, dtype)
        if X.shape[1] != num_features:
            raise ValueError(
                f"X has {X.shape[1]} features per sample, but the model was fitted on {num_features}")
        return X


def _as_features(X, dtype=None):
    """X flattened to (N, D), as float32 if it is float32 and float64 otherwise.

    With `dtype` given (a fitted model's), float input must already have it; integer and
    boolean input is converted to it.
    """
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"X must have shape (N, d1, ...) with N >= 1, got shape {X.shape}")
    if X.dtype.kind not in "biuf" or (X.dtype.kind == "f" and X.dtype not in (np.float32, np.float64)):
        raise TypeError(f"X must hold real numbers (float32, float64 or integers), got {X.dtype}")
    if dtype is None:
        dtype = np.float32 if X.dtype == np.float32 else np.float64
    elif X.dtype.kind == "f" and X.dtype != dtype:
        raise TypeError(f"X is {X.dtype} but the model was fitted on {np.dtype(dtype)}; "
                        f"convert it explicitly (no silent cast)")
    X = X.reshape(len(X), -1).astype(dtype, copy=False)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or Inf")
    return X


def _check_labels(y, num_samples):
    """y as an integer array of shape (num_samples,)."""
    y = np.asarray(y)
    if y.shape != (num_samples,):
        raise ValueError(f"y must have shape ({num_samples},) to match X, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels, got {y.dtype}")
    return y


def _l2_distances(A, B, B_squared):
    """Euclidean distances between the rows of A (M, D) and B (N, D), shape (M, N).

    Fully vectorised: ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b with one matrix product,
    clipped at 0 where rounding makes it negative. B_squared (N,) holds the ||b||^2.
    """
    squared = np.einsum("ij,ij->i", A, A)[:, None] + B_squared - 2 * (A @ B.T)
    return np.sqrt(np.maximum(squared, 0, out=squared), out=squared)


def _l1_distances(A, B):
    """Manhattan distances between the rows of A (M, D) and B (N, D), shape (M, N).

    Computed block by block so no intermediate holds more than _BLOCK_ELEMENTS values
    (or one row of D).
    """
    num_features = A.shape[1]
    cols = min(len(B), max(1, _BLOCK_ELEMENTS // num_features))
    rows = max(1, _BLOCK_ELEMENTS // (cols * num_features))
    out = np.empty((len(A), len(B)), dtype=A.dtype)
    for i in range(0, len(A), rows):
        for j in range(0, len(B), cols):
            block = np.abs(A[i:i + rows, None, :] - B[None, j:j + cols, :])
            out[i:i + rows, j:j + cols] = block.sum(axis=2)
    return out


DISTANCES = ("l1", "l2")


class KNearestNeighbor(_Classifier):
    """k-nearest-neighbour classifier with L1 or L2 distance.

    Tie rules: among training samples at equal distance, the earlier one (in fit order)
    is the nearer; when several labels get the most votes, the smallest label wins.

    Parameters
    ----------
    k : int, default 1
        Number of neighbours that vote.
    distance : {"l2", "l1"}, default "l2"
    """

    def __init__(self, k=1, distance="l2"):
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.k = _check_k(k, None)
        self.distance = distance
        self.X_train = None
        self.classes_ = None

    def __repr__(self):
        return f"KNearestNeighbor(k={self.k}, distance={self.distance!r})"

    def fit(self, X, y):
        """Memorise the training data.

        Parameters
        ----------
        X : ndarray of shape (N, d1, ...), stored flattened as (N, D)
        y : ndarray of shape (N,), integer labels

        Returns
        -------
        self
        """
        X = _as_features(X)
        y = _check_labels(y, len(X))
        self.X_train = X
        self.classes_, self._y_index = np.unique(y, return_inverse=True)
        self._squared_norms = np.einsum("ij,ij->i", X, X)
        return self

    def compute_distances(self, X):
        """Distances from every row of X to every training sample.

        Parameters
        ----------
        X : ndarray of shape (M, d1, ...)

        Returns
        -------
        dists : ndarray of shape (M, N_train); dists[i, j] is between X[i] and X_train[j]
        """
        return self._distances(self._features(X))

    def predict(self, X, k=None):
        """Labels by majority vote of the k nearest training samples.

        Parameters
        ----------
        X : ndarray of shape (M, d1, ...)
        k : int, optional
            Overrides self.k for this call.

        Returns
        -------
        ndarray of shape (M,), labels of the training set's dtype
        """
        k = self.k if k is None else k
        return _majority_vote(self.nearest_labels(X, k), self.classes_)

    def nearest_labels(self, X, k):
        """Labels of the k nearest training samples, nearest first.

        Parameters
        ----------
        X : ndarray of shape (M, d1, ...)
        k : int

        Returns
        -------
        ndarray of shape (M, k)
        """
        X = self._features(X)
        k = _check_k(k, len(self.X_train))
        rows = max(1, _BLOCK_ELEMENTS // len(self.X_train))
        order = np.concatenate([_k_smallest(self._distances(X[i:i + rows]), k) for i in range(0, len(X), rows)])
        return self.classes_[self._y_index[order]]

    def _fitted_on(self):
        return None if self.X_train is None else (self.X_train.shape[1], self.X_train.dtype)

    def _distances(self, X):
        if self.distance == "l2":
            return _l2_distances(X, self.X_train, self._squared_norms)
        return _l1_distances(X, self.X_train)


def _k_smallest(dists, k):
    """Column indices of the k smallest entries of each row of dists (M, N), smallest first,
    equal entries in column order: np.argsort(dists, kind="stable")[:, :k], without sorting whole rows.
    """
    if k == dists.shape[1]:
        return np.argsort(dists, axis=1, kind="stable")
    chosen = np.argpartition(dists, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(dists, chosen, axis=1)
    kth = values.max(axis=1, keepdims=True)
    # argpartition picks among entries equal to the k-th one arbitrarily; sort those rows fully
    ambiguous = np.count_nonzero(dists == kth, axis=1) > np.count_nonzero(values == kth, axis=1)
    chosen = np.take_along_axis(chosen, np.lexsort((chosen, values), axis=1), axis=1)
    if ambiguous.any():
        chosen[ambiguous] = np.argsort(dists[ambiguous], axis=1, kind="stable")[:, :k]
    return chosen


def _majority_vote(neighbor_labels, classes):
    """Most frequent label in each row of neighbor_labels (M, k); the smallest one on a tie.

    classes is the sorted array of every label that can occur.
    """
    index = np.searchsorted(classes, neighbor_labels)
    counts = np.zeros((len(index), len(classes)), dtype=np.intp)
    np.add.at(counts, (np.arange(len(index))[:, None], index), 1)
    return classes[counts.argmax(axis=1)]


def _check_k(k, num_train):
    """k as a positive int, at most the number of training samples when that is known."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if num_train is not None and k > num_train:
        raise ValueError(f"k={k} is larger than the number of training samples ({num_train})")
    return int(k)


CrossValidation = namedtuple("CrossValidation", ["accuracies", "best_k"])
CrossValidation.__doc__ = """Result of cross_validate_k: accuracies {k: ndarray (num_folds,)} and the best k."""


def cross_validate_k(X, y, ks, num_folds=5, distance="l2", seed=None):
    """Choose k for KNearestNeighbor by num_folds-fold cross-validation.

    Each fold is held out once while the others train; neighbours are sorted once per
    fold and every k votes from the same order.

    Parameters
    ----------
    X : ndarray of shape (N, d1, ...)
    y : ndarray of shape (N,)
    ks : iterable of int
        Candidate values of k.
    num_folds : int, default 5
    distance : {"l2", "l1"}
    seed : int, optional
        Shuffle the samples with this seed before splitting; None keeps their order
        (consecutive folds, as in the course).

    Returns
    -------
    CrossValidation
        accuracies : dict {k: ndarray of shape (num_folds,)}, accuracy on each held-out fold
        best_k : the k with the highest mean accuracy (the smallest such k on a tie)
    """
    X, ks = _as_features(X), sorted({_check_k(k, None) for k in ks})
    y = _check_labels(y, len(X))
    if not ks:
        raise ValueError("ks must name at least one candidate k")
    if not 2 <= num_folds <= len(X):
        raise ValueError(f"num_folds must be between 2 and the number of samples ({len(X)}), got {num_folds}")
    order = np.arange(len(X)) if seed is None else np.random.default_rng(seed).permutation(len(X))
    accuracies = {k: np.empty(num_folds) for k in ks}
    for fold, held_out in enumerate(np.array_split(order, num_folds)):
        train = np.setdiff1d(order, held_out, assume_unique=True)
        knn = KNearestNeighbor(distance=distance).fit(X[train], y[train])
        nearest = knn.nearest_labels(X[held_out], ks[-1])
        for k in ks:
            accuracies[k][fold] = np.mean(_majority_vote(nearest[:, :k], knn.classes_) == y[held_out])
    best_k = max(ks, key=lambda k: (accuracies[k].mean(), -k))
    return CrossValidation(accuracies, best_k)


def _strength(name, doc):
    """A property holding a regularisation strength, checked to be a finite float >= 0 when set."""
    def set_strength(self, value):
        setattr(self, f"_{name}", check_real(value, name, "a finite number >= 0", lambda r: r >= 0))

    return property(lambda self: getattr(self, f"_{name}"), set_strength, doc=doc)


class LinearClassifier(_Classifier):
    """Linear scores X @ W + b trained by minibatch SGD; subclasses set the data loss.

    params holds W of shape (D, C) and a separate bias b of shape (C,). The loss is the
    data loss averaged over the batch plus reg * sum(W * W) + l1 * sum(|W|) (elastic net
    when both are set); the bias is not regularised. The L1 subgradient is 0 where a
    weight is exactly 0.

    Parameters
    ----------
    reg : float, default 1e-5
        L2 regularisation strength (fit can change it).
    weight_scale : float, default 1e-3
        Standard deviation of the initial weights.
    l1 : float, default 0
        L1 regularisation strength (fit can change it).
    """

    incoming_axes: ClassVar[dict] = {"W": (0,)}  # Trainer(max_norm=c) bounds the norm of each column of W

    @staticmethod
    def data_loss(scores, y):
        """(loss, dscores) of scores (N, C) against labels y (N,); each subclass sets it."""
        raise NotImplementedError

    def __init__(self, reg=1e-5, weight_scale=1e-3, l1=0.0):
        self.reg, self.l1 = reg, l1
        self.weight_scale = check_real(weight_scale, "weight_scale", "a finite number > 0", lambda s: s > 0)
        self.params = {}
        self.loss_history, self.train_acc_history, self.val_acc_history = [], [], []

    reg = _strength("reg", "L2 regularisation strength, a float >= 0.")
    l1 = _strength("l1", "L1 regularisation strength, a float >= 0.")

    def __repr__(self):
        return f"{type(self).__name__}(reg={self.reg}, weight_scale={self.weight_scale}, l1={self.l1})"

    def init_params(self, num_features, num_classes, dtype=np.float64, seed=None):
        """Draw W (num_features, num_classes) from N(0, weight_scale^2) and zero b (num_classes,).

        seed is an int, None or a numpy Generator.
        """
        rng = np.random.default_rng(seed)
        W = self.weight_scale * rng.standard_normal((num_features, num_classes))
        self.params = {"W": W.astype(dtype), "b": np.zeros(num_classes, dtype=dtype)}
        return self

    def loss(self, X, y=None):
        """Scores, or the regularised loss and its gradients.

        Parameters
        ----------
        X : ndarray of shape (N, d1, ...)
        y : ndarray of shape (N,), optional
            Integer labels in [0, C).

        Returns
        -------
        scores : ndarray of shape (N, C), when y is None
        loss, grads : float and {"W": (D, C), "b": (C,)}, otherwise
        """
        W, b = self.params.get("W"), self.params.get("b")
        X = self._features(X)
        scores = X @ W + b
        if y is None:
            return scores
        data_loss, dscores = self.data_loss(scores, y)
        penalty, dW = weight_penalty(W, 2 * self.reg, self.l1)
        return data_loss + penalty, {"W": X.T @ dscores + dW, "b": dscores.sum(axis=0)}

    def predict(self, X):
        """Class with the highest score, ndarray of shape (N,)."""
        return np.argmax(self.loss(X), axis=1)

    def fit(self, X, y, learning_rate=1e-3, reg=None, num_epochs=10, batch_size=200, seed=None, verbose=False,
            X_val=None, y_val=None, l1=None, **trainer_options):
        """Train from new random weights by minibatch SGD through cnnkit.Trainer.

        Parameters
        ----------
        X : ndarray of shape (N, d1, ...), flattened to (N, D)
        y : ndarray of shape (N,), integer labels in [0, C); C = 1 + the largest label
            of y and y_val
        learning_rate : float
        reg, l1 : float, optional
            Replace self.reg and self.l1 when given.
        num_epochs, batch_size : int
            Each epoch visits every sample once in a new random order.
        seed : int, optional
            Seeds the initial weights and the minibatch order.
        verbose : bool
            Show the Trainer's progress bar.
        X_val, y_val : ndarrays, optional
            Validation data; when given, the parameters of the epoch with the best
            validation accuracy are kept.
        **trainer_options
            Further Trainer options, e.g. update_rule="sgd_momentum", lr_decay, patience, max_norm.

        Returns
        -------
        self, with loss_history (one per update), train_acc_history and
        val_acc_history (one per epoch)
        """
        if reg is not None:
            self.reg = reg
        if l1 is not None:
            self.l1 = l1
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        X = _as_features(X)
        data = {"X_train": X, "y_train": _check_labels(y, len(X))}
        if X_val is not None:
            X_val = _as_features(X_val, X.dtype)
            data["y_val"] = _check_labels(y_val, len(X_val))
        labels = np.concatenate([data[name] for name in ("y_train", "y_val") if name in data])
        if labels.min() < 0:
            raise ValueError(f"class labels must be 0, 1, ..., C-1, got {labels.min()}")
        rng = np.random.default_rng(seed)
        self.init_params(X.shape[1], int(labels.max()) + 1, X.dtype, rng)
        if X_val is not None:
            data["X_val"] = self._features(X_val)  # checks the number of features
        trainer = Trainer(self, data, optim_config={"learning_rate": learning_rate}, batch_size=batch_size,
                          num_epochs=num_epochs, seed=int(rng.integers(2**63)), verbose=verbose,
                          **trainer_options).train()
        self.loss_history = trainer.loss_history
        self.train_acc_history, self.val_acc_history = trainer.train_acc_history, trainer.val_acc_history
        return self

    def _fitted_on(self):
        W = self.params.get("W")
        return None if W is None else (W.shape[0], W.dtype)


class LinearSVM(LinearClassifier):
    """Linear classifier trained on the multiclass hinge loss (margin 1); see LinearClassifier."""

    data_loss = staticmethod(functional.svm_loss)


class Softmax(LinearClassifier):
    """Linear classifier trained on the softmax cross-entropy loss; see LinearClassifier."""

    data_loss = staticmethod(functional.softmax_loss)
