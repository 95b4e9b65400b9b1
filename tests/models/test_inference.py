"""The inference plan (cnnkit.models.inference) against the layer-by-layer eval forward it stands for."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import layers as nn
from cnnkit import reference
from cnnkit.models import FullyConnectedNet, Sequential, ThreeLayerConvNet, TwoLayerNet, inference
from cnnkit.recipes import build_model
from cnnkit.trainer import Trainer

kernels = pytest.importorskip("cnnkit._ext.inference", reason="needs the compiled kernels")
affine_kernels = pytest.importorskip("cnnkit._ext.affine", reason="needs the compiled kernels")
RELATIVE = {np.float32: 1e-5, np.float64: 1e-12}


class Scale(nn.Layer):
    """A layer type the planner does not know: x * 2."""

    def _forward(self, x):
        return 2 * np.asarray(x), None


class OwnConv2d(nn.Conv2d):
    """A Conv2d subclass: the planner runs it as a layer of its own."""


def every_layer(dtype):
    common = dict(dtype=dtype, rng=0)
    return Sequential([
        nn.Conv2d(3, 6, (3, 2), stride=(1, 2), padding=(1, 0), **common), nn.BatchNorm2d(6, dtype=dtype), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(6, 5, 1, bias=False, **common), nn.BatchNorm2d(5, dtype=dtype),
        nn.Conv2d(5, 4, 3, padding=2, **common), nn.ReLU(), nn.AvgPool2d(2, stride=1), nn.LeakyReLU(0.1),
        OwnConv2d(4, 4, 1, **common), nn.ELU(), Scale(), nn.BatchNorm2d(4, dtype=dtype), nn.Dropout(0.5, rng=0),
        nn.Flatten(), nn.Linear(4 * 6 * 4, 12, **common), nn.BatchNorm1d(12, dtype=dtype), nn.ReLU(),
        nn.Dropout(0.3, rng=1), nn.Maxout(12, 6, pieces=3, **common), nn.Tanh(), nn.Linear(6, 5, bias=False, **common),
        nn.Sigmoid(), nn.Linear(5, 4, **common),
    ], input_shape=(3, 9, 11))


MODELS = {  # name -> (model of a dtype, one sample's shape)
    "every-layer": (every_layer, (3, 9, 11)),
    "two-layer": (lambda dtype: TwoLayerNet(input_dim=12, hidden_dim=7, num_classes=4, weight_scale=0.5,
                                            dtype=dtype, rng=0), (3, 4)),
    "fc-bn-dropout": (lambda dtype: FullyConnectedNet([9, 7], input_dim=12, num_classes=4, dropout=0.25,
                                                      normalization="batchnorm", weight_scale=0.5, dtype=dtype,
                                                      rng=0), (12,)),
    "three-layer-conv": (lambda dtype: ThreeLayerConvNet(input_dim=(2, 8, 8), num_filters=5, filter_size=3,
                                                         hidden_dim=6, num_classes=4, weight_scale=0.3,
                                                         dtype=dtype, rng=0), (2, 8, 8)),
    # the recipes' models, float32 only
    "mnist-convnet": (lambda dtype: build_model("convnet", (1, 28, 28), 10, hidden=32, dropout=0.4), (1, 28, 28)),
    "vgg": (lambda dtype: build_model("vgg", (3, 16, 16), 10, width=16, dropout=0.2), (3, 16, 16)),
    "maxout": (lambda dtype: build_model("maxout", (1, 6, 6), 10), (1, 6, 6)),
}
FLOAT32_ONLY = {"mnist-convnet", "vgg", "maxout"}


def trained_statistics(model, shape, rng):
    """model in eval mode after random batchnorm scales and shifts and a few training-mode forwards."""
    for layer in model.layers:
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            for array in layer.params.values():  # in place: they are the model's arrays too
                array[...] = rng.uniform(0.5, 2, array.shape) * rng.choice([-1, 1], array.shape)
    model.train()
    dtype = next(iter(model.params.values())).dtype
    for _ in range(3):
        model.forward((3 * rng.standard_normal((16, *shape)) + 1).astype(dtype))
    return model.eval()


def assert_close(scores, expected):
    """Equal to rounding: within RELATIVE of each score or of the largest score (the folded batchnorm's rounding
    reaches every score at the scale of the largest)."""
    tolerance = RELATIVE[expected.dtype.type]
    np.testing.assert_allclose(scores, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


def layer_by_layer(model, X):
    """The eval forward the plan stands for: each layer's own forward, one after the other."""
    for layer in model.layers:
        X = layer.forward(X)
    return X


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n", [1, 5, inference.CHUNK + 3])
def test_plan_scores_equal_the_layer_by_layer_eval_forward(name, n, dtype, rng):
    if name in FLOAT32_ONLY and dtype is not np.float32:
        pytest.skip("the recipes build float32 models")
    make, shape = MODELS[name]
    model = trained_statistics(make(dtype), shape, rng)
    X = rng.standard_normal((n, *shape)).astype(dtype)
    scores = model.loss(X)
    assert scores.dtype == dtype and scores.shape == (n, model.layers[-1].out_features)
    assert_close(scores, layer_by_layer(model, X))
    np.testing.assert_array_equal(model.predict(X, batch_size=4), np.argmax(model.loss(X), axis=1))


