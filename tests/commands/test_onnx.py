"""cnnkit.onnx.export and `cnnkit export`: onnx.checker passes and onnxruntime gives cnnkit's scores."""
import numpy as np
import pytest
from helpers import DATA_DIR, run_python

from cnnkit import layers as nn
from cnnkit.cli import main
from cnnkit.datasets import load_builtin, load_dataset, normalize
from cnnkit.models import FullyConnectedNet, Sequential, ThreeLayerConvNet, TwoLayerNet, load
from cnnkit.recipes import MODEL_CHOICES, build_model, convnet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from cnnkit.onnx import OPSET, export  # noqa: E402  (needs onnx)

TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # float32


def run_onnx(path, images):
    """Scores onnxruntime computes for images with the model at path."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["scores"], {"images": images})[0]


def exported_scores(model, tmp_path, images, **options):
    """(onnxruntime's scores, cnnkit's scores in evaluation mode) for images, after a checked export."""
    path = tmp_path / "model.onnx"
    export(model, path, images.shape[1:], **options)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    return run_onnx(path, images), model.eval().loss(images)


def with_running_statistics(model, rng, shape):
    """model after a few training-mode forwards, so batchnorm's running statistics are not 0 and 1."""
    model.train()
    for _ in range(3):
        model.loss((2 + 3 * rng.standard_normal((8, *shape))).astype(np.float32))
    return model


LAYER_CASES = {
    "conv non-square, odd stride, padded": ((3, 11, 9), [nn.Conv2d(3, 4, (3, 2), stride=(2, 3), padding=(1, 2))]),
    "conv without bias": ((2, 6, 6), [nn.Conv2d(2, 3, 3, bias=False)]),
    "linear flattens its input": ((2, 3, 4), [nn.Linear(24, 5)]),
    "linear without bias": ((7,), [nn.Linear(7, 3, bias=False)]),
    "maxout": ((2, 3, 3), [nn.Maxout(18, 5, pieces=3)]),
    "maxout without bias": ((6,), [nn.Maxout(6, 4, pieces=2, bias=False)]),
    "max pool overlapping, padded": ((2, 9, 8), [nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten()]),
    "max pool non-square": ((1, 7, 10), [nn.MaxPool2d((2, 3), stride=(3, 1), padding=(1, 1)), nn.Flatten()]),
    "avg pool padded (zeros counted)": ((2, 9, 7), [nn.AvgPool2d(3, stride=2, padding=1), nn.Flatten()]),
    "avg pool non-square": ((3, 8, 5), [nn.AvgPool2d((3, 2), stride=(1, 3), padding=(1, 1)), nn.Flatten()]),
    "batchnorm1d": ((6,), [nn.BatchNorm1d(6, eps=1e-3)]),
    "batchnorm2d": ((3, 4, 5), [nn.BatchNorm2d(3, momentum=0.5), nn.Flatten()]),
    "relu": ((5,), [nn.ReLU()]),
    "leaky relu": ((5,), [nn.LeakyReLU(0.2)]),
    "sigmoid": ((5,), [nn.Sigmoid()]),
    "tanh": ((5,), [nn.Tanh()]),
    "elu": ((5,), [nn.ELU(alpha=0.5)]),
    "dropout": ((5,), [nn.Dropout(0.5)]),
    "flatten": ((2, 3, 2), [nn.Flatten()]),
    "global average pool (N, C, 1, 1)": ((3, 5, 7), [nn.GlobalAvgPool2d()]),
    "residual, identity shortcut": ((3, 6, 6), [nn.Residual(nn.Sequential([
        nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU()])), nn.Flatten()]),
    "residual, projection shortcut, nested": ((2, 7, 7), [
        nn.Residual(nn.Sequential([nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Residual(nn.Conv2d(4, 4, 3, padding=1))]), nn.Residual.projection(2, 4, 2)),
        nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(4, 3)]),
}


@pytest.mark.parametrize("case", LAYER_CASES)
def test_every_layer_type_matches_onnxruntime(case, tmp_path, rng):
    shape, layers = LAYER_CASES[case]
    model = with_running_statistics(Sequential(layers), rng, shape)
    images = (3 * rng.standard_normal((4, *shape))).astype(np.float32)
    onnx_scores, scores = exported_scores(model, tmp_path, images)
    assert onnx_scores.shape == scores.shape and onnx_scores.dtype == np.float32
    np.testing.assert_allclose(onnx_scores, scores, **TOLERANCE)


def test_batchnorm_statistics_are_not_trivial(rng):
    model = with_running_statistics(Sequential([nn.BatchNorm2d(3)]), rng, (3, 4, 5))
    assert np.all(np.abs(model.buffers["0.running_mean"]) > 0.1)
    assert not np.allclose(model.buffers["0.running_var"], 1)


