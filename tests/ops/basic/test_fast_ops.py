"""The fast affine, activation, loss, batchnorm and dropout ops agree with the reference.

Random shapes (odd sizes, N = 1), both dtypes, non-contiguous inputs and edge values;
backward against numerical gradients in float64; clear errors on bad direct calls; the
same bits on repeated calls with two threads; layers and Sequential training alike on
both backends.
"""
import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import fast, layers, reference
from cnnkit.gradcheck import check_gradients
from cnnkit.models import Sequential

ACTIVATIONS = {"relu": {}, "leaky_relu": {"negative_slope": -0.3}, "sigmoid": {}, "tanh": {}, "elu": {"alpha": 0.7}}
EDGES = [0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 100.0, -100.0, np.inf, -np.inf, np.nan]
LAYOUTS = ["contiguous", "transposed", "strided", "reversed"]


@pytest.fixture(autouse=True, scope="module")
def tiny_grains():
    """Small test inputs run on every thread asked for, as large ones do."""
    from cnnkit.fast import _elementwise, _threads

    with pytest.MonkeyPatch.context() as patch:
        for module, name in [(_threads, "POOL_GRAIN"), (_threads, "CONV_GRAIN"), (_elementwise, "ELEMENT_GRAIN")]:
            patch.setattr(module, name, 1)
        yield


def laid_out(a, layout):
    """a's values in a non-contiguous view ("transposed", "strided", "reversed") or as they are."""
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "strided":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if layout == "reversed":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    return a


def assert_close(actual, expected, dtype):
    """Equal to the dtype's rounding, relative to the largest magnitude expected; same dtype and shape."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype == dtype and actual.shape == expected.shape
    largest = np.abs(expected[np.isfinite(expected)]).max(initial=1.0)
    tolerance = TOLERANCE[np.dtype(dtype).type]["rtol"]
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * largest)


def both(op, *args):
    """(fast result, reference result, reference args): the reference gets copies of dict arguments
    (batchnorm stores its running statistics into bn_param)."""
    copies = [dict(a) if isinstance(a, dict) else a for a in args]
    return getattr(fast, op)(*args), getattr(reference, op)(*copies), copies


def assert_backward_agrees(op, args, dtype, rng):
    """Forward outputs and the backward of a random dout agree; returns the reference's copy of args."""
    (out, cache), (expected, ref_cache), ref_args = both(op + "_forward", *args)
    assert_close(out, expected, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = _as_tuple(getattr(fast, op + "_backward")(dout, cache))
    for grad, ref_grad in zip(grads, _as_tuple(getattr(reference, op + "_backward")(dout, ref_cache)), strict=True):
        assert_close(grad, ref_grad, dtype)
    return ref_args


def _as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


dtypes = st.sampled_from([np.float32, np.float64])
shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)


def normal(rng, dtype, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---------------------------------------------------------------- agreement


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(ACTIVATIONS)), shapes, dtypes, st.sampled_from(LAYOUTS), st.booleans(), seeds)
def test_activations_agree(op, shape, dtype, layout, edges, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, dtype, shape, scale=3)
    if edges:
        x.flat[: len(EDGES)] = EDGES[: x.size]
    with np.errstate(all="ignore"):
        assert_backward_agrees(op, (laid_out(x, layout), *ACTIVATIONS[op].values()), dtype, rng)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("features, units", [(2100, 1000), (1 << 20, 1), (1, 1 << 20), (300, 7)])
def test_affine_of_a_batch_of_one_agrees(features, units, threads, rng, dtype):
    """One sample: its products have one row, matrix-vector products (GEMV, cnnkit/_ext/_blas.pxd) from
    GEMV_ENTRIES weights (in the forward a half of them a thread at 2 threads), GEMM below; weights in
    column-major order."""
    cnnkit.set_num_threads(threads)
    w = np.asfortranarray(normal(rng, dtype, (features, units)))
    assert_backward_agrees("affine", (normal(rng, dtype, (1, features)), w, normal(rng, dtype, units)), dtype, rng)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(1, 9), dtypes,
       st.sampled_from(LAYOUTS), st.integers(1, 2), seeds)
def test_affine_agrees(n, features, m, dtype, layout, threads, seed):
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(threads)
    x = laid_out(normal(rng, dtype, (n, *features)), layout)
    w = laid_out(normal(rng, dtype, (int(np.prod(features)), m)), layout)
    assert_backward_agrees("affine", (x, w, normal(rng, dtype, m)), dtype, rng)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["softmax_loss", "svm_loss"]), st.integers(1, 8), st.integers(1, 9), dtypes,
       st.sampled_from(LAYOUTS), st.sampled_from([0.01, 1.0, 100.0]), seeds)
