"""Residual, Sequential nested in models, GlobalAvgPool2d and the CIFAR ResNet: keys, modes, files, torch."""
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as nn
from cnnkit.gradcheck import check_loss_gradients
from cnnkit.models import FullyConnectedNet, Sequential, basic_block, load, resnet
from cnnkit.trainer import Trainer

FIXTURES = Path(__file__).parent / "files"
F64 = dict(dtype=np.float64)


def nested(dtype=np.float64, dropout=0.0):
    """A Sequential holding Residuals that hold Sequentials: every container inside another."""
    return Sequential([
        nn.Conv2d(2, 4, 3, padding=1, bias=False, dtype=dtype, rng=0), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.Residual(nn.Sequential([
            nn.Conv2d(4, 4, 3, padding=1, dtype=dtype, rng=1), nn.ReLU(),
            nn.Residual(nn.Sequential([nn.Conv2d(4, 4, 1, bias=False, dtype=dtype, rng=2),
                                       nn.BatchNorm2d(4, dtype=dtype)])),
        ])),
        nn.ReLU(),
        nn.Residual(nn.Sequential([nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False, dtype=dtype, rng=3),
                                   nn.BatchNorm2d(6, dtype=dtype), *([nn.Dropout(dropout, rng=4)] if dropout else [])]),
                    nn.Residual.projection(4, 6, stride=2, dtype=dtype, rng=5)),
        nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(6, 3, dtype=dtype, rng=6),
    ], input_shape=(2, 6, 6))


def test_keys_are_dotted_paths_and_the_layers_own_arrays():
    model = nested()
    assert list(model.params) == [
        "0.weight", "1.weight", "1.bias", "3.body.0.weight", "3.body.0.bias", "3.body.2.body.0.weight",
        "3.body.2.body.1.weight", "3.body.2.body.1.bias", "5.body.0.weight", "5.body.1.weight", "5.body.1.bias",
        "5.shortcut.0.weight", "5.shortcut.1.weight", "5.shortcut.1.bias", "8.weight", "8.bias"]
    assert list(model.buffers) == [f"{layer}.{name}" for layer in ("1", "3.body.2.body.1", "5.body.1", "5.shortcut.1")
                                   for name in ("running_mean", "running_var")]
    residual = model.layers[5]
    assert model.params["5.shortcut.0.weight"] is residual.shortcut.layers[0].params["weight"]
    assert residual.params["shortcut.0.weight"] is model.params["5.shortcut.0.weight"]
    assert model.num_params == sum(p.size for p in model.params.values())


def test_gradients_match_numerical(backend, rng):
    cnnkit.set_num_threads(1)
    model = nested()
    X, y = rng.standard_normal((4, 2, 6, 6)), rng.integers(0, 3, 4)
    report = check_loss_gradients(lambda: model.loss(X, y), model.params)
    assert report.errors.keys() == model.params.keys()
    assert report.worst < 1e-5, report  # entries of 1e-6 carry 1e-11 of the differences' round-off


def test_fast_and_reference_agree_on_a_resnet(rng):
    X, y = rng.standard_normal((3, 3, 8, 8)).astype(np.float32), rng.integers(0, 10, 3)
    results = {}
    for name in cnnkit.available_backends():
        with cnnkit.use_backend(name):
            results[name] = resnet((3, 8, 8), 10, depth=8, width=4).loss(X, y)
    (loss, grads), (ref_loss, ref_grads) = results.get("fast", results["reference"]), results["reference"]
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for key, grad in grads.items():
        np.testing.assert_allclose(grad, ref_grads[key], rtol=1e-4, atol=1e-5)


def test_residual_backward_adds_the_branches_gradients(rng):
    body, shortcut = nn.Conv2d(2, 3, 3, padding=1, **F64, rng=0), nn.Conv2d(2, 3, 1, **F64, rng=1)
    block = nn.Residual(body, shortcut)
    x, dout = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_array_equal(block.forward(x), body.forward(x) + shortcut.forward(x))
    block.forward(x)
    dx = block.backward(dout)
    expected = body.backward(dout) + shortcut.backward(dout)
    np.testing.assert_array_equal(dx, expected)
    identity = nn.Residual(nn.Conv2d(2, 2, 1, **F64, rng=2))
    identity.forward(x)
    np.testing.assert_array_equal(identity.backward(dout[:, :2]), identity.body.backward(dout[:, :2]) + dout[:, :2])
    grads = {name: grad.copy() for name, grad in identity.grads.items()}
    assert identity.backward(dout[:, :2], input_grad=False) is None
    assert grads.keys() == identity.grads.keys() == {"body.weight", "body.bias"}
    for name, grad in identity.grads.items():
        np.testing.assert_array_equal(grad, grads[name])


