"""Softmax and hinge losses on the row kernels of cnnkit._ext.losses; same contract as
cnnkit.reference.losses. Each row's loss is summed in row order, so the loss is the same
bit for bit whatever the thread count.
"""
import numpy as np

from cnnkit._ext import losses as _kernels
from cnnkit._validation import check_labels
from cnnkit.fast._checks import checked_float_arrays
from cnnkit.fast._elementwise import element_threads


def softmax_loss(scores, y):
    """cnnkit.reference.softmax_loss: scores (N, C), labels y (N,) -> loss (scalar), dscores (N, C)."""
    return _loss(False, scores, y)


def svm_loss(scores, y):
    """cnnkit.reference.svm_loss: scores (N, C), labels y (N,) -> loss (scalar), dscores (N, C)."""
    return _loss(True, scores, y)


def _loss(hinge, scores, y):
    (scores,) = checked_float_arrays([scores], ["scores"], ["(N, C)"])
    if 0 in scores.shape:
        raise ValueError(f"scores must have at least one sample and one class, got shape {scores.shape}")
    y = np.ascontiguousarray(check_labels(y, *scores.shape), dtype=np.intp)
    dscores, row_loss = np.empty_like(scores), np.empty(len(scores))
    _kernels.row_losses(hinge, scores, y, dscores, row_loss, element_threads(scores.size))
    return scores.dtype.type(row_loss.sum() / len(scores)), dscores