def test_losses_agree(op, n, c, dtype, layout, scale, seed):
    rng = np.random.default_rng(seed)
    scores = laid_out(normal(rng, dtype, (n, c), scale), layout)
    (loss, dscores), (expected, ref_dscores), _ = both(op, scores, rng.integers(0, c, n))
    assert_close(loss, expected, dtype)
    assert_close(dscores, ref_dscores, dtype)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["batchnorm", "spatial_batchnorm"]), st.sampled_from(["train", "test"]),
       st.integers(1, 6), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), dtypes, st.sampled_from(LAYOUTS),
       st.integers(1, 2), seeds)
def test_batchnorm_agrees(op, mode, n, c, h, w, dtype, layout, threads, seed):
    rng = np.random.default_rng(seed)
    cnnkit.set_num_threads(threads)
    shape = (n, c) if op == "batchnorm" else (n, c, h, w)
    bn_param = {"mode": mode, "eps": 1e-3, "momentum": 0.8}
    if mode == "test":
        bn_param.update(running_mean=normal(rng, dtype, c), running_var=(1 + rng.random(c)).astype(dtype))
    x = laid_out(2 + normal(rng, dtype, shape, 3), layout)
    ref_param = assert_backward_agrees(op, (x, normal(rng, dtype, c), normal(rng, dtype, c), bn_param), dtype, rng)[3]
    for key in ("running_mean", "running_var"):
        assert_close(bn_param[key], ref_param[key], dtype)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(shapes, dtypes, st.sampled_from(LAYOUTS), st.sampled_from([0.0, 0.3, 0.9]), seeds)
def test_dropout_gives_the_reference_mask(shape, dtype, layout, p, seed):
    """Same seed, same mask, bit for bit, including NaN and inf units."""
    rng = np.random.default_rng(seed)
    x = normal(rng, dtype, shape)
    x.flat[:3] = [np.nan, np.inf, -np.inf][: x.size]
    param = {"p": p, "mode": "train", "seed": seed}
    dout = laid_out(normal(rng, dtype, shape), layout)
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference
        (out, cache), (expected, ref_cache), _ = both("dropout_forward", laid_out(x, layout), param)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(fast.dropout_backward(dout, cache), reference.dropout_backward(dout, ref_cache))
    assert out.dtype == dtype


def test_dropout_larger_than_the_kept_buffer_and_test_mode(rng):
    for size in [5, 100_000, 7]:  # the kept draw buffer grows, then serves a smaller draw
        x = normal(rng, np.float32, (size,))
        param = {"p": 0.5, "mode": "train", "seed": size}
        np.testing.assert_array_equal(fast.dropout_forward(x, param)[0], reference.dropout_forward(x, param)[0])
    out, cache = fast.dropout_forward(x, {"p": 0.5, "mode": "test"})
    assert out is not x and np.array_equal(out, x) and np.array_equal(fast.dropout_backward(x, cache), x)


@pytest.mark.parametrize("op", [*ACTIVATIONS, "dropout"])
def test_zero_dimensional_input_keeps_its_shape(op):
    x, dout = np.array(-0.5), np.array(2.0)
    args = (x, {"p": 0.5, "mode": "train", "seed": 4}) if op == "dropout" else (x, *ACTIVATIONS[op].values())
    (out, cache), (expected, ref_cache), _ = both(op + "_forward", *args)
    assert out.shape == () and out == expected
    assert getattr(fast, op + "_backward")(dout, cache) == getattr(reference, op + "_backward")(dout, ref_cache)
    assert getattr(fast, op + "_backward")(dout, cache).shape == ()


def test_empty_inputs(rng):
    x, w, b = np.empty((0, 3)), normal(rng, np.float64, (3, 2)), np.zeros(2)
    out, cache = fast.affine_forward(x, w, b)
    dx, dw, db = fast.affine_backward(out, cache)
    assert out.shape == (0, 2) and dx.shape == (0, 3) and not dw.any() and not db.any()
    out, cache = fast.affine_forward(normal(rng, np.float64, (2, 0)), np.empty((0, 4)), b[:1].repeat(4))
    assert np.array_equal(out, np.zeros((2, 4))) and fast.affine_backward(out, cache)[1].shape == (0, 4)
    assert fast.relu_forward(np.empty((0, 4), np.float32))[0].shape == (0, 4)


