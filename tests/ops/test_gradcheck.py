import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit.gradcheck import (
    GradientReport,
    check_gradients,
    check_loss_gradients,
    numerical_gradient,
    numerical_gradient_array,
    rel_error,
)


def test_numerical_gradient_of_a_cubic_and_x_is_restored(rng):
    x = rng.standard_normal((3, 4))
    before = x.copy()
    grad = numerical_gradient(lambda a: np.sum(a ** 3), x)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_works_with_a_closure_and_restores_x_on_error(rng):
    x = rng.standard_normal(4)
    np.testing.assert_allclose(numerical_gradient(lambda _: np.sin(x).sum(), x), np.cos(x), rtol=1e-8)
    before = x.copy()
    with pytest.raises(ZeroDivisionError):
        numerical_gradient(lambda _: 1 / 0, x)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_array_is_the_vector_jacobian_product(rng):
    a, x, dout = rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(5)
    np.testing.assert_allclose(numerical_gradient_array(lambda v: a @ v, x, dout), a.T @ dout, rtol=1e-8)


def test_numerical_gradient_needs_a_float_array():
    with pytest.raises(TypeError, match=r"x must be a float ndarray .* got list"):
        numerical_gradient(sum, [1.0, 2.0])
    with pytest.raises(TypeError, match="got ndarray of dtype int64"):
        numerical_gradient(np.sum, np.arange(3))


def test_rel_error():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.1, 2.0])) == pytest.approx(0.1 / 2.1)
    assert rel_error(0.0, 0.0) == 0.0
    assert rel_error(np.zeros(2), np.full(2, 1e-9)) == pytest.approx(1e-9 / 1e-8)  # floor of 1e-8
    with pytest.raises(ValueError, match=r"one shape, got \(2,\) and \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


def test_check_gradients_names_inputs_and_reports_the_worst(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    report = check_gradients(F.affine_forward, F.affine_backward, dict(x=x, w=w, b=b))
    assert list(report.errors) == ["x", "w", "b"] and report.worst == max(report.errors.values()) < 1e-8
    assert str(report).startswith(f"worst relative error {report.worst:.2e} (x: ")
    assert list(check_gradients(F.affine_forward, F.affine_backward, [x, w, b]).errors) == ["0", "1", "2"]


def test_check_gradients_catches_a_wrong_backward(rng):
    x = rng.standard_normal((4, 5))
    wrong = lambda dout, cache: 2 * F.tanh_backward(dout, cache)  # noqa: E731
    assert check_gradients(F.tanh_forward, wrong, [x]).worst > 0.3
    with pytest.raises(ValueError, match=r"one gradient per input \(2\), got 1"):
        check_gradients(lambda x, y: F.tanh_forward(x + y), F.tanh_backward, [x, x.copy()])


def test_check_loss_gradients_on_a_model_like_loss(rng):
    params = {"W": rng.standard_normal((2, 3)), "b": rng.standard_normal(2)}
    x, target = rng.standard_normal(3), rng.standard_normal(2)

    def loss():
        residual = params["W"] @ x + params["b"] - target
        return residual @ residual, {"b": 2 * residual, "W": 2 * np.outer(residual, x)}

    report = check_loss_gradients(loss, params)
    assert set(report.errors) == {"W", "b"} and report.worst < 1e-8
    assert isinstance(report, GradientReport)