def test_without_batchnorm_the_plan_gives_the_layers_bits(rng):
    model = MODELS["mnist-convnet"][0](np.float32).eval()
    X = rng.standard_normal((9, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model.loss(X), layer_by_layer(model, X))


def test_winograd_convolutions_in_the_plan(rng, winograd_everywhere):
    model = trained_statistics(MODELS["vgg"][0](np.float32), (3, 16, 16), rng)
    X = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    assert_close(model.loss(X), layer_by_layer(model, X))


def test_non_contiguous_input(rng):
    model = trained_statistics(every_layer(np.float64), (3, 9, 11), rng)
    X = rng.standard_normal((11, 11, 9, 3)).transpose(0, 3, 2, 1)[::2]
    assert not X.flags.c_contiguous
    assert_close(model.loss(X), layer_by_layer(model, np.ascontiguousarray(X)))


def test_changed_weights_act_at_once_no_stale_folding(rng):
    model = trained_statistics(MODELS["vgg"][0](np.float32), (3, 16, 16), rng)
    X = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    before = model.loss(X)
    data = dict(X_train=X, y_train=y, X_val=X, y_val=y)
    Trainer(model, data, num_epochs=1, batch_size=6, optim_config={"learning_rate": 1e-2}, verbose=False).train()
    model.eval()
    after = model.loss(X)
    assert not np.allclose(before, after)  # the step moved the weights and the running statistics
    assert_close(after, layer_by_layer(model, X))
    model.params["0.weight"] *= -1  # in place
    model.buffers["1.running_mean"] = model.buffers["1.running_mean"] + 1  # assigned
    assert_close(model.loss(X), layer_by_layer(model.sync(), X))


def test_eval_after_train_mode_gives_the_same_scores(rng):
    model = trained_statistics(MODELS["fc-bn-dropout"][0](np.float64), (12,), rng)
    X = rng.standard_normal((4, 12))
    before = model.loss(X)
    np.testing.assert_array_equal(model.train().eval().loss(X), before)
    assert not np.allclose(model.train().loss(X), before)  # batch statistics and dropout: the layers' forward
    model.eval()
    assert_close(model.loss(X), layer_by_layer(model, X))
    model.layers[-2].train()  # a Dropout left in training mode: the layers' own forward runs, dropout on
    assert not np.allclose(model.loss(X), layer_by_layer(model.eval(), X))


@pytest.mark.parametrize("threads", [1, 2])
def test_reruns_are_bit_identical_at_a_thread_count(threads, rng, tiny_grains):
    cnnkit.set_num_threads(threads)
    model = trained_statistics(MODELS["vgg"][0](np.float32), (3, 16, 16), rng)
    X = rng.standard_normal((inference.CHUNK + 9, 3, 16, 16)).astype(np.float32)
    first = model.loss(X)
    np.testing.assert_array_equal(model.loss(X), first)
    np.testing.assert_array_equal(model.loss(X[:5]), model.loss(X[:5]))


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_each_run_a_share_of_a_large_batch(threads, rng):
    cnnkit.set_num_threads(threads)
    model = trained_statistics(every_layer(np.float64), (3, 9, 11), rng)
    X = rng.standard_normal((threads * inference.SAMPLES_PER_THREAD + 1, 3, 9, 11))
    assert_close(model.loss(X), layer_by_layer(model, X))
    assert cnnkit.get_num_threads() == threads  # the workers' one-thread setting stays theirs


def test_predict_from_several_threads_at_once(rng):
    model = MODELS["mnist-convnet"][0](np.float32)
    inputs = [rng.standard_normal((n, 1, 28, 28)).astype(np.float32) for n in (3, 7, 3, 7)]
    expected = [np.argmax(layer_by_layer(model.eval(), X), axis=1) for X in inputs]
    model.train()
    results = [None] * len(inputs)

    def predict(i):
        for _ in range(20):
            results[i] = model.predict(inputs[i])

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    assert model.training


def test_bad_input_gets_the_layers_errors(rng):
    model = MODELS["mnist-convnet"][0](np.float32).eval()
    with pytest.raises(TypeError, match="float32"):
        model.loss(rng.standard_normal((2, 1, 28, 28)))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, H, W\)"):
        model.loss(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="features"):
        model.loss(np.zeros((2, 1, 20, 20), np.float32))


