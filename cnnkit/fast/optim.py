"""The Adam step on the kernel of cnnkit._ext.optim; same contract as cnnkit.reference.optim."""
import numpy as np

from cnnkit._ext import optim as _kernels
from cnnkit._validation import check_state
from cnnkit.fast._elementwise import contiguous_float, element_threads


def adam_update(w, dw, m, v, t, learning_rate, beta1, beta2, epsilon):
    """cnnkit.reference.adam_update: m and v (C-contiguous, w's shape and dtype) updated in place; next w."""
    w, dw = contiguous_float(w, "w"), contiguous_float(dw, "dw")
    check_state(m, w, "m")  # a copy made here would leave the caller's state behind
    check_state(v, w, "v")
    out = np.empty_like(w)
    _kernels.adam_update(w.reshape(-1), dw.reshape(-1), m.reshape(-1), v.reshape(-1), out.reshape(-1), t,
                         learning_rate, beta1, beta2, epsilon, element_threads(w.size))
    return out
