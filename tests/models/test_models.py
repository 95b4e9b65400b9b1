import os

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as nn
from cnnkit.gradcheck import check_loss_gradients
from cnnkit.models import FullyConnectedNet, Sequential, ThreeLayerConvNet, TwoLayerNet, load
from cnnkit.trainer import Trainer


def small_sequential(dtype=np.float64, loss="softmax", reg=0.0):
    return Sequential([
        nn.Conv2d(2, 3, 3, padding=1, bias=False, dtype=dtype, rng=0), nn.BatchNorm2d(3, dtype=dtype),
        nn.LeakyReLU(0.1),
        nn.MaxPool2d(2), nn.Conv2d(3, 2, 2, stride=1, dtype=dtype, rng=1), nn.Tanh(),
        nn.AvgPool2d(1), nn.Flatten(), nn.Linear(2 * 2 * 2, 6, dtype=dtype, rng=2), nn.ELU(), nn.Dropout(0.2, rng=3),
        nn.Sigmoid(), nn.BatchNorm1d(6, dtype=dtype), nn.Linear(6, 4, dtype=dtype, rng=4),
    ], loss=loss, reg=reg, input_shape=(2, 6, 6))


MODELS = {
    "two-layer": lambda: TwoLayerNet(input_dim=8, hidden_dim=7, num_classes=4, weight_scale=0.5, reg=0.3,
                                     dtype=np.float64, rng=0),
    "fc": lambda: FullyConnectedNet([6, 5, 4], input_dim=8, num_classes=4, reg=0.1, weight_scale=0.5,
                                    dtype=np.float64, rng=0),
    "fc-bn-dropout": lambda: FullyConnectedNet([6, 5], input_dim=8, num_classes=4, dropout=0.25,
                                               normalization="batchnorm", reg=0.05, weight_scale=0.5,
                                               dtype=np.float64, rng=0),
    "fc-no-hidden": lambda: FullyConnectedNet([], input_dim=8, num_classes=4, dtype=np.float64, rng=0),
    "conv": lambda: ThreeLayerConvNet(input_dim=(2, 6, 6), num_filters=3, filter_size=3, hidden_dim=5,
                                      num_classes=4, weight_scale=0.3, reg=0.2, dtype=np.float64, rng=0),
    "sequential": small_sequential,
    "sequential-svm": lambda: small_sequential(loss="svm", reg=0.1),
}
INPUTS = {"two-layer": (8,), "fc": (2, 4), "fc-bn-dropout": (8,), "fc-no-hidden": (8,)}


def batch(name, rng, n=5):
    X = rng.standard_normal((n, *INPUTS.get(name, (2, 6, 6))))
    return X, rng.integers(0, 4, n)


def frozen_loss(model, X, y):
    """model.loss(X, y) with the buffers restored first, so dropout draws the same mask each call."""
    snapshot = {key: value.copy() for key, value in model.buffers.items()}

    def loss():
        for key, value in snapshot.items():
            model.buffers[key] = value.copy()
        return model.loss(X, y)

    return loss


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_model_gradients_match_numerical(name, backend, rng):
    cnnkit.set_num_threads(1)  # thousands of tiny calls, where threads only add overhead
    model = MODELS[name]()
    X, y = batch(name, rng)
    report = check_loss_gradients(frozen_loss(model, X, y), model.params)
    assert report.errors.keys() == model.params.keys()
    assert report.worst < 1e-6, report


