"""Maxout: the reference and fast op pairs, the functional checks, the layer and a model built on it."""
import numpy as np
import pytest
from helpers import TOLERANCE
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import fast, reference
from cnnkit import functional as F
from cnnkit import layers as nn
from cnnkit.gradcheck import check_gradients, check_loss_gradients
from cnnkit.models import Sequential, load
from cnnkit.models.network import layer_config, layer_from_config
from cnnkit.recipes import build_model
from cnnkit.trainer import Trainer

OPS = {"reference": (reference.maxout_forward, reference.maxout_backward),
       "fast": (fast.maxout_forward, fast.maxout_backward),
       "functional": (F.maxout_forward, F.maxout_backward)}
ALL_OPS = pytest.mark.parametrize("ops", OPS.values(), ids=OPS.keys())


def hand_case():
    """x (1, 2); 2 units of 3 pieces each. Unit 0's pieces are 1, 2, 1.5; unit 1's are 1, -2, 0."""
    x = np.array([[1.0, 2.0]])
    w = np.array([[[1.0, 0.0, -1.0], [2.0, -1.0, 0.0]],
                  [[0.0, 1.0, 1.0], [-1.0, 0.0, 0.0]]])
    b = np.array([[0.0, 0.0, 0.5], [1.0, -1.0, 0.0]])
    return x, w, b


@ALL_OPS
def test_hand_computed_forward_and_backward(ops):
    forward, backward = ops
    out, cache = forward(*hand_case())
    np.testing.assert_array_equal(out, [[2.0, 1.0]])  # unit 0 takes piece 1, unit 1 piece 0
    dx, dw, db = backward(np.array([[10.0, 100.0]]), cache)
    # dx[d] = 10 * w[d, 0, 1] + 100 * w[d, 1, 0]
    np.testing.assert_array_equal(dx, [[200.0, -90.0]])
    expected_dw = np.zeros((2, 2, 3))
    expected_dw[:, 0, 1] = [10.0, 20.0]  # x * 10
    expected_dw[:, 1, 0] = [100.0, 200.0]  # x * 100
    np.testing.assert_array_equal(dw, expected_dw)
    np.testing.assert_array_equal(db, [[0.0, 10.0, 0.0], [100.0, 0.0, 0.0]])


@ALL_OPS
def test_ties_send_the_gradient_to_the_first_maximum(ops):
    forward, backward = ops
    x = np.array([[1.0], [2.0]])
    w = np.array([[[2.0, 2.0, 2.0], [0.0, 1.0, 1.0]]])  # unit 0: three equal pieces; unit 1: pieces 1, 2 equal
    b = np.zeros((2, 3))
    out, cache = forward(x, w, b)
    np.testing.assert_array_equal(out, [[2.0, 1.0], [4.0, 2.0]])
    dx, dw, db = backward(np.ones((2, 2)), cache)
    np.testing.assert_array_equal(db, [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    np.testing.assert_array_equal(dw, [[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])  # x summed over the batch
    np.testing.assert_array_equal(dx, [[3.0], [3.0]])  # w[0, 0, 0] + w[0, 1, 1]


@ALL_OPS
def test_gradients_match_numerical(ops, rng):
    x, w, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((6, 5, 3)), rng.standard_normal((5, 3))
    report = check_gradients(*ops, dict(x=x, w=w, b=b))
    assert report.worst < 1e-8, report


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 70), st.integers(1, 40), st.integers(1, 9), st.integers(1, 4),
       st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 2**32 - 1))
