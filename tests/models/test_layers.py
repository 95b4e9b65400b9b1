import re

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as nn
from cnnkit.gradcheck import check_gradients
from cnnkit.models.network import layer_config, layer_from_config


def check_layer(layer, x):
    """Worst relative error of the layer's dx and parameter gradients against numerical ones.

    Buffers are restored before every forward, so dropout draws the same mask each time.
    """
    snapshot = {name: value.copy() for name, value in layer.buffers.items()}

    def forward(x, **params):
        layer.buffers.update({name: value.copy() for name, value in snapshot.items()})
        return layer.forward(x), None

    def backward(dout, _):
        return (layer.backward(dout), *(layer.grads[name] for name in layer.params))

    return check_gradients(forward, backward, {"x": x, **layer.params})


def bn_after_one_batch(layer, rng):
    layer.forward(rng.standard_normal((6, *LAYER_INPUTS[type(layer).__name__][1:])) + 2.0)
    return layer.eval()


LAYER_INPUTS = {
    "Conv2d": (2, 2, 5, 6), "MaxPool2d": (2, 2, 5, 5), "AvgPool2d": (2, 2, 5, 5), "Linear": (3, 3, 2, 2),
    "BatchNorm1d": (5, 4), "BatchNorm2d": (3, 3, 2, 2), "Flatten": (2, 3, 2), "Dropout": (4, 6),
    "GlobalAvgPool2d": (2, 3, 4, 5), "Residual": (2, 2, 5, 5), "Sequential": (2, 2, 5, 5),
}
F64 = dict(dtype=np.float64)
GRADIENT_CASES = {
    "conv": lambda rng: nn.Conv2d(2, 3, (3, 2), stride=2, padding=1, dtype=np.float64, rng=0),
    "conv-nobias": lambda rng: nn.Conv2d(2, 3, 3, padding=1, bias=False, dtype=np.float64, rng=0),
    "maxpool": lambda rng: nn.MaxPool2d(3, stride=2, padding=1),
    "avgpool": lambda rng: nn.AvgPool2d(2, stride=1),
    "linear": lambda rng: nn.Linear(12, 4, dtype=np.float64, init="xavier", rng=0),
    "relu": lambda rng: nn.ReLU(),
    "leaky": lambda rng: nn.LeakyReLU(0.2),
    "sigmoid": lambda rng: nn.Sigmoid(),
    "tanh": lambda rng: nn.Tanh(),
    "elu": lambda rng: nn.ELU(0.5),
    "flatten": lambda rng: nn.Flatten(),
    "bn1d": lambda rng: nn.BatchNorm1d(4, dtype=np.float64),
    "bn1d-eval": lambda rng: bn_after_one_batch(nn.BatchNorm1d(4, dtype=np.float64), rng),
    "bn2d": lambda rng: nn.BatchNorm2d(3, dtype=np.float64),
    "dropout": lambda rng: nn.Dropout(0.3, rng=0),
    "global-avgpool": lambda rng: nn.GlobalAvgPool2d(),
    "residual-identity": lambda rng: nn.Residual(nn.Sequential([
        nn.Conv2d(2, 2, 3, padding=1, bias=False, rng=0, **F64), nn.BatchNorm2d(2, **F64), nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=1, rng=1, **F64)])),
    "residual-projection-fused": lambda rng: nn.Residual(  # the body's conv+ReLU runs fused
        nn.Sequential([nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=0, **F64), nn.ReLU()]),
        nn.Residual.projection(2, 3, stride=2, rng=1, **F64)),
    "sequential-nested": lambda rng: nn.Sequential([
        nn.Conv2d(2, 3, 3, padding=1, rng=0, **F64), nn.Tanh(), nn.Residual(nn.Conv2d(3, 3, 1, rng=1, **F64)),
        nn.Residual(nn.Sequential([nn.Residual(nn.Sigmoid())])), nn.GlobalAvgPool2d()]),
}
CASES = pytest.mark.parametrize("make", GRADIENT_CASES.values(), ids=GRADIENT_CASES.keys())


@CASES
def test_gradients_match_numerical(make, backend, rng):
    cnnkit.set_num_threads(1)  # hundreds of tiny calls, where threads only add overhead
    layer = make(rng)
    x = rng.standard_normal(LAYER_INPUTS.get(type(layer).__name__, (3, 5)))
    if isinstance(layer, nn._BatchNorm) and layer.training:  # non-trivial scale and shift
        layer.params["weight"][:] = rng.uniform(0.5, 2.0, layer.num_features)
        layer.params["bias"][:] = rng.standard_normal(layer.num_features)
    report = check_layer(layer, x)
    assert report.worst < 1e-7, report