def test_course_keys():
    assert list(TwoLayerNet().params) == ["W1", "b1", "W2", "b2"]
    assert list(ThreeLayerConvNet().params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    fc = FullyConnectedNet([5, 4], input_dim=6, normalization="batchnorm", dropout=0.5)
    assert list(fc.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    assert list(fc.buffers) == ["running_mean1", "running_var1", "dropout1_state",
                                "running_mean2", "running_var2", "dropout2_state"]
    assert list(small_sequential().params)[:4] == ["0.weight", "1.weight", "1.bias", "4.weight"]
    assert list(small_sequential().buffers) == ["1.running_mean", "1.running_var", "10.state", "12.running_mean",
                                                "12.running_var"]


def test_course_shapes_and_parameter_counts():
    net = ThreeLayerConvNet()
    assert net.params["W1"].shape == (32, 3, 7, 7) and net.params["W2"].shape == (32 * 16 * 16, 100)
    assert net.num_params == 32 * 3 * 49 + 32 + 32 * 16 * 16 * 100 + 100 + 100 * 10 + 10
    assert TwoLayerNet(input_dim=20, hidden_dim=10, num_classes=3).num_params == 20 * 10 + 10 + 10 * 3 + 3
    assert net.params["W1"].dtype == np.float32
    assert np.std(net.params["W2"]) == pytest.approx(1e-3, rel=0.01)


def test_regularisation_adds_half_reg_times_squared_weights(rng):
    X, y = batch("conv", rng)
    plain, regularised = (ThreeLayerConvNet(input_dim=(2, 6, 6), num_filters=3, filter_size=3, hidden_dim=5,
                                            num_classes=4, reg=reg, dtype=np.float64, rng=0) for reg in (0.0, 0.5))
    (loss0, grads0), (loss1, grads1) = plain.loss(X, y), regularised.loss(X, y)
    weights = [regularised.params[k] for k in ("W1", "W2", "W3")]
    assert loss1 - loss0 == pytest.approx(0.25 * sum(np.sum(w * w) for w in weights), rel=1e-10)
    np.testing.assert_allclose(grads1["W2"] - grads0["W2"], 0.5 * regularised.params["W2"], atol=1e-12)
    np.testing.assert_array_equal(grads1["b2"], grads0["b2"])


def test_loss_without_labels_gives_scores_and_predict_runs_in_eval_mode(rng):
    model = MODELS["fc-bn-dropout"]()
    X, _ = batch("fc-bn-dropout", rng, n=7)
    assert model.loss(X).shape == (7, 4)
    predicted = model.predict(X, batch_size=3)
    assert model.training and predicted.shape == (7,)
    np.testing.assert_array_equal(predicted, np.argmax(model.eval().loss(X), axis=1))


def test_params_is_a_dict_shared_with_the_layers(rng):
    model = TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2)
    assert type(model.params) is dict and model.params["W1"] is model.layers[0].params["weight"]
    model.params["b2"] = np.ones(2, np.float32)
    X = rng.standard_normal((3, 4)).astype(np.float32)
    model.params["W2"] = np.zeros((3, 2), np.float32)
    np.testing.assert_array_equal(model.loss(X), np.ones((3, 2)))
    assert model.layers[2].params["bias"] is model.params["b2"]
    model.params["b2"] = np.ones(2)
    with pytest.raises(ValueError, match=r"model.params\['b2'\] must be a float32 array of shape \(2,\), got float64"):
        model.loss(X)
    model.params["b2"] = np.ones(2, np.float32)
    del model.params["W1"]
    with pytest.raises(KeyError, match=r"model.params must have the keys \['W1', 'b1', 'W2', 'b2'\]"):
        model.loss(X)


def test_model_refuses_input_of_another_dtype_or_shape(rng):
    model = TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2)
    with pytest.raises(TypeError, match="float64"):
        model.loss(rng.standard_normal((2, 4)))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 4\)"):
        model.loss(np.zeros((2, 5), np.float32))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path, rng):
    model = MODELS[name]()
    X, y = batch(name, rng)
    model.loss(X, y)  # moves batchnorm statistics and the dropout stream away from their start
    path = tmp_path / "model.npz"
    model.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]
    loaded = load(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model) and loaded.reg == model.reg
    for views in ("params", "buffers"):
        a, b = getattr(model, views), getattr(loaded, views)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    np.testing.assert_array_equal(loaded.loss(X, y)[0], model.loss(X, y)[0])
    np.testing.assert_array_equal(loaded.eval().loss(X), model.eval().loss(X))
    assert type(model).load(path).num_params == model.num_params


def test_load_checks_the_class_and_the_file(tmp_path):
    TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2).save(tmp_path / "two.npz")
    with pytest.raises(TypeError, match="holds a TwoLayerNet, not a ThreeLayerConvNet"):
        ThreeLayerConvNet.load(tmp_path / "two.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="is not a cnnkit-model file"):
        load(tmp_path / "other.npz")


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "model.npz"
    TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2).save(path)
    model = TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2, rng=5)
    model.save(path)
    assert np.array_equal(load(path).params["W1"], model.params["W1"]) and len(os.listdir(tmp_path)) == 1


def test_summary_lists_layers_shapes_and_counts():
    text = ThreeLayerConvNet().summary()
    assert "ThreeLayerConvNet: input (N, 3, 32, 32)" in text
    assert "(0) Conv2d(3, 32, kernel_size=(7, 7), stride=(1, 1), padding=(3, 3))" in text
    assert "(N, 32, 16, 16)" in text and "819,300" in text and "total: 825,046 parameters" in text
    sequential = Sequential([nn.Flatten(), nn.Linear(12, 2)])
    with pytest.raises(ValueError, match=r"summary needs the shape of one sample"):
        sequential.summary()
    assert "(N, 12)" in sequential.summary((3, 2, 2))
    with pytest.raises(ValueError, match=r"Linear\(in_features=12.*expects input of shape"):
        sequential.summary((3, 2, 3))