def test_a_fused_conv_relu_inside_a_body_gives_the_unfused_bits(rng):
    conv, relu = nn.Conv2d(2, 2, 3, padding=1, rng=0), nn.ReLU()
    body = nn.Sequential([conv, relu])
    assert body.fused() == {1}
    block = nn.Residual(body)
    x, dout = rng.standard_normal((2, 2, 5, 5)).astype(np.float32), rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    out, dx = block.forward(x), block.backward(dout)
    assert relu._cache is None  # the ReLU ran inside the conv
    unfused = relu.forward(conv.forward(x)) + x
    np.testing.assert_array_equal(out, unfused)
    np.testing.assert_array_equal(dx, conv.backward(relu.backward(dout)) + dout)


def test_mode_reaches_the_layers_inside_containers(rng):
    model = nested(dropout=0.5)
    inner = [layer for layer in (model.layers[3].body.layers[2].body.layers[1], model.layers[5].body.layers[2])]
    assert all(layer.training for layer in inner)
    model.eval()
    assert not any(layer.training for layer in inner)
    X = rng.standard_normal((4, 2, 6, 6))
    np.testing.assert_array_equal(model.loss(X), model.loss(X))  # no dropout, running statistics
    model.train()
    assert all(layer.training for layer in inner)
    assert not np.array_equal(model.loss(X), model.loss(X))  # dropout draws a fresh mask each time


def test_save_and_load_keep_parameters_running_statistics_and_dropout_streams(tmp_path, rng):
    model = nested(np.float32, dropout=0.3)
    X = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
    for _ in range(3):
        model.loss(X, rng.integers(0, 3, 5))
    assert not np.allclose(model.buffers["5.shortcut.1.running_var"], 1)
    model.save(tmp_path / "model.npz")
    loaded = load(tmp_path / "model.npz")
    assert repr(loaded) == repr(model) and loaded.summary() == model.summary()
    for kind in ("params", "buffers"):
        assert getattr(loaded, kind).keys() == getattr(model, kind).keys()
        for key, value in getattr(model, kind).items():
            np.testing.assert_array_equal(getattr(loaded, kind)[key], value)
    np.testing.assert_array_equal(loaded.eval().loss(X), model.eval().loss(X))
    np.testing.assert_array_equal(loaded.train().loss(X), model.train().loss(X))  # the same dropout masks


@pytest.mark.parametrize("name", ["seq", "fc"])
def test_models_saved_before_containers_still_load(name):
    """Files written by cnnkit at 1cd135e (tests/models/files/make_models_1cd135e.py) load with the same scores."""
    model = load(FIXTURES / f"{name}-1cd135e.npz")
    assert isinstance(model, Sequential if name == "seq" else FullyConnectedNet)
    expected = np.load(FIXTURES / "scores-1cd135e.npz")
    np.testing.assert_allclose(model.eval().loss(expected[f"{name}_X"]), expected[f"{name}_scores"],
                               rtol=1e-6, atol=1e-6)


def test_summary_shows_the_layers_inside_containers():
    lines = nested().summary().splitlines()
    rows = {line.split()[0]: line for line in lines if line.startswith("(")}
    assert list(rows)[3:9] == ["(3)", "(3.body)", "(3.body.0)", "(3.body.1)", "(3.body.2)", "(3.body.2.body)"]
    assert rows["(5.shortcut.0)"].split()[1] == "Conv2d(4,"  # indented under its container
    assert "(N, 6, 3, 3)" in rows["(5)"] and rows["(5)"].split()[-1] == f"{nested().layers[5].num_params:,}"
    assert "(N, 6, 1, 1)" in rows["(7)"] and lines[-1] == f"total: {nested().num_params:,} parameters"


def test_max_norm_bounds_the_filters_inside_blocks(rng):
    model = nested(np.float32)
    assert {"3.body.2.body.0.weight", "5.shortcut.0.weight"} <= model.incoming_axes.keys()
    data = {"X_train": rng.standard_normal((20, 2, 6, 6)).astype(np.float32), "y_train": rng.integers(0, 3, 20),
            "X_val": rng.standard_normal((5, 2, 6, 6)).astype(np.float32), "y_val": rng.integers(0, 3, 5)}
    Trainer(model, data, update_rule="adam", optim_config={"learning_rate": 0.1}, batch_size=10, num_epochs=1,
            max_norm=0.5, seed=0, verbose=False).train()
    for key, axes in model.incoming_axes.items():
        assert np.all(np.sqrt(np.sum(model.params[key] ** 2, axis=axes)) <= 0.5 * (1 + 1e-6)), key


def test_global_avg_pool_is_the_mean_of_each_plane(rng):
    x = rng.standard_normal((3, 4, 5, 7))
    pool = nn.GlobalAvgPool2d()
    np.testing.assert_allclose(pool.forward(x), x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)
    dout = rng.standard_normal((3, 4, 1, 1))
    np.testing.assert_allclose(pool.backward(dout), np.broadcast_to(dout / 35, x.shape), rtol=1e-12)