def test_fast_agrees_with_reference(n, features, units, pieces, dtype, strided, seed):
    """The compiled-affine maxout against the reference, x non-contiguous when strided."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (n, 2 * features)).astype(dtype)  # small ints: pieces tie often
    x = x[:, ::2] if strided else x[:, :features]
    w, b = rng.integers(-2, 3, (features, units, pieces)).astype(dtype), rng.standard_normal((units, pieces))
    b, dout = b.astype(dtype), rng.standard_normal((n, units)).astype(dtype)
    got, expected = ([*ops[0](x, w, b)] for ops in (OPS["fast"], OPS["reference"]))
    np.testing.assert_allclose(got[0], expected[0], **TOLERANCE[dtype])
    for g, e in zip(OPS["fast"][1](dout, got[1]), OPS["reference"][1](dout, expected[1])):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, e, **TOLERANCE[dtype])


def test_one_piece_is_an_affine_map(rng, dtype):
    x, w, b = (rng.standard_normal(shape).astype(dtype) for shape in [(3, 4), (4, 5, 1), (5, 1)])
    out, _ = F.maxout_forward(x, w, b)
    expected, _ = F.affine_forward(x, w[:, :, 0], b[:, 0])
    np.testing.assert_allclose(out, expected, **TOLERANCE[dtype])


@pytest.mark.torch
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.tuples(st.integers(1, 3), st.integers(1, 3)), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 2**32 - 1))
def test_agrees_with_torch(n, sample_shape, units, pieces, dtype, transposed, seed):
    """Against torch's max over the pieces on random shapes and dtypes, x non-contiguous when transposed."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *sample_shape)).astype(dtype)
    if transposed:
        x = np.swapaxes(x.reshape(n, *sample_shape[::-1]), 1, 2)
    features = x[0].size
    w = rng.standard_normal((features, units, pieces)).astype(dtype)
    b = rng.standard_normal((units, pieces)).astype(dtype)
    dout = rng.standard_normal((n, units)).astype(dtype)
    out, cache = F.maxout_forward(x, w, b)
    ours = [out, *F.maxout_backward(dout, cache)]
    tensors = [torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (x, w, b)]
    pieces_t = (tensors[0].reshape(n, features) @ tensors[1].reshape(features, -1)).reshape(n, units, pieces)
    theirs = (pieces_t + tensors[2]).max(dim=2).values
    theirs.backward(torch.tensor(dout))
    for a, t in zip(ours, [theirs, *(t.grad for t in tensors)]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-4 if dtype == np.float32 else 1e-10,
                                   atol=1e-4 if dtype == np.float32 else 1e-12)


def test_functional_exports_the_pair():
    assert {"maxout_forward", "maxout_backward"} <= set(F.__all__) == set(reference.__all__)


X = np.zeros((2, 6))
W = np.zeros((6, 4, 3))
B = np.zeros((4, 3))


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.maxout_forward(np.zeros(6), W, B), ValueError, r"x must be at least 2-D \(N, d1, ..., dk\)"),
    (lambda: F.maxout_forward(X, np.zeros((6, 4)), B), ValueError, r"w must be 3-D \(D, M, K\), got shape \(6, 4\)"),
    (lambda: F.maxout_forward(np.zeros((2, 2, 2)), W, B), ValueError,
     r"w must have shape \(D, M, K\) with D = 4 features of x \(2, 2, 2\), got \(6, 4, 3\)"),
    (lambda: F.maxout_forward(X, W, np.zeros(4)), ValueError, r"b must have shape \(M, K\) with M = 4, K = 3 from w"),
    (lambda: F.maxout_forward(X, np.zeros((6, 4, 0)), np.zeros((4, 0))), ValueError, r"at least one piece"),
    (lambda: F.maxout_forward(X.astype(np.float32), W, B), TypeError, "no silent upcast"),
    (lambda: F.maxout_forward(X.astype(int), W, B), TypeError, "float32 or float64 arrays, got x: int64"),
    (lambda: F.maxout_backward(np.zeros((2, 3)), F.maxout_forward(X, W, B)[1]), ValueError,
     r"dout must have shape \(2, 4\)"),
    (lambda: F.maxout_backward(np.zeros((2, 4), np.float32), F.maxout_forward(X, W, B)[1]), TypeError,
     "dout must be float64"),
    (lambda: F.maxout_backward(np.zeros((2, 4)), F.affine_forward(X, W[:, :, 0], B[:, 0])[1]), TypeError,
     "cache must be the one maxout_forward returned, got the cache of affine_forward"),
])
def test_bad_input_is_refused_with_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------- the layer


