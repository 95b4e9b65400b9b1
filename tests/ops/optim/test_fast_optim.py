"""The fast Adam step agrees with the reference: random shapes, both dtypes, non-contiguous
w and dw, edge values; its moments are updated in place; bad arguments get clear errors."""
import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import fast, functional, optim, reference

pytestmark = pytest.mark.skipif("fast" not in cnnkit.available_backends(), reason="fast backend not built")


@pytest.fixture(autouse=True, scope="module")
def tiny_grain():
    """Small arrays run on every thread asked for, as large ones do."""
    from cnnkit.fast import _elementwise

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_elementwise, "ELEMENT_GRAIN", 1)
        yield


def state(rng, shape, dtype):
    """Moments as after some steps: m of either sign, v >= 0."""
    return np.asarray(rng.standard_normal(shape), dtype), np.asarray(rng.random(shape), dtype)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=3).map(tuple),
       dtype=st.sampled_from([np.float32, np.float64]), layout=st.sampled_from(["contiguous", "transposed", "strided"]),
       t=st.integers(1, 5000), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1),
       hyper=st.tuples(st.floats(1e-5, 1.0), st.floats(0.0, 0.99), st.floats(0.0, 0.9999), st.floats(1e-10, 1e-3)))
def test_fast_adam_agrees_with_reference(shape, dtype, layout, t, threads, seed, hyper):
    rng = np.random.default_rng(seed)
    w, dw = (np.asarray(rng.standard_normal(shape), dtype) for _ in range(2))
    if layout == "transposed" and w.ndim:
        w, dw = np.ascontiguousarray(w.T).T, np.ascontiguousarray(dw.T).T
    elif layout == "strided" and w.ndim:
        w, dw = np.repeat(w, 2, axis=-1)[..., ::2], np.repeat(dw, 2, axis=-1)[..., ::2]
    m, v = state(rng, shape, dtype)
    m_ref, v_ref, w_before = m.copy(), v.copy(), w.copy()
    cnnkit.set_num_threads(threads)
    got = fast.adam_update(w, dw, m, v, t, *hyper)
    expected = reference.adam_update(w, dw, m_ref, v_ref, t, *hyper)
    assert got.dtype == expected.dtype == dtype and got.shape == shape
    for actual, wanted in ((got, expected), (m, m_ref), (v, v_ref)):
        np.testing.assert_allclose(actual, wanted, **TOLERANCE[dtype])
    np.testing.assert_array_equal(w, w_before)


def test_edge_gradients_propagate_as_in_the_reference(dtype):
    dw = np.array([0.0, -0.0, 1e-30, 1e30, np.inf, -np.inf, np.nan], dtype=dtype)
    results = []
    for module in (fast, reference):
        m, v = np.zeros_like(dw), np.zeros_like(dw)
        with np.errstate(all="ignore"):
            results.append((module.adam_update(np.ones_like(dw), dw, m, v, 1, 1e-3, 0.9, 0.999, 1e-8), m, v))
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


def test_the_same_bits_whatever_the_thread_count(rng):
    w, dw = rng.standard_normal((2, 1001)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        cnnkit.set_num_threads(threads)
        m, v = state(np.random.default_rng(1), w.shape, w.dtype)
        runs.append((fast.adam_update(w, dw, m, v, 3, 1e-3, 0.9, 0.999, 1e-8), m, v))
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_optim_adam_keeps_its_moments_in_the_config(backend, rng):
    w, dw = rng.standard_normal((2, 6, 5))
    config = {"learning_rate": 1e-2}
    with cnnkit.use_backend(backend):
        for _ in range(3):
            next_w, config = optim.adam(w, dw, config)
            assert np.all(np.abs(next_w - w) <= 1e-2 * (1 + 1e-6))  # Adam moves each weight by at most ~lr
            w = next_w
    assert config["t"] == 3 and config["m"].flags.c_contiguous
    np.testing.assert_allclose(config["m"], (1 - 0.9**3) * dw, rtol=1e-12)  # the sums of a constant gradient
    np.testing.assert_allclose(config["v"], (1 - 0.999**3) * dw * dw, rtol=1e-12)


def test_optim_adam_takes_a_loaded_state_of_another_dtype_or_layout(rng):
    w, dw = rng.standard_normal((2, 4, 3)).astype(np.float32)
    loaded = {"learning_rate": 1e-2, "t": 1, "m": np.asfortranarray(dw.astype(np.float64)), "v": dw.T.T * 0 + 1}
    with cnnkit.use_backend("fast"):
        _, config = optim.adam(w, dw, dict(loaded))
    assert config["m"].dtype == config["v"].dtype == np.float32 and config["t"] == 2
    np.testing.assert_allclose(config["m"], dw, rtol=1e-6)


@pytest.mark.parametrize("change, message", [
    (dict(m=np.zeros((3, 4))), "m must be a writable C-contiguous array of w's shape \\(3, 4\\) and dtype float32"),
    (dict(v=np.zeros((4, 3), np.float32).T), "v must be a writable C-contiguous array"),
    (dict(v=np.zeros((3, 4), np.float32)[:, :, None]), "got shape \\(3, 4, 1\\)"),
    (dict(m=[[0.0] * 4] * 3), "m must be .* got a list"),
    (dict(dw=np.zeros((3, 5), np.float32)), "dw must have shape \\(3, 4\\)"),
    (dict(dw=np.zeros((3, 4))), "expected one dtype for all arrays"),
    (dict(t=0), "t must be an int >= 1"),
    (dict(t=1.5), "t must be an int >= 1"),
    (dict(learning_rate=0.0), "learning_rate must be a number > 0"),
    (dict(beta1=1.0), "beta1 must be a number in \\[0, 1\\)"),
    (dict(beta2=np.nan), "beta2 must be a number in \\[0, 1\\)"),
    (dict(epsilon=-1e-8), "epsilon must be a number > 0"),
])
@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_bad_arguments_are_clear_errors(change, message, backend):
    args = dict(w=np.ones((3, 4), np.float32), dw=np.ones((3, 4), np.float32), m=np.zeros((3, 4), np.float32),
                v=np.zeros((3, 4), np.float32), t=1, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8)
    with cnnkit.use_backend(backend), pytest.raises((ValueError, TypeError), match=message):
        functional.adam_update(**{**args, **change})


def test_a_read_only_moment_is_refused_not_copied():
    w = np.ones(5, np.float32)
    m = np.zeros(5, np.float32)
    m.flags.writeable = False
    with pytest.raises(ValueError, match=r"m must be a writable .* writable False"):
        fast.adam_update(w, w, m, np.zeros(5, np.float32), 1, 1e-3, 0.9, 0.999, 1e-8)