def test_conv2d_parameter_count_and_shapes():
    conv = nn.Conv2d(3, 10, 5, padding=2)
    assert conv.num_params == 760
    assert conv.params["weight"].shape == (10, 3, 5, 5) and conv.params["bias"].shape == (10,)
    assert conv.output_shape((4, 3, 32, 32)) == (4, 10, 32, 32)
    assert nn.Conv2d(3, 10, 5, bias=False).num_params == 750


@pytest.mark.parametrize("layer, count", [
    (nn.Linear(10, 5), 55), (nn.BatchNorm2d(4), 8), (nn.BatchNorm1d(7), 14), (nn.ReLU(), 0),
    (nn.MaxPool2d(2), 0), (nn.Dropout(), 0)])
def test_parameter_counts(layer, count):
    assert layer.num_params == count


@pytest.mark.parametrize("layer, text", [
    (nn.Conv2d(3, 10, 5, padding=2), "Conv2d(3, 10, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"),
    (nn.Conv2d(3, 10, 3, bias=False), "Conv2d(3, 10, kernel_size=(3, 3), stride=(1, 1), padding=(0, 0), bias=False)"),
    (nn.Linear(4, 2), "Linear(in_features=4, out_features=2, bias=True)"),
    (nn.MaxPool2d(2), "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"),
    (nn.AvgPool2d(3, stride=1), "AvgPool2d(kernel_size=(3, 3), stride=(1, 1), padding=(0, 0))"),
    (nn.ReLU(), "ReLU()"), (nn.LeakyReLU(0.2), "LeakyReLU(negative_slope=0.2)"), (nn.ELU(), "ELU(alpha=1.0)"),
    (nn.BatchNorm2d(16), "BatchNorm2d(16, eps=1e-05, momentum=0.1)"), (nn.Dropout(0.25), "Dropout(p=0.25)"),
    (nn.Flatten(), "Flatten()"), (nn.GlobalAvgPool2d(), "GlobalAvgPool2d()"),
    (nn.Residual(nn.Sequential([nn.ReLU()]), nn.Conv2d(3, 3, 1)),
     "Residual(\n  (body): Sequential(\n    (0): ReLU()\n  )\n"
     "  (shortcut): Conv2d(3, 3, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0))\n)")])
def test_repr(layer, text):
    assert repr(layer) == text


@CASES
def test_config_rebuilds_an_equal_layer(make, rng):
    layer = make(rng)
    rebuilt = layer_from_config(layer_config(layer))
    assert repr(rebuilt) == repr(layer) and rebuilt.config() == layer.config()
    assert {k: v.shape for k, v in rebuilt.params.items()} == {k: v.shape for k, v in layer.params.items()}


@pytest.mark.parametrize("make", [lambda **kw: nn.Linear(6, 4, **kw), lambda **kw: nn.Conv2d(2, 3, 3, **kw),
                                  lambda **kw: nn.BatchNorm1d(4, **kw)])
def test_dtype_chosen_at_construction(make, dtype):
    layer = make(dtype=dtype)
    assert all(a.dtype == dtype for a in [*layer.params.values(), *layer.buffers.values()])
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        make(dtype=np.int32)


def test_layer_refuses_input_of_another_dtype(rng):
    with pytest.raises(TypeError, match=r"float64.*float32|float32.*float64"):
        nn.Linear(4, 2).forward(rng.standard_normal((3, 4)))
    out = nn.Linear(4, 2).forward(rng.standard_normal((3, 4)).astype(np.float32))
    assert out.dtype == np.float32


def test_initialisation_is_seeded_and_scaled():
    a, b = nn.Linear(800, 300, rng=1), nn.Linear(800, 300, rng=1)
    assert np.array_equal(a.params["weight"], b.params["weight"])
    assert not np.array_equal(a.params["weight"], nn.Linear(800, 300, rng=2).params["weight"])
    assert np.std(a.params["weight"]) == pytest.approx(np.sqrt(2 / 800), rel=0.02)
    xavier = nn.Conv2d(20, 30, 3, init="xavier", rng=0).params["weight"]
    assert np.std(xavier) == pytest.approx(np.sqrt(2 / (20 * 9 + 30 * 9)), rel=0.02)
    assert np.std(nn.Linear(800, 300, init=1e-3, rng=0).params["weight"]) == pytest.approx(1e-3, rel=0.02)
    assert not nn.Linear(8, 3).params["bias"].any()
    with pytest.raises(ValueError, match="init must be 'he', 'xavier' or a positive float"):
        nn.Linear(8, 3, init="uniform")


