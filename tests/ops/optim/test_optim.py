"""Update rules against steps computed by hand: w = 1, dw = 2 then dw = 1."""
import numpy as np
import pytest

from cnnkit import optim


def two_steps(rule, **config):
    w, config = rule(np.array([1.0]), np.array([2.0]), config)
    first = w[0]
    w, config = rule(w, np.array([1.0]), config)
    return first, w[0], config


def test_sgd():
    first, second, _ = two_steps(optim.sgd, learning_rate=0.1)
    assert (first, second) == pytest.approx((0.8, 0.7), abs=1e-15)


def test_sgd_momentum():
    # v = -0.1*2 = -0.2, w = 0.8; v = 0.9*(-0.2) - 0.1*1 = -0.28, w = 0.52
    first, second, config = two_steps(optim.sgd_momentum, learning_rate=0.1)
    assert (first, second) == pytest.approx((0.8, 0.52), abs=1e-15)
    assert config["velocity"] == pytest.approx([-0.28])


def test_nesterov():
    # v = -0.2, w = 1 - 0 + 1.9*(-0.2) = 0.62; v = -0.28, w = 0.62 + 0.9*0.2 + 1.9*(-0.28) = 0.268
    first, second, config = two_steps(optim.nesterov, learning_rate=0.1)
    assert (first, second) == pytest.approx((0.62, 0.268), abs=1e-15)
    assert config["velocity"] == pytest.approx([-0.28])


def test_rmsprop():
    # cache = 0.01*4 = 0.04, w = 1 - 0.1*2/(0.2 + eps)
    # cache = 0.99*0.04 + 0.01*1 = 0.0496, w -= 0.1*1/(sqrt(0.0496) + eps)
    first, second, config = two_steps(optim.rmsprop, learning_rate=0.1)
    assert first == pytest.approx(1 - 0.2 / (0.2 + 1e-8), abs=1e-15)
    assert second == pytest.approx(first - 0.1 / (np.sqrt(0.0496) + 1e-8), abs=1e-15)
    assert config["cache"] == pytest.approx([0.0496])


def test_adam():
    # t=1: m = 0.2, v = 0.004, m_hat = 2, v_hat = 4: w = 1 - 0.1*2/2 = 0.9
    # t=2: m = 0.28, v = 0.004996, m_hat = 0.28/0.19, v_hat = 0.004996/0.001999
    first, second, config = two_steps(optim.adam, learning_rate=0.1)
    assert first == pytest.approx(0.9, abs=1e-8)
    assert second == pytest.approx(0.9 - 0.1 * (0.28 / 0.19) / np.sqrt(0.004996 / 0.001999), rel=1e-7)
    assert config["t"] == 2 and config["m"] == pytest.approx([0.28]) and config["v"] == pytest.approx([0.004996])


@pytest.mark.parametrize("rule, defaults", [
    (optim.sgd, {"learning_rate": 1e-2}),
    (optim.sgd_momentum, {"learning_rate": 1e-2, "momentum": 0.9}),
    (optim.nesterov, {"learning_rate": 1e-2, "momentum": 0.9}),
    (optim.rmsprop, {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}),
    (optim.adam, {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8})])
def test_course_defaults_fill_the_config(rule, defaults, dtype):
    w = np.ones((2, 3), dtype)
    next_w, config = rule(w, np.full((2, 3), 0.5, dtype))
    assert rule.defaults == defaults and {k: config[k] for k in defaults} == defaults
    assert next_w.dtype == dtype and np.all(w == 1) and np.all(next_w < 1)


def test_given_hyperparameters_are_kept():
    _, config = optim.adam(np.ones(2), np.ones(2), {"learning_rate": 5e-4, "beta1": 0.5})
    assert config["learning_rate"] == 5e-4 and config["beta1"] == 0.5 and config["beta2"] == 0.999


def test_get_update_rule():
    assert optim.get_update_rule("adam") is optim.adam
    assert optim.get_update_rule(optim.sgd) is optim.sgd
    with pytest.raises(ValueError, match=r"unknown update rule 'adagrad'.*'sgd_momentum'"):
        optim.get_update_rule("adagrad")


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"one shape, got \(2,\) and \(3,\)"):
        optim.sgd(np.ones(2), np.ones(3))
