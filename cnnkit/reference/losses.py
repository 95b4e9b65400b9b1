"""Classification losses on scores (N, C) and integer labels y (N,), averaged over the batch."""
import numpy as np


def softmax_loss(scores, y):
    """Cross-entropy of softmax(scores) against y, stable for large scores.

    Parameters
    ----------
    scores : ndarray of shape (N, C)
    y : integer ndarray of shape (N,), values in [0, C)

    Returns
    -------
    loss : scalar of the dtype of scores
    dscores : ndarray of shape (N, C)
    """
    n, rows = len(scores), np.arange(len(scores))
    shifted = scores - scores.max(axis=1, keepdims=True)  # largest exponent is 0: no overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].sum() / n
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    return loss, dscores / n


def svm_loss(scores, y):
    """Multiclass hinge loss, margin 1: mean over samples of sum_{j != y} max(0, s_j - s_y + 1).

    Parameters
    ----------
    scores : ndarray of shape (N, C)
    y : integer ndarray of shape (N,), values in [0, C)

    Returns
    -------
    loss : scalar of the dtype of scores
    dscores : ndarray of shape (N, C)
    """
    n, rows = len(scores), np.arange(len(scores))
    margins = np.maximum(0, scores - scores[rows, y][:, None] + 1)
    margins[rows, y] = 0
    loss = margins.sum() / n
    dscores = (margins > 0).astype(scores.dtype)
    dscores[rows, y] -= dscores.sum(axis=1)
    return loss, dscores / n