def test_every_layer_class_has_a_converter_and_a_case():
    from cnnkit.onnx import CONVERTERS

    exportable = {getattr(nn, name) for name in nn.__all__ if name != "Layer"}
    assert set(CONVERTERS) == exportable
    assert set().union(*(layer_types(layer) for _, layers in LAYER_CASES.values() for layer in layers)) == exportable


def layer_types(layer):
    """The classes of layer and of the layers inside it."""
    return {type(layer)}.union(*(layer_types(child) for child in getattr(layer, "children", {}).values()))


@pytest.mark.parametrize("build, shape", [
    (lambda: TwoLayerNet(3 * 8 * 8, 20, 10, weight_scale="he", rng=0), (3, 8, 8)),
    (lambda: FullyConnectedNet([16, 12], 48, 7, dropout=0.3, normalization="batchnorm", weight_scale="he",
                               rng=0), (48,)),
    (lambda: ThreeLayerConvNet((3, 12, 10), num_filters=6, filter_size=5, hidden_dim=16, weight_scale="he",
                               rng=0), (3, 12, 10)),
], ids=["TwoLayerNet", "FullyConnectedNet", "ThreeLayerConvNet"])
def test_classic_nets_match_onnxruntime(build, shape, tmp_path, rng):
    model = with_running_statistics(build(), rng, shape)
    images = rng.standard_normal((5, *shape)).astype(np.float32)
    onnx_scores, scores = exported_scores(model, tmp_path, images)
    np.testing.assert_allclose(onnx_scores, scores, **TOLERANCE)


@pytest.mark.parametrize("name", MODEL_CHOICES)
def test_every_model_of_cnnkit_train_matches_onnxruntime(name, tmp_path, rng):
    model = with_running_statistics(build_model(name, (1, 12, 12), 10), rng, (1, 12, 12))
    images = rng.random((5, 1, 12, 12), dtype=np.float32)
    onnx_scores, scores = exported_scores(model, tmp_path, images)
    np.testing.assert_allclose(onnx_scores, scores, **TOLERANCE)


def test_normalisation_is_folded_in_and_classes_kept(tmp_path, rng):
    model = convnet((3, 16, 16), 10, width=4, hidden=16)
    images = load_builtin(10, 6)["X_test"]
    mean, std = np.float32([0.4, 0.5, 0.6]), np.float32([0.2, 0.3, 0.25])
    path = tmp_path / "model.onnx"
    proto = export(model, path, (3, 16, 16), mean=mean, std=std, classes=["a", "b"])
    np.testing.assert_allclose(run_onnx(path, images), model.eval().loss(normalize(images, mean, std)), **TOLERANCE)
    assert proto.opset_import[0].version == OPSET
    assert {p.key: p.value for p in onnx.load(path).metadata_props} == {"classes": '["a", "b"]'}


def test_arrays_assigned_to_params_and_loaded_models_are_exported(tmp_path, rng):
    model = Sequential([nn.Linear(6, 4), nn.BatchNorm1d(4)])
    model.params["0.weight"] = rng.standard_normal((6, 4)).astype(np.float32)
    model.buffers["1.running_mean"] = rng.standard_normal(4).astype(np.float32)
    model.save(tmp_path / "saved.npz")
    images = rng.standard_normal((3, 6)).astype(np.float32)
    onnx_scores, scores = exported_scores(load(tmp_path / "saved.npz"), tmp_path, images)
    np.testing.assert_allclose(onnx_scores, scores, **TOLERANCE)
    np.testing.assert_allclose(scores, (images @ model.params["0.weight"] - model.buffers["1.running_mean"])
                               / np.sqrt(1 + 1e-5), **TOLERANCE)


def test_float64_model_is_exported_as_float32(tmp_path, rng):
    model = Sequential([nn.Linear(6, 4, dtype=np.float64), nn.Tanh()])
    images = rng.standard_normal((3, 6)).astype(np.float32)
    export(model, tmp_path / "model.onnx", (6,))
    np.testing.assert_allclose(run_onnx(tmp_path / "model.onnx", images), model.loss(images.astype(np.float64)),
                               **TOLERANCE)


class Square(nn.Layer):
    def _forward(self, x):
        return x * x, x