# ---------------------------------------------------------------- gradients


def _gradient_cases(rng):
    distinct = rng.permutation(np.arange(-10, 10) + 0.5).reshape(4, 5) / 10  # no kink within a probe step
    bn = lambda op, mode: lambda x, gamma, beta: getattr(fast, op + "_forward")(  # noqa: E731
        x, gamma, beta, {"mode": mode, "running_mean": np.ones(3), "running_var": np.full(3, 2.0)})
    cases = {op: (lambda x, op=op: getattr(fast, op + "_forward")(x, *ACTIVATIONS[op].values()),
                  getattr(fast, op + "_backward"), {"x": distinct}) for op in ACTIVATIONS}
    cases["affine"] = (fast.affine_forward, fast.affine_backward,
                       {"x": rng.standard_normal((3, 2, 2)), "w": rng.standard_normal((4, 5)), "b": rng.random(5)})
    for mode in ["train", "test"]:
        inputs = {"x": 1 + rng.standard_normal((4, 3, 2, 3)), "gamma": rng.standard_normal(3), "beta": rng.random(3)}
        cases[f"spatial_batchnorm_{mode}"] = (bn("spatial_batchnorm", mode), fast.spatial_batchnorm_backward, inputs)
        cases[f"batchnorm_{mode}"] = (bn("batchnorm", mode), fast.batchnorm_backward,
                                      {**inputs, "x": inputs["x"][:, :, 0, 0]})
    cases["dropout"] = (lambda x: fast.dropout_forward(x, {"p": 0.4, "mode": "train", "seed": 3}),
                        fast.dropout_backward, {"x": rng.standard_normal((5, 4))})
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_gradient_cases(np.random.default_rng(0))))
@pytest.mark.parametrize("threads", [1, 2])
def test_backward_matches_numerical_gradient(name, threads):
    cnnkit.set_num_threads(threads)
    forward, backward, inputs = _gradient_cases(np.random.default_rng(0))[name]
    report = check_gradients(forward, backward, inputs)
    assert report.worst < 1e-7, report


@pytest.mark.parametrize("op", ["softmax_loss", "svm_loss"])
def test_loss_gradient_matches_numerical_gradient(op, rng):
    scores, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    loss_of = lambda s: getattr(fast, op)(s, y)[0]  # noqa: E731
    numeric = np.zeros_like(scores)
    for index in np.ndindex(scores.shape):
        step = np.zeros_like(scores)
        step[index] = 1e-6
        numeric[index] = (loss_of(scores + step) - loss_of(scores - step)) / 2e-6
    np.testing.assert_allclose(getattr(fast, op)(scores, y)[1], numeric, atol=1e-7)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, message", [
    (lambda: fast.affine_forward(np.ones(3), np.ones((3, 2)), np.ones(2)), ValueError, r"at least 2-D"),
    (lambda: fast.affine_forward(np.ones((2, 3)), np.ones((4, 2)), np.ones(2)), ValueError, r"w must have shape"),
    (lambda: fast.affine_forward(np.ones((2, 3), np.float32), np.ones((3, 2)), np.ones(2)), TypeError,
     r"one dtype.*x: float32, w: float64"),
    (lambda: fast.relu_forward(np.ones(3, dtype=int)), TypeError, r"float32 or float64.*x: int64"),
    (lambda: fast.tanh_backward(np.ones(4), fast.tanh_forward(np.ones(3))[1]), ValueError, r"dout must have shape"),
    (lambda: fast.elu_backward(np.ones(3, np.float32), fast.elu_forward(np.ones(3))[1]), TypeError, r"dout must"),
    (lambda: fast.softmax_loss(np.ones((2, 3)), [0, 3]), ValueError, r"labels must be in \[0, 3\)"),
    (lambda: fast.svm_loss(np.ones((2, 3)), [0.5, 1]), TypeError, r"integer class labels"),
    (lambda: fast.svm_loss(np.ones((0, 3)), []), ValueError, r"at least one sample"),
    (lambda: fast.batchnorm_forward(np.ones((2, 3)), np.ones(2), np.ones(3), {"mode": "train"}), ValueError,
     r"gamma must have shape \(3,\)"),
    (lambda: fast.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.ones(3), {"mode": "fit"}), ValueError,
     r"bn_param\['mode'\] must be one of"),
    (lambda: fast.spatial_batchnorm_forward(np.ones((2, 3)), np.ones(3), np.ones(3), {"mode": "test"}), ValueError,
     r"4-D"),
    (lambda: fast.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.ones(3),
                                    {"mode": "test", "running_mean": np.zeros(3, np.float32)}), TypeError,
     r"running_mean: float32"),
    (lambda: fast.batchnorm_forward(np.ones((0, 3)), np.ones(3), np.ones(3), {"mode": "train"}), ValueError,
     r"non-empty batch"),
    (lambda: fast.dropout_forward(np.ones(3), {"p": 1.0, "mode": "train"}), ValueError, r"probability in \[0, 1\)"),
    (lambda: fast.dropout_forward(np.ones(3), {"p": 0.5, "mode": "train", "seed": -1}), ValueError, r"seed"),
])
def test_bad_direct_calls_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------- reproducibility and training


