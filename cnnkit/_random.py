"""Random draws keyed by example, so that what an example draws does not depend on its batch.

`KeyedRows(key, first).random((n, ...))` gives n rows of uniforms in [0, 1): row i comes
from numpy's counter-based Philox generator, keyed by `key` and the call's number, at the
counter of example `first + i`. Rows of examples 0..99 drawn at once, or as 0..49 and 50..99
by two processes, are the same bits; one generator per call, not per example.
"""
import math

import numpy as np

WORDS_PER_COUNTER = 4  # Philox4x64 makes four 64-bit words per counter value; a float64 takes one


class KeyedRows:
    """Per-example uniform draws with the `random(shape)` call of a numpy Generator.

    Parameters
    ----------
    key : sequence of int >= 0
        Entropy of the stream (e.g. seed and epoch), any size.
    first : int >= 0
        The example whose draws form row 0.
    """

    def __init__(self, key, first=0):
        self.key, self.first, self._calls = [int(k) for k in key], int(first), 0

    def __repr__(self):
        return f"KeyedRows(key={self.key}, first={self.first})"

    def random(self, shape):
        """Uniforms in [0, 1) of shape (n, ...): row i is example first + i's, fresh on every call.

        Returns
        -------
        ndarray of float64 and the given shape
        """
        shape = tuple(shape)
        rows, per_row = shape[0], math.prod(shape[1:])
        stride = -(-per_row // WORDS_PER_COUNTER) * WORDS_PER_COUNTER  # rows start on a counter boundary
        state = np.random.SeedSequence([*self.key, self._calls]).generate_state(2, np.uint64)
        self._calls += 1
        counter = np.array([self.first * (stride // WORDS_PER_COUNTER), 0, 0, 0], dtype=np.uint64)
        draws = np.random.Generator(np.random.Philox(key=state, counter=counter)).random(rows * stride)
        return np.ascontiguousarray(draws.reshape(rows, stride)[:, :per_row]).reshape(shape)