def test_shapes_that_cannot_be_added_are_refused_with_a_hint():
    block = nn.Residual(nn.Conv2d(4, 8, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match=r"body's output has shape \(2, 8, 4, 4\) but the input has \(2, 4, 8, 8\)"
                                         r".*Residual.projection"):
        block.forward(np.zeros((2, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"but the shortcut's output has \(2, 8, 8, 8\)"):
        nn.Residual(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Conv2d(4, 8, 1)).output_shape((2, 4, 8, 8))
    with pytest.raises(TypeError, match=r"holds cnnkit\.layers\.Layer objects"):
        nn.Sequential([nn.ReLU(), "relu"])
    with pytest.raises(TypeError, match=r"holds cnnkit\.layers\.Layer objects"):
        nn.Residual(nn.ReLU(), shortcut=np.zeros(3))


@pytest.mark.parametrize("depth", [8, 14, 20])
def test_resnet_has_6n_plus_2_weighted_layers_in_three_stages(depth, rng):
    model = resnet((3, 32, 32), 10, depth=depth)
    convs = [w for key, w in model.params.items() if w.ndim == 4]
    assert sum(w.shape[2:] == (3, 3) for w in convs) == depth - 1  # + the linear layer: depth on the longest path
    assert [w.shape[0] for w in convs if w.shape[2:] == (1, 1)] == [32, 64]  # the projections of stages 2 and 3
    assert sorted({w.shape[0] for w in convs}) == [16, 32, 64]
    assert model.summary().splitlines()[-3].startswith("(" + str(len(model.layers) - 1) + ") Linear(in_features=64")
    assert model.loss(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)).shape == (2, 10)
    if depth == 20:  # He et al.'s 0.27M: 3x3 convs stage by stage, the projections, batchnorms, the linear layer
        convs = 9 * (3 * 16 + 6 * 16 * 16 + 16 * 32 + 5 * 32 * 32 + 32 * 64 + 5 * 64 * 64) + 16 * 32 + 32 * 64
        assert model.num_params == convs + 2 * (7 * 16 + 7 * 32 + 7 * 64) + 64 * 10 + 10


def test_basic_block_keeps_or_projects():
    same, relu = basic_block(16, 16)
    assert same.shortcut is None and type(relu) is nn.ReLU
    down, _ = basic_block(16, 32, stride=2)
    assert down.shortcut.layers[0].stride == (2, 2) and down.body.layers[0].stride == (2, 2)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        resnet((3, 32, 32), 10, depth=21)


def test_resnet_matches_torch(rng):
    """The same weights in torch: the same scores (eval) and loss and gradients (training)."""
    torch = pytest.importorskip("torch")
    model = resnet((3, 8, 8), 5, depth=8, width=4)
    for value in model.params.values():  # batchnorm's scale and shift away from 1 and 0
        if value.ndim == 1:
            value[:] = rng.uniform(0.5, 1.5, value.shape)
    mirror = torch_mirror(torch, model)
    X, y = rng.standard_normal((6, 3, 8, 8)).astype(np.float32), rng.integers(0, 5, 6)
    loss, grads = model.loss(X, y)
    scores = mirror(torch.from_numpy(X))
    expected = torch.nn.functional.cross_entropy(scores, torch.from_numpy(y))
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    for key, parameter in mirror.named_parameters():
        np.testing.assert_allclose(grads[key], torch_layout(key, parameter.grad.numpy()), rtol=1e-4, atol=1e-5)
    mirror = torch_mirror(torch, model).eval()  # cnnkit's running statistics (torch keeps the unbiased variance)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval().loss(X), mirror(torch.from_numpy(X)).numpy(), rtol=1e-4, atol=1e-5)


def torch_layout(key, array):
    """A torch parameter in cnnkit's layout: Linear weights are (in, out) in cnnkit."""
    return array.T if key.endswith("weight") and array.ndim == 2 else array


def torch_mirror(torch, model):
    """torch.nn modules with the same structure, names and weights as a cnnkit Sequential."""
    class Residual(torch.nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut or torch.nn.Identity()

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    def convert(layer):
        if isinstance(layer, nn.Sequential):
            return torch.nn.Sequential(*map(convert, layer.layers))
        if isinstance(layer, nn.Residual):
            return Residual(convert(layer.body), layer.shortcut and convert(layer.shortcut))
        if isinstance(layer, nn.Conv2d):
            module = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                     layer.padding, bias=layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            module = torch.nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum)
            module.running_mean.copy_(torch.from_numpy(layer.buffers["running_mean"]))
            module.running_var.copy_(torch.from_numpy(layer.buffers["running_var"]))
        elif isinstance(layer, nn.Linear):
            module = torch.nn.Linear(layer.in_features, layer.out_features)
        else:
            pool = lambda: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())  # noqa: E731
            return {nn.ReLU: torch.nn.ReLU, nn.GlobalAvgPool2d: pool}[type(layer)]()  # cnnkit's Linear flattens
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                parameter.copy_(torch.from_numpy(torch_layout(name, layer.params[name])))
        return module

    return torch.nn.Sequential(*map(convert, model.layers))