def test_two_threads_give_the_same_bits_every_call(rng):
    cnnkit.set_num_threads(2)
    x, w, b = normal(rng, np.float32, (37, 3, 5, 5)), normal(rng, np.float32, (75, 11)), normal(rng, np.float32, 11)
    scores, y = normal(rng, np.float32, (37, 11), 5), rng.integers(0, 11, 37)
    bn_args = (normal(rng, np.float32, 3), normal(rng, np.float32, 3))
    runs = [
        lambda: _forward_backward("affine", x, w, b),
        lambda: _forward_backward("spatial_batchnorm", x, *bn_args, {"mode": "train"}),
        lambda: _forward_backward("batchnorm", x[:, :, 0, 0], *bn_args, {"mode": "train"}),
        lambda: fast.softmax_loss(scores, y), lambda: fast.svm_loss(scores, y),
        *(lambda op=op: _forward_backward(op, x, *ACTIVATIONS[op].values()) for op in ACTIVATIONS),
        lambda: _forward_backward("dropout", x, {"p": 0.5, "mode": "train", "seed": 1}),
    ]
    for run in runs:
        first, second = run(), run()
        for a, b_ in zip(first, second):
            assert np.asarray(a).tobytes() == np.asarray(b_).tobytes()


def _forward_backward(op, *args):
    out, cache = getattr(fast, op + "_forward")(*args)
    return (out, *_as_tuple(getattr(fast, op + "_backward")(np.cos(out), cache)))


@pytest.mark.slow
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_sequential_trains_alike_on_both_backends(dtype, rtol):
    """A few Adam steps of a net with every layer these ops serve end at the same weights."""
    from cnnkit import optim

    def trained(backend):
        rng = np.random.default_rng(0)
        model = Sequential([
            layers.BatchNorm2d(2, dtype=dtype), layers.Flatten(), layers.Linear(18, 16, dtype=dtype, rng=1),
            layers.BatchNorm1d(16, dtype=dtype), layers.LeakyReLU(0.1), layers.Dropout(0.3, rng=2),
            layers.Linear(16, 8, dtype=dtype, rng=3), layers.ELU(), layers.Linear(8, 8, dtype=dtype, rng=4),
            layers.Tanh(), layers.Linear(8, 6, dtype=dtype, rng=5), layers.Sigmoid(),
            layers.Linear(6, 4, dtype=dtype, rng=6), layers.ReLU(), layers.Linear(4, 3, dtype=dtype, rng=7),
        ], loss="svm" if dtype == np.float32 else "softmax", reg=0.01)
        configs = {key: {"learning_rate": 1e-2} for key in model.params}
        X, y = rng.standard_normal((9, 2, 3, 3)).astype(dtype), rng.integers(0, 3, 9)
        with cnnkit.use_backend(backend):
            for _ in range(4):
                loss, grads = model.loss(X, y)
                for key in model.params:
                    rule = optim.adam if key.endswith("weight") else optim.sgd_momentum
                    model.params[key], configs[key] = rule(model.params[key], grads[key], configs[key])
            return loss, model.params, model.buffers

    (loss, params, buffers), (ref_loss, ref_params, ref_buffers) = trained("fast"), trained("reference")
    assert loss == pytest.approx(ref_loss, rel=rtol)
    for key in ref_params:
        assert params[key].dtype == dtype
        np.testing.assert_allclose(params[key], ref_params[key], rtol=rtol, atol=rtol)
    for key in ref_buffers:
        np.testing.assert_allclose(buffers[key], ref_buffers[key], rtol=rtol, atol=rtol)