def test_layer_params_have_the_documented_layout():
    layer = nn.Maxout(12, 5, pieces=3)
    assert layer.params["weight"].shape == (12, 5, 3) and layer.params["bias"].shape == (5, 3)
    assert layer.num_params == 12 * 5 * 3 + 5 * 3 and nn.Maxout(12, 5, bias=False).num_params == 12 * 5 * 2
    assert layer.output_shape((7, 3, 2, 2)) == (7, 5)
    assert repr(layer) == "Maxout(in_features=12, out_features=5, pieces=3, bias=True)"
    assert layer.regularized == {"weight": (0,)}


@pytest.mark.parametrize("bias", [True, False])
def test_layer_gradients_match_numerical(bias, backend, rng):
    layer = nn.Maxout(6, 4, pieces=3, bias=bias, dtype=np.float64, rng=0)
    x = rng.standard_normal((5, 2, 3))

    def backward(dout, _):
        return (layer.backward(dout), *(layer.grads[name] for name in layer.params))

    report = check_gradients(lambda x, **params: (layer.forward(x), None), backward, {"x": x, **layer.params})
    assert report.worst < 1e-8, report


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Maxout(4, 2, pieces=0), "pieces must be an int >= 1, got 0"),
    (lambda: nn.Maxout(4, 2, pieces=1.5), "pieces must be an int >= 1, got 1.5"),
    (lambda: nn.Maxout(0, 2), "in_features must be an int >= 1"),
    (lambda: nn.Maxout(4, 2).forward(np.zeros((3, 5), np.float32)), r"expects input of shape \(N, 4\)"),
])
def test_layer_refuses_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layer_config_rebuilds_it():
    layer = nn.Maxout(6, 4, pieces=3, bias=False, init="xavier", dtype=np.float64)
    rebuilt = layer_from_config(layer_config(layer))
    assert rebuilt.config() == layer.config() and rebuilt.params["weight"].shape == (6, 4, 3)


def maxout_net(**options):
    return Sequential([nn.Flatten(), nn.Maxout(12, 5, pieces=3, dtype=np.float64, rng=0), nn.Dropout(0.2, rng=1),
                       nn.Maxout(5, 4, dtype=np.float64, rng=2), nn.Linear(4, 3, dtype=np.float64, rng=3)],
                      input_shape=(3, 2, 2), **options)


@pytest.mark.slow
def test_sequential_loss_gradients_match_numerical(rng):
    cnnkit.set_num_threads(1)
    model = maxout_net(reg=0.1, l1=0.01)
    X, y = rng.standard_normal((6, 3, 2, 2)), rng.integers(0, 3, 6)
    state = model.buffers["2.state"].copy()

    def loss():
        model.buffers["2.state"] = state.copy()  # the same dropout mask at every probe
        return model.loss(X, y)

    report = check_loss_gradients(loss, model.params)
    assert report.worst < 1e-7, report


def test_sequential_save_load_round_trip(tmp_path, rng):
    model = maxout_net(reg=0.1, l1=0.01)
    X = rng.standard_normal((4, 3, 2, 2))
    model.save(tmp_path / "maxout.npz")
    loaded = load(tmp_path / "maxout.npz")
    assert repr(loaded) == repr(model) and loaded.config() == model.config()
    assert all(np.array_equal(loaded.params[key], model.params[key]) for key in model.params)
    np.testing.assert_array_equal(loaded.eval().loss(X), model.eval().loss(X))


def test_maxout_model_overfits_50_samples(rng):
    """`cnnkit train --model maxout`'s network (narrowed) learns 50 random images by heart."""
    model = build_model("maxout", (1, 8, 8), 10, width=32)
    assert sum(isinstance(layer, nn.Maxout) for layer in model.layers) == 2
    data = {"X_train": rng.standard_normal((50, 1, 8, 8)).astype(np.float32), "y_train": rng.integers(0, 10, 50)}
    trainer = Trainer(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=10,
                      num_epochs=15, seed=0, verbose=False).train()
    assert trainer.train_acc_history[-1] == 1.0
