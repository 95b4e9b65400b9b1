"""Bad input of every kind raises ValueError or TypeError saying what was expected."""
import numpy as np
import pytest

from cnnkit import functional as F

NAN = float("nan")
X = np.zeros((2, 3, 6, 6))
W = np.zeros((4, 3, 3, 3))
B = np.zeros(4)
X2 = np.zeros((5, 4))
GAMMA = np.ones(4)
SCORES = np.zeros((3, 4))
LABELS = np.array([0, 3, 1])


def conv(x=X, w=W, b=B, **kwargs):
    return F.conv2d_forward(x, w, b, **kwargs)


def bn(x=X2, gamma=GAMMA, beta=GAMMA, **bn_param):
    return F.batchnorm_forward(x, gamma, beta, {"mode": "train", **bn_param})


def dropout(x=X2, **param):
    return F.dropout_forward(x, {"p": 0.5, "mode": "train", **param})


CONV = [
    (lambda: conv(x=X[0]), ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(3, 6, 6\)"),
    (lambda: conv(w=W[0]), ValueError, r"w must be 4-D \(F, C, KH, KW\)"),
    (lambda: conv(w=W[:, :2]), ValueError, r"w must have shape \(F, C, KH, KW\) with C = 3 channels of x, got \(4, 2"),
    (lambda: conv(b=B[:3]), ValueError, r"b must have shape \(F,\) with F = 4 filters of w, got \(3,\)"),
    (lambda: conv(w=np.zeros((4, 3, 7, 3))), ValueError, r"kernel size 7 is larger than the padded input size 6"),
    (lambda: conv(w=np.zeros((4, 3, 9, 3)), padding=1), ValueError, r"padded input size 6 \+ 2\*1 = 8"),
    (lambda: conv(stride=0), ValueError, r"stride must be >= 1, got \(0, 0\)"),
    (lambda: conv(stride=(1, -2)), ValueError, r"stride must be >= 1"),
    (lambda: conv(stride=None), ValueError, "stride must be an int or a pair of ints, got None"),
    (lambda: conv(stride=NAN), ValueError, "stride must be an int or a pair of ints, got nan"),
    (lambda: conv(stride=1.0), ValueError, "stride must be an int or a pair of ints"),
    (lambda: conv(padding=-1), ValueError, r"padding must be >= 0, got \(-1, -1\)"),
    (lambda: conv(padding=(1, NAN)), ValueError, r"padding must be an int or a pair of ints, got \(1, nan\)"),
    (lambda: conv(padding=(1, 2, 3)), ValueError, "padding must be an int or a pair of ints"),
    (lambda: conv(x=X.astype(np.int64)), TypeError, "expected float32 or float64 arrays, got x: int64"),
    (lambda: conv(w=W.astype(np.float32)), TypeError, "no silent upcast.*x: float64, w: float32, b: float64"),
    (lambda: conv(b=B.astype(np.float16)), TypeError, "b: float16"),
]

POOL = [
    (lambda: F.max_pool2d_forward(X[0], 2), ValueError, r"x must be 4-D \(N, C, H, W\)"),
    (lambda: F.avg_pool2d_forward(X, 7), ValueError, "kernel size 7 is larger than the padded input size 6"),
    (lambda: F.max_pool2d_forward(X, (2, 9), padding=(0, 1)), ValueError, r"kernel size 9 is larger .* 6 \+ 2\*1 = 8"),
    (lambda: F.max_pool2d_forward(X, 3, padding=2), ValueError,
     r"padding must be at most half the kernel size, got padding \(2, 2\) for kernel_size \(3, 3\)"),
    (lambda: F.avg_pool2d_forward(X, (2, 4), padding=(1, 3)), ValueError, "at most half the kernel size"),
    (lambda: F.max_pool2d_forward(X, 0), ValueError, r"kernel_size must be >= 1, got \(0, 0\)"),
    (lambda: F.max_pool2d_forward(X, NAN), ValueError, "kernel_size must be an int or a pair of ints, got nan"),
    (lambda: F.avg_pool2d_forward(X, 2, stride=0), ValueError, "stride must be >= 1"),
    (lambda: F.avg_pool2d_forward(X, 2, stride=(2, NAN)), ValueError, "stride must be an int or a pair"),
    (lambda: F.max_pool2d_forward(X, 2, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: F.max_pool2d_forward(X.astype(np.int32), 2), TypeError, "float32 or float64 arrays, got x: int32"),
    (lambda: F.col2im(np.zeros((2, 27, 16)), (2, 3, NAN, 6), 3), ValueError,
     r"x_shape \(N, C, H, W\) must be 4 positive ints, got \(2, 3, nan, 6\)"),
    (lambda: F.col2im(np.zeros((2, 27, 16)), (2, 3, 6), 3), ValueError, r"x_shape \(N, C, H, W\) must be 4 positive"),
]

AFFINE_AND_ACTIVATIONS = [
    (lambda: F.affine_forward(np.zeros(6), np.zeros((6, 2)), np.zeros(2)), ValueError,
     r"x must be at least 2-D \(N, d1, ..., dk\), got shape \(6,\)"),
    (lambda: F.affine_forward(np.zeros((2, 3, 4)), np.zeros((10, 2)), np.zeros(2)), ValueError,
     r"w must have shape \(D, M\) with D = 12 features of x \(2, 3, 4\), got \(10, 2\)"),
    (lambda: F.affine_forward(X2, np.zeros(4), np.zeros(2)), ValueError, r"w must be 2-D \(D, M\)"),
    (lambda: F.affine_forward(X2, np.zeros((4, 2)), np.zeros(3)), ValueError, r"b must have shape \(M,\) with M = 2"),
    (lambda: F.affine_forward(X2.astype(np.float32), np.zeros((4, 2)), np.zeros(2)), TypeError, "no silent upcast"),
    (lambda: F.relu_forward(np.arange(3)), TypeError, "float32 or float64 arrays, got x: int64"),
    (lambda: F.sigmoid_forward(np.ones(3, dtype=bool)), TypeError, "x: bool"),
    (lambda: F.tanh_forward(np.ones(3, dtype=complex)), TypeError, "x: complex128"),
    (lambda: F.leaky_relu_forward(X2, NAN), ValueError, "negative_slope must be a finite number, got nan"),
    (lambda: F.leaky_relu_forward(X2, "0.1"), ValueError, "negative_slope must be a finite number, got '0.1'"),
    (lambda: F.elu_forward(X2, alpha=float("inf")), ValueError, "alpha must be a finite number, got inf"),
    (lambda: F.elu_forward(X2, alpha=True), ValueError, "alpha must be a finite number, got True"),
]

BATCHNORM_AND_DROPOUT = [
    (lambda: F.batchnorm_forward(X2, GAMMA, GAMMA, None), TypeError, "bn_param must be a dict, got NoneType"),
    (lambda: F.batchnorm_forward(X2, GAMMA, GAMMA, {}), ValueError,
     r"bn_param\['mode'\] must be one of 'train', 'test', got None"),
    (lambda: bn(mode="eval"), ValueError, r"bn_param\['mode'\] must be one of 'train', 'test', got 'eval'"),
    (lambda: bn(x=X), ValueError, r"x must be 2-D \(N, D\)"),
    (lambda: F.spatial_batchnorm_forward(X2, GAMMA, GAMMA, {"mode": "train"}), ValueError,
     r"x must be 4-D \(N, C, H, W\)"),
    (lambda: F.spatial_batchnorm_forward(X, GAMMA, GAMMA, {"mode": "test"}), ValueError,
     r"gamma must have shape \(3,\), one per channel of x, got \(4,\)"),
    (lambda: bn(beta=GAMMA[:2]), ValueError, r"beta must have shape \(4,\), one per feature of x, got \(2,\)"),
    (lambda: bn(running_mean=np.zeros(3)), ValueError, r"running_mean must have shape \(4,\)"),
    (lambda: bn(running_var=np.ones(4, dtype=np.float32)), TypeError, "running_var: float32"),
    (lambda: bn(gamma=GAMMA.astype(np.float32)), TypeError, "x: float64, gamma: float32"),
    (lambda: bn(eps=0), ValueError, r"bn_param\['eps'\] must be a number > 0, got 0"),
    (lambda: bn(eps=NAN), ValueError, r"bn_param\['eps'\] must be a number > 0, got nan"),
    (lambda: bn(momentum=1.5), ValueError, r"bn_param\['momentum'\] must be a number in \[0, 1\], got 1.5"),
    (lambda: bn(momentum=None), ValueError, r"bn_param\['momentum'\] must be a number in \[0, 1\], got None"),
    (lambda: bn(x=X2[:0]), ValueError, r"train mode needs a non-empty batch, got x of shape \(0, 4\)"),
    (lambda: F.dropout_forward(X2, [0.5]), TypeError, "dropout_param must be a dict, got list"),
    (lambda: dropout(mode="eval"), ValueError, r"dropout_param\['mode'\] must be one of 'train', 'test'"),
    (lambda: F.dropout_forward(X2, {"mode": "train"}), ValueError, r"dropout_param must give 'p'"),
    (lambda: dropout(p=1), ValueError, r"dropout_param\['p'\] must be a probability in \[0, 1\), got 1"),
    (lambda: dropout(p=-0.1), ValueError, r"must be a probability in \[0, 1\), got -0.1"),
    (lambda: dropout(p=NAN), ValueError, r"must be a probability in \[0, 1\), got nan"),
    (lambda: dropout(seed=-1), ValueError, r"dropout_param\['seed'\] must be None or an int >= 0, got -1"),
    (lambda: dropout(seed=1.5), ValueError, r"dropout_param\['seed'\] must be None or an int >= 0, got 1.5"),
    (lambda: dropout(x=X2.astype(np.int8)), TypeError, "x: int8"),
]

LOSSES = [
    (lambda: F.softmax_loss(SCORES[0], LABELS), ValueError, r"scores must be 2-D \(N, C\), got shape \(4,\)"),
    (lambda: F.svm_loss(SCORES.astype(np.int64), LABELS), TypeError, "scores: int64"),
    (lambda: F.softmax_loss(SCORES, LABELS.astype(float)), TypeError,
     "y must hold integer class labels, got dtype float64"),
    (lambda: F.svm_loss(SCORES, LABELS[:2]), ValueError,
     r"y must have shape \(N,\) with N = 3 \(one label per row of scores\), got \(2,\)"),
    (lambda: F.softmax_loss(SCORES, LABELS[:, None]), ValueError, r"y must have shape \(N,\) with N = 3"),
    (lambda: F.softmax_loss(SCORES, np.array([0, 4, 1])), ValueError,
     r"labels must be in \[0, 4\) for 4 classes, got values in \[0, 4\]"),
    (lambda: F.svm_loss(SCORES, np.array([0, -1, 1])), ValueError, r"labels must be in \[0, 4\).*\[-1, 1\]"),
    (lambda: F.softmax_loss(SCORES[:0], LABELS[:0]), ValueError,
     r"scores must have at least one sample and one class, got shape \(0, 4\)"),
]


@pytest.mark.parametrize("call, error, message", CONV + POOL + AFFINE_AND_ACTIVATIONS + BATCHNORM_AND_DROPOUT + LOSSES)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_valid_calls_next_to_the_bad_ones_pass():
    """The baseline arguments of the bad-input table are themselves accepted."""
    conv()
    bn()
    dropout(seed=3)
    F.max_pool2d_forward(X, 3, padding=1)
    F.softmax_loss(SCORES, LABELS)
    F.affine_forward(np.zeros((2, 3, 4)), np.zeros((12, 2)), np.zeros(2))