def test_repr_lists_layers():
    assert repr(TwoLayerNet(input_dim=4, hidden_dim=3, num_classes=2)) == (
        "TwoLayerNet(\n  (0): Linear(in_features=4, out_features=3, bias=True)\n  (1): ReLU()\n"
        "  (2): Linear(in_features=3, out_features=2, bias=True)\n)")


def test_bad_model_arguments():
    with pytest.raises(TypeError, match="Layer objects"):
        Sequential([nn.ReLU(), "relu"])
    with pytest.raises(ValueError, match="loss must be one of"):
        Sequential([nn.ReLU()], loss="hinge")
    with pytest.raises(ValueError, match="normalization must be None or 'batchnorm'"):
        FullyConnectedNet([3], normalization="layernorm")
    with pytest.raises(ValueError, match="larger than the padded input"):
        ThreeLayerConvNet(input_dim=(3, 1, 1))


def random_problem(rng, shape, n=50, classes=10, dtype=np.float32):
    return {"X_train": rng.standard_normal((n, *shape)).astype(dtype), "y_train": rng.integers(0, classes, n)}


@pytest.mark.parametrize("make, shape, options", [
    (lambda: ThreeLayerConvNet(input_dim=(3, 16, 16), num_filters=8, filter_size=3, hidden_dim=50,
                               weight_scale=1e-2, rng=0), (3, 16, 16), dict(num_epochs=15)),
    (lambda: FullyConnectedNet([100, 100], input_dim=48, weight_scale=5e-2, rng=0), (48,), dict(num_epochs=20)),
], ids=["conv", "fc"])
def test_overfits_50_samples(make, shape, options, rng):
    trainer = Trainer(make(), random_problem(rng, shape), update_rule="adam", optim_config={"learning_rate": 1e-2},
                      batch_size=10, seed=0, verbose=False, **options).train()
    assert trainer.train_acc_history[-1] == 1.0


@pytest.mark.skipif("fast" not in cnnkit.available_backends(), reason="the fast backend is not built")
def test_same_run_gives_matching_losses_on_both_backends(rng):
    if not hasattr(cnnkit.fast, "conv2d_forward"):
        pytest.skip("the fast backend has no conv2d yet")
    data = random_problem(rng, (3, 8, 8), n=20, dtype=np.float64)
    histories = {}
    for name in ("reference", "fast"):
        with cnnkit.use_backend(name):
            model = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=4, filter_size=3, hidden_dim=20,
                                      weight_scale=1e-1, dtype=np.float64, rng=0)
            trainer = Trainer(model, data, update_rule="adam", batch_size=5, num_epochs=2, seed=0, verbose=False)
            histories[name] = trainer.train().loss_history
    np.testing.assert_allclose(histories["fast"], histories["reference"], rtol=1e-10)


def test_a_relu_right_after_a_conv2d_runs_inside_it_with_the_same_results(rng, backend):
    class OwnReLU(nn.ReLU):
        pass

    model = Sequential([
        nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0), nn.ReLU(),
        nn.Conv2d(3, 3, 1, dtype=np.float64, rng=1), nn.LeakyReLU(0.1), nn.ReLU(),
        nn.Conv2d(3, 3, 1, dtype=np.float64, rng=2), OwnReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4, dtype=np.float64, rng=3), nn.ReLU(),
    ])
    assert model.fused() == {1}
    X, y = rng.standard_normal((5, 2, 6, 6)), rng.integers(0, 4, 5)
    loss, grads = model.loss(X, y)
    scores = X
    for layer in model.layers:  # one by one: no fusion
        scores = layer.forward(scores)
    expected, dscores = cnnkit.functional.softmax_loss(scores, y)
    for layer in reversed(model.layers):
        dscores = layer.backward(dscores)
    assert loss == expected  # loss() spares the first layer its input gradient: the same bits
    for key, grad in grads.items():
        index, name = key.split(".")
        np.testing.assert_array_equal(grad, model.layers[int(index)].grads[name])
    model.forward(X)
    assert model.backward(np.ones((5, 4)), input_grad=False) is None
    assert model.backward(np.ones((5, 4))).shape == X.shape


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0), (2, 2, 5, 5)),
    (nn.Linear(6, 4, dtype=np.float64, rng=0), (3, 6)),
    (nn.Maxout(6, 4, dtype=np.float64, rng=0), (3, 6)),
    (nn.BatchNorm1d(6, dtype=np.float64), (3, 6)),
])
def test_layer_backward_without_the_input_gradient(layer, shape, rng):
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(layer.output_shape(shape))
    layer.forward(x)
    assert layer.backward(dout).shape == shape
    expected = {name: grad.copy() for name, grad in layer.grads.items()}
    assert layer.backward(dout, input_grad=False) is None
    assert expected.keys() == layer.grads.keys() and len(expected) >= 2
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, expected[name])
