"""PyTorch, where installed, as an independent oracle for values and gradients (ties included)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import geometries

from cnnkit import reference

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
TF = torch.nn.functional


def torch_grads(function, *arrays, dout):
    """Output and input gradients of torch function(*arrays) for upstream gradient dout."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = function(*tensors)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


def assert_matches(ours, theirs):
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(geometries(pool=True), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_conv_and_pools_with_many_ties(geometry, filters, seed):
    shape, kernel, stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(np.float64)  # small ints: windows tie often
    w, b = rng.standard_normal((filters, shape[1]) + kernel), rng.standard_normal(filters)
    out, cache = reference.conv2d_forward(x, w, b, stride, padding)
    dout = rng.standard_normal(out.shape)
    theirs = torch_grads(lambda x, w, b: TF.conv2d(x, w, b, stride, padding), x, w, b, dout=dout)
    assert_matches([out, *reference.conv2d_backward(dout, cache)], [theirs[0], *theirs[1]])
    for kind in ("max", "avg"):
        out, cache = getattr(reference, f"{kind}_pool2d_forward")(x, kernel, stride, padding)
        dout = rng.standard_normal(out.shape)
        torch_op = getattr(TF, f"{kind}_pool2d")
        theirs = torch_grads(lambda x, op=torch_op: op(x, kernel, stride, padding), x, dout=dout)
        assert_matches([out, getattr(reference, f"{kind}_pool2d_backward")(dout, cache)], [theirs[0], *theirs[1]])


ELEMENTWISE = {
    "relu": ((), TF.relu),
    "leaky_relu": ((0.3,), lambda x: TF.leaky_relu(x, 0.3)),
    "elu": ((0.7,), lambda x: TF.elu(x, 0.7)),
    "sigmoid": ((), torch.sigmoid),
    "tanh": ((), torch.tanh),
}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activations(name, rng):
    args, oracle = ELEMENTWISE[name]
    x = 20 * rng.standard_normal((5, 7))  # both tails, no exact zeros
    out, cache = getattr(reference, f"{name}_forward")(x, *args)
    dout = rng.standard_normal(x.shape)
    theirs = torch_grads(oracle, x, dout=dout)
    assert_matches([out, getattr(reference, f"{name}_backward")(dout, cache)], [theirs[0], *theirs[1]])


@pytest.mark.parametrize("mode", ["train", "test"])
def test_spatial_batchnorm(mode, rng):
    x, gamma, beta = 1 + 2 * rng.standard_normal((3, 4, 2, 5)), rng.standard_normal(4), rng.standard_normal(4)
    mean, var = rng.standard_normal(4), 1 + rng.random(4)
    out, cache = reference.spatial_batchnorm_forward(
        x, gamma, beta, {"mode": mode, "eps": 1e-3, "running_mean": mean.copy(), "running_var": var.copy()})
    dout = rng.standard_normal(x.shape)
    oracle = lambda x, g, b: TF.batch_norm(  # noqa: E731
        x, torch.tensor(mean), torch.tensor(var), g, b, training=mode == "train", eps=1e-3)
    theirs = torch_grads(oracle, x, gamma, beta, dout=dout)
    assert_matches([out, *reference.spatial_batchnorm_backward(dout, cache)], [theirs[0], *theirs[1]])


def test_losses(rng):
    scores, y = 5 * rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    for ours, oracle in [(reference.softmax_loss, TF.cross_entropy),
                         (reference.svm_loss, lambda s, y: TF.multi_margin_loss(s, y) * s.shape[1])]:
        loss, dscores = ours(scores, y)
        s = torch.tensor(scores, requires_grad=True)
        expected = oracle(s, torch.tensor(y))
        expected.backward()
        assert_matches([loss, dscores], [expected.item(), s.grad.numpy()])
