"""Affine, activations, batchnorm and dropout: hand-computed values and their rules."""
import warnings

import numpy as np
import pytest

from cnnkit import functional as F


def test_gates_add_distributes_mul_swaps_max_routes():
    """f = (x + y) * z at x=-2, y=5, z=-4, built from affine gates, then max(f, -20)."""
    xy = np.array([[-2.0, 5.0]])
    q, add = F.affine_forward(xy, np.ones((2, 1)), np.zeros(1))  # q = x + y = 3
    f, mul = F.affine_forward(q, np.array([[-4.0]]), np.zeros(1))  # f = q * z = -12
    m, gate = F.max_pool2d_forward(np.array([[[[-12.0, -20.0]]]]), (1, 2))
    assert (q.item(), f.item(), m.item()) == (3, -12, -12)
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones((1, 1, 1, 1)), gate), [[[[1, 0]]]])  # routes
    dq, dz, _ = F.affine_backward(np.ones((1, 1)), mul)
    assert (dq.item(), dz.item()) == (-4, 3)  # swaps: df/dq = z, df/dz = q
    dxy, _, _ = F.affine_backward(dq, add)
    np.testing.assert_array_equal(dxy, [[-4, -4]])  # distributes


def test_affine_flattens_the_input(rng):
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((12, 5)), rng.standard_normal(5)
    out, cache = F.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x.reshape(2, 12) @ w + b, rtol=1e-12)
    assert F.affine_backward(np.ones((2, 5)), cache)[0].shape == (2, 3, 4)


@pytest.mark.parametrize("name, args, negative", [
    ("relu", (), 0.0), ("leaky_relu", (0.1,), -0.2), ("elu", (2.0,), 2 * (np.exp(-2) - 1)),
    ("sigmoid", (), 1 / (1 + np.exp(2))), ("tanh", (), np.tanh(-2)),
])
def test_activation_values(name, args, negative):
    out, _ = getattr(F, f"{name}_forward")(np.array([-2.0, 0.0, 3.0]), *args)
    positive = {"sigmoid": 1 / (1 + np.exp(-3)), "tanh": np.tanh(3)}.get(name, 3.0)
    np.testing.assert_allclose(out[[0, 2]], [negative, positive], rtol=1e-12)


def test_relu_backward_routes_only_through_positive_inputs():
    _, cache = F.relu_forward(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(F.relu_backward(np.array([5.0, 6.0, 7.0]), cache), [0, 0, 7])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "leaky_relu"])
def test_activations_do_not_overflow(name, dtype):
    x = np.array([-1e4, -80.0, 0.5, 80.0, 1e4], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = getattr(F, f"{name}_forward")(x)
        dx = getattr(F, f"{name}_backward")(np.ones_like(x), cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx)) and out.dtype == dx.dtype == dtype


# ---------------------------------------------------------------- batchnorm

def test_batchnorm_train_normalises_then_scales_and_shifts(rng):
    x = 5 + 3 * rng.standard_normal((50, 3))
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.0, -1.0, 4.0])
    out, _ = F.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-5)


def test_batchnorm_running_statistics(rng):
    x1, x2 = rng.standard_normal((8, 3)), 2 + rng.standard_normal((8, 3))
    gamma, beta = np.ones(3), np.zeros(3)
    bn_param = {"mode": "train", "momentum": 0.8}
    F.batchnorm_forward(x1, gamma, beta, bn_param)  # starts from mean 0, variance 1
    np.testing.assert_allclose(bn_param["running_mean"], 0.2 * x1.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], 0.8 + 0.2 * x1.var(axis=0), rtol=1e-12)
    F.batchnorm_forward(x2, gamma, beta, bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], 0.16 * x1.mean(axis=0) + 0.2 * x2.mean(axis=0), rtol=1e-12)
    bn_param["mode"] = "test"
    stats = bn_param["running_mean"].copy(), bn_param["running_var"].copy()
    out, _ = F.batchnorm_forward(x2, gamma, beta, bn_param)
    np.testing.assert_allclose(out, (x2 - stats[0]) / np.sqrt(stats[1] + 1e-5), rtol=1e-12)
    np.testing.assert_array_equal(bn_param["running_mean"], stats[0])  # test mode leaves them alone


def test_batchnorm_test_mode_without_statistics_uses_mean_zero_variance_one(rng):
    x = rng.standard_normal((4, 3))
    bn_param = {"mode": "test", "eps": 0.0625}
    out, _ = F.batchnorm_forward(x, np.full(3, 2.0), np.ones(3), bn_param)
    np.testing.assert_allclose(out, 2 * x / np.sqrt(1.0625) + 1, rtol=1e-12)
    assert "running_mean" not in bn_param


def test_batchnorm_statistics_keep_the_dtype(dtype, rng):
    bn_param = {"mode": "train"}
    F.spatial_batchnorm_forward(rng.standard_normal((2, 3, 4, 4)).astype(dtype), np.ones(3, dtype),
                                np.zeros(3, dtype), bn_param)
    assert bn_param["running_mean"].dtype == bn_param["running_var"].dtype == dtype


def test_spatial_batchnorm_is_batchnorm_per_channel(rng):
    x, gamma, beta = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(3), rng.standard_normal(3)
    spatial, flat = {"mode": "train"}, {"mode": "train"}
    out, _ = F.spatial_batchnorm_forward(x, gamma, beta, spatial)
    rows = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    expected, _ = F.batchnorm_forward(rows, gamma, beta, flat)
    np.testing.assert_allclose(out, expected.reshape(2, 4, 5, 3).transpose(0, 3, 1, 2), rtol=1e-12)
    np.testing.assert_allclose(spatial["running_var"], flat["running_var"], rtol=1e-12)


# ---------------------------------------------------------------- dropout

def test_dropout_train_zeroes_about_p_and_keeps_the_mean(rng, dtype):
    x = np.ones((200, 500), dtype=dtype)
    out, cache = F.dropout_forward(x, {"p": 0.3, "mode": "train"})
    kept = out != 0
    assert out.dtype == dtype and abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    dx = F.dropout_backward(np.full_like(x, 2), cache)
    np.testing.assert_array_equal(dx != 0, kept)


def test_dropout_seed_fixes_the_mask(rng):
    x = rng.standard_normal((10, 10))
    first, _ = F.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 1})
    again, _ = F.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 1})
    other, _ = F.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 2})
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("param", [{"p": 0.5, "mode": "test"}, {"p": 0.0, "mode": "train"}])
def test_dropout_identity(param, rng):
    x = rng.standard_normal((3, 4))
    out, cache = F.dropout_forward(x, param)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(F.dropout_backward(x, cache), x)
