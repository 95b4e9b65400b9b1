"""Update steps whose state lives in arrays updated in place (cnnkit.optim's rules call them)."""
import numpy as np


def adam_update(w, dw, m, v, t, learning_rate, beta1, beta2, epsilon):
    """One Adam step with bias correction.

    m and v (the moving averages of dw and dw**2) are updated in place; t is the step's
    count (1 for the first step).

    Parameters
    ----------
    w, dw : ndarray of one shape
    m, v : ndarray of w's shape and dtype, C-contiguous
    t : int >= 1
    learning_rate, beta1, beta2, epsilon : float

    Returns
    -------
    next_w : ndarray, w - learning_rate * m_hat / (sqrt(v_hat) + epsilon) with
        m_hat = m / (1 - beta1**t) and v_hat = v / (1 - beta2**t)
    """
    m *= beta1
    m += (1 - beta1) * dw
    v *= beta2
    v += (1 - beta2) * dw * dw
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return w - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)