def test_reference_backend_runs_the_layers(rng):
    model = trained_statistics(every_layer(np.float64), (3, 9, 11), rng)
    X = rng.standard_normal((3, 3, 9, 11))
    with cnnkit.use_backend("reference"):
        np.testing.assert_array_equal(model.loss(X), layer_by_layer(model, X))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), features=st.integers(0, 40), units=st.integers(1, 40), threads=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), nans=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_affine_kernel_with_relu_equals_the_reference(n, features, units, threads, dtype, nans, seed):
    """The plan's Linear + ReLU in one kernel call (rows, or with fewer rows than threads columns, per thread)."""
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(shape).astype(dtype) for shape in ((n, features), (features, units), (units,)))
    b.reshape(-1)[rng.integers(0, units, nans)] = np.nan
    out = np.full((n, units), 7, dtype)
    affine_kernels.affine_forward(x, w, b, out, threads, True)
    plain = np.full((n, units), 7, dtype)
    affine_kernels.affine_forward(x, w, b, plain, threads)
    assert np.isnan(out).sum() == np.isnan(plain).sum() == n * np.isnan(b).sum()
    np.testing.assert_array_equal(out, reference.relu_forward(plain)[0])
    np.testing.assert_allclose(plain, reference.affine_forward(x, w, b)[0], rtol=RELATIVE[dtype] * 10,
                               atol=RELATIVE[dtype] * 10 * max(1, features))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(2, 9), w=st.integers(2, 600),
       dtype=st.sampled_from([np.float32, np.float64]), nans=st.integers(0, 3), threads=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_halving_max_pool_kernel_equals_the_reference(n, c, h, w, dtype, nans, threads, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (n, c, h, w)).astype(dtype)  # small integers: ties in most windows
    x.reshape(-1)[rng.integers(0, x.size, nans)] = np.nan
    out = np.full((n, c, h // 2, w // 2), 7, dtype)
    kernels.max_pool_2x2(x, out, threads)
    np.testing.assert_array_equal(out, reference.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))[0])


@pytest.mark.parametrize("shape", [
    (1, 2, 81, 29),  # rows of 14: segments of 18 rows, then 4, a dangling row and column
    (2, 1, 9, 256),  # rows of 128: segments of two rows
    (1, 1, 7, 258),  # rows of 129: row by row
    (300, 2, 4, 6),  # 85 small planes a work item as one tall plane, the last item 5
    (40, 3, 8, 9),  # 16 planes an item, the last column in no window
    (33, 2, 7, 4),  # an odd height: a plane an item
])
def test_halving_max_pool_kernel_by_segments_of_rows(shape, rng, dtype):
    x = rng.integers(-3, 4, shape).astype(dtype)
    x.reshape(-1)[rng.integers(0, x.size, 5)] = np.nan
    out = np.full((*shape[:2], shape[2] // 2, shape[3] // 2), 7, dtype)
    kernels.max_pool_2x2(x, out, 2)
    np.testing.assert_array_equal(out, reference.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))[0])


def test_halving_max_pool_kernel_checks_its_output():
    with pytest.raises(ValueError, match=r"out must have shape \(1, 2, 2, 3\)"):
        kernels.max_pool_2x2(np.zeros((1, 2, 5, 7)), np.zeros((1, 2, 3, 3)), 1)