@pytest.mark.parametrize("model, shape, error, message", [
    (Sequential([nn.Linear(4, 3), Square()]), (4,), ValueError,
     r"cannot export layer 1, Square\(\): no ONNX converter for Square \(supported: AvgPool2d, BatchNorm1d"),
    (Sequential([nn.Linear(4, 3)]), (5,), ValueError, r"expects input of shape \(N, 4\)"),
    (Sequential([nn.Conv2d(3, 2, 3)]), (1, 5, 5), ValueError, r"expects input of shape \(N, 3, H, W\)"),
    (load_builtin, (4,), TypeError, "expected a cnnkit network"),
])
def test_unsupported_input_is_a_clear_error_and_writes_nothing(tmp_path, model, shape, error, message):
    with pytest.raises(error, match=message):
        export(model, tmp_path / "model.onnx", shape)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape, mean, std, message", [
    ((1, 2, 2), [0.5], None, "give both mean and std for the input normalisation, or neither"),
    ((1, 2, 2), [0.5, 0.5], [0.2, 0.2], r"must have shape \(C,\) .*got \(2,\) and \(2,\) for input_shape \(1, 2, 2\)"),
    ((4,), [0.5], [0.2], r"for images of shape \(C, H, W\), got \(1,\) and \(1,\) for input_shape \(4,\)"),
])
def test_bad_normalisation_is_an_error(tmp_path, shape, mean, std, message):
    with pytest.raises(ValueError, match=message):
        export(Sequential([nn.Flatten()]), tmp_path / "model.onnx", shape, mean=mean, std=std)


@pytest.mark.subprocess
def test_importing_cnnkit_does_not_import_onnx():
    code = "import sys, cnnkit, cnnkit.models, cnnkit.cli; cnnkit.cli.build_parser(); print('onnx' in sys.modules)"
    out = run_python(code)
    assert out.stdout.strip() == "False"


# `cnnkit export` end to end

TINY = ["--epochs", "1", "--num-val", "100", "--batch-size", "50"]


@pytest.mark.slow
def test_export_command_on_builtin_data(tmp_path, capsys):
    assert main(["train", *TINY, "--num-train", "300", "--model", "fc", "--out", str(tmp_path)]) == 0
    assert main(["export", str(tmp_path / "model.npz"), str(tmp_path / "onnx" / "shapes.onnx")]) == 0
    out = capsys.readouterr().out.splitlines()[-1]
    assert out.startswith(f"wrote {tmp_path}/onnx/shapes.onnx (ONNX opset {OPSET}): input 'images' float32 "
                          "(N, 3, 16, 16) in [0, 1], output 'scores' (N, 10) for the classes disc, ring")
    assert_export_reproduces_cnnkit(tmp_path, tmp_path / "onnx" / "shapes.onnx", load_builtin()["X_test"][:200])


def assert_export_reproduces_cnnkit(folder, onnx_path, images):
    """onnxruntime on raw images (float32 in [0, 1]) gives the scores of cnnkit on normalised ones."""
    import json

    info = json.loads((folder / "model.json").read_text())
    model = load(folder / "model.npz").eval()
    expected = model.loss(normalize(images, info["mean"], info["std"]))
    np.testing.assert_allclose(run_onnx(onnx_path, images), expected, **TOLERANCE)


@pytest.mark.data
@pytest.mark.parametrize("dataset, folder, model", [("mnist", "mnist", "convnet"), ("mnist", "mnist", "maxout"),
                                                    ("cifar10", "cifar-10-subset", "threelayer")])
def test_export_command_on_real_images(tmp_path, dataset, folder, model):
    if not (DATA_DIR / folder).is_dir():
        pytest.skip(f"real data not found at {DATA_DIR / folder} (set CNNKIT_DATA_DIR)")
    assert main(["train", *TINY, "--num-train", "500", "--dataset", dataset, "--data-dir", str(DATA_DIR / folder),
                 "--model", model, "--out", str(tmp_path)]) == 0
    assert main(["export", str(tmp_path / "model.npz"), str(tmp_path / "model.onnx")]) == 0
    assert_export_reproduces_cnnkit(tmp_path, tmp_path / "model.onnx",
                                    load_dataset(dataset, DATA_DIR / folder)["X_test"][:500])


@pytest.mark.parametrize("name, message", [
    ("none", "model file {tmp}/none.npz not found"),
    ("alone", "{tmp}/alone.json not found: predict, evaluate and export need the preprocessing"),
    ("bad", "{tmp}/bad.json is not a model description written by cnnkit train"),
    ("text", "error: {tmp}/text.npz: "),  # then what is wrong with it
])
def test_export_command_errors_are_one_line(tmp_path, capsys, name, message):
    for stem in ("alone", "bad", "text"):
        (tmp_path / f"{stem}.npz").write_text("not a model")
    (tmp_path / "bad.json").write_text("{}")
    (tmp_path / "text.json").write_text('{"mean": [0], "std": [1], "image_shape": [1, 2, 2], "classes": ["a"]}')
    assert main(["export", str(tmp_path / f"{name}.npz"), str(tmp_path / "out.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnkit export: error: ") and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "out.onnx").exists()