@pytest.mark.parametrize("layer, shape, expected", [
    (nn.Conv2d(3, 8, 3), (2, 4, 8, 8), "(N, 3, H, W)"),
    (nn.Conv2d(3, 8, 3), (3, 8, 8), "(N, 3, H, W)"),
    (nn.Linear(12, 4), (2, 10), "(N, 12)"),
    (nn.BatchNorm1d(4), (2, 5), "(N, 4)"),
    (nn.BatchNorm2d(4), (2, 4), "(N, 4, H, W)"),
    (nn.MaxPool2d(2), (2, 8, 8), "(N, C, H, W)"),
    (nn.GlobalAvgPool2d(), (2, 8), "(N, C, H, W)"),
    (nn.Residual(nn.Linear(4, 4)), (2, 5), "(N, 4)"),
    (nn.Flatten(), (5,), "(N, ...)")])
def test_wrong_input_shape_names_the_expected_shape(layer, shape, expected):
    with pytest.raises(ValueError, match=re.escape(f"expects input of shape {expected}")) as error:
        layer.forward(np.zeros(shape, np.float32))
    assert str(error.value).endswith(f"got {shape}")


def test_kernel_larger_than_input_names_the_sizes():
    with pytest.raises(ValueError, match="kernel size 5 is larger than the padded input size 4"):
        nn.Conv2d(1, 1, 5).forward(np.zeros((1, 1, 4, 4), np.float32))


def test_backward_checks_order_and_shape(rng):
    relu = nn.ReLU()
    with pytest.raises(RuntimeError, match="backward called before forward"):
        relu.backward(np.ones((2, 3)))
    relu.forward(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match=r"dout must have the output's shape \(2, 3\), got \(3, 2\)"):
        relu.backward(np.ones((3, 2)))


def test_batchnorm_momentum_has_pytorch_meaning_and_eval_uses_running_stats(rng):
    bn = nn.BatchNorm1d(3, momentum=0.1, dtype=np.float64)
    x = rng.standard_normal((50, 3)) * 2 + 5
    bn.forward(x)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.9 + 0.1 * x.var(axis=0), rtol=1e-12)
    bn.eval()
    expected = (x - bn.buffers["running_mean"]) / np.sqrt(bn.buffers["running_var"] + bn.eps)
    np.testing.assert_allclose(bn.forward(x), expected, rtol=1e-12)
    bn.forward(x)  # evaluation leaves the statistics alone
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-12)


def test_dropout_masks_are_reproducible_fresh_per_call_and_off_in_eval(rng):
    x = np.ones((200, 50))
    a, b = nn.Dropout(0.3, rng=7), nn.Dropout(0.3, rng=7)
    first, second = a.forward(x), a.forward(x)
    assert np.array_equal(first, b.forward(x)) and not np.array_equal(first, second)
    assert set(np.unique(first)) == {0.0, 1 / 0.7}
    assert np.mean(first == 0) == pytest.approx(0.3, abs=0.02)
    assert a.buffers["state"][1] == 2
    assert np.array_equal(a.eval().forward(x), x) and a.buffers["state"][1] == 2


def test_bias_false_behaves_like_zero_bias(rng):
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    with_bias, without = nn.Conv2d(2, 3, 3, rng=0), nn.Conv2d(2, 3, 3, bias=False, rng=0)
    assert "bias" not in without.params
    np.testing.assert_array_equal(with_bias.forward(x), without.forward(x))
    without.backward(np.ones_like(without.forward(x)))
    assert set(without.grads) == {"weight"}


@pytest.mark.parametrize("bad", [
    lambda: nn.Conv2d(0, 3, 3), lambda: nn.Linear(3, 2.5), lambda: nn.Dropout(1.0),
    lambda: nn.BatchNorm1d(3, momentum=1.5), lambda: nn.MaxPool2d(0)])
def test_bad_arguments_raise_value_error(bad):
    with pytest.raises(ValueError):
        bad()


def test_flatten_takes_an_empty_batch():
    flatten = nn.Flatten()
    assert flatten.forward(np.zeros((0, 3, 4, 5), np.float32)).shape == (0, 60)
    assert flatten.backward(np.zeros((0, 60), np.float32)).shape == (0, 3, 4, 5)
