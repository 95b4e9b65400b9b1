"""2-D convolution on the compiled drivers of cnnkit._ext (conv, winograd, direct); cnnkit.reference.conv's contract.

Shapes: x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, OH, OW), any stride and padding.
One algorithm per shape (forward_algorithm), the same for forward and backward but direct's:

- Winograd F(2x2, 3x3) (cnnkit/_ext/winograd.pyx, or its AVX2 build winograd_avx2.pyx where the
  CPU has AVX2) for a 3x3 stride-1 convolution, any padding, with C and F >= WINOGRAD_MIN_CHANNELS,
  at least WINOGRAD_MIN_TILES 2x2 output tiles in the batch, and OW >= WINOGRAD_MIN_WIDTH unless
  C and F >= WINOGRAD_NARROW_CHANNELS; with C and F >= WINOGRAD_WIDE_CHANNELS, from
  WINOGRAD_FEW_TILES tiles on any map (the weights then outweigh the batch, which the kernels
  take as one band): 2.25 times fewer multiply-adds, which pay for its transforms only with
  enough channels, and for its 16 weight matrices only with enough tiles.
- direct (cnnkit/_ext/direct_avx512.pyx, built and imported where the CPU has AVX-512), forward only,
  for any other convolution but a pointwise one with F >= DIRECT_MIN_FILTERS whose outputs fill
  enough of the kernel's vector lanes (lane_use; narrow maps take a vector over several rows): at
  stride 1 with at most DIRECT_MAX_TAPS taps C*KH*KW or DIRECT_FEW_FILTERS filters, or any on
  float32 outputs DIRECT_WIDE_OUTPUT wide (GEMM runs as fast on narrower ones with more), at other strides
  with at most DIRECT_STRIDED_MAX_TAPS (stems: few channels, large windows) or any in float32: the products in
  registers over the input in place, no im2col, with the outputs or (narrow maps, many filters:
  direct_avx512.filters_in_lanes) the filters in the vector lanes; its backward is im2col's but for
  the data gradient at stride 1 with C >= DIRECT_DATA_MIN_CHANNELS, the direct forward of dout with
  the flipped weights where that forward is direct by this rule (_direct_data_gradient).
- im2col + GEMM (cnnkit/_ext/conv.pyx) otherwise: work items of output rows, or of whole
  images on small maps, im2col into a per-thread buffer that stays in cache, single-threaded
  BLAS calls without the GIL, col2im; where the weights outweigh the batch (N*OH*OW at most
  twice F: small maps with many channels, batches of one or two) the whole batch is one item,
  each product made once over all its columns in fixed slices of filters or rows; a pointwise
  convolution (1x1, unit stride, no padding) multiplies x itself, with no im2col (its backward on maps
  small enough: the whole batch's columns, as above).

Threads: cnnkit.set_num_threads, with one per CONV_GRAIN multiply-adds at most; BLAS's own pool
is held at one thread meanwhile (both in cnnkit/fast/_threads.py). Results are bit for bit the
same from call to call at a given thread count (the weight gradients at any count).
Cache: x, w, b and the window, not the im2col columns; x, w and b are the caller's own arrays
when C-contiguous, so the cache costs no memory then. The drivers' [w | b] is one array per
Python thread, rewritten by each call (a new one cost a page fault per 4 KB every time).
conv2d_relu runs the same drivers with the ReLU taken in their output pass, and its backward has
them read dout through the output's mask: the unfused pair's results bit for bit, without ReLU's
own passes over the output. input_grad=False skips the data-gradient products on every path.
"""
import contextlib
import math

import numpy as np

from cnnkit._ext import conv as _kernels
from cnnkit._ext import cpu
from cnnkit._ext import winograd as _winograd_kernels
from cnnkit._ext._drivers import workspace
from cnnkit._ext.activations import Activation
from cnnkit._runtime import single_threaded_blas
from cnnkit.fast._checks import checked_float_arrays, checked_gradient, checked_window
from cnnkit.fast._threads import product_threads
from cnnkit.fast.activations import relu_backward

if cpu.has_avx2():  # the same drivers built for AVX2 (not built off x86-64): same bits, faster
    with contextlib.suppress(ImportError):
        from cnnkit._ext import winograd_avx2 as _winograd_kernels
WINOGRAD_BUILD = "AVX2" if _winograd_kernels.__name__.endswith("_avx2") else "baseline"  # for cnnkit info
_direct_kernels = None  # the direct convolution, built for AVX-512 only (not built off x86-64): where the CPU has it
if cpu.has_avx512():
    with contextlib.suppress(ImportError):
        from cnnkit._ext import direct_avx512 as _direct_kernels
DIRECT_BUILD = "none" if _direct_kernels is None else "AVX-512"  # for cnnkit info

WINOGRAD_MIN_CHANNELS = 16  # C and F from which Winograd measured faster than im2col
WINOGRAD_MIN_WIDTH = 16  # output width (OW) from which it did with so few channels: its transforms cost per tile
WINOGRAD_NARROW_CHANNELS = 64  # C and F from which it did on narrower maps too (8x8, 4x4 ones of many images)
WINOGRAD_MIN_TILES = 256  # 2x2 tiles of the batch below which it did not: too few to pay for its weight transforms
WINOGRAD_WIDE_CHANNELS = 128  # C and F from which it did with fewer tiles: small maps, few images
WINOGRAD_FEW_TILES = 32  # the tiles it then needs
DIRECT_MIN_FILTERS = 4  # F from which the direct convolution measured faster than im2col (0.74-0.90 with 4)
DIRECT_MIN_LANE_USE = 0.65  # share of its vectors' lanes that the outputs must fill for it to (0.69: 0.80-0.88)
DIRECT_MAX_TAPS = 800  # C*KH*KW up to which it did with any F; with more, GEMM ran as fast from 128 filters on
DIRECT_FEW_FILTERS = 64  # F up to which it did with more taps (and 0.4-0.7 times the time with 8 to 32 filters)
DIRECT_WIDE_OUTPUT = 16  # OW from which it did with any taps and filters (0.66-0.92 times im2col's: 5x5 on 27x27 and
#                          28x28 with 64 and 192 channels, 1x7 and 7x1 on 17x17 and 28x28 with 128 and 256); with
#                          narrower outputs and many taps and filters, im2col stays (1.0-1.4: 13x13, 8x8, 2x2);
#                          float32 only (float64 1x7 / 7x1 on 17x17 with 128: 1.17 times im2col's forward + backward)
DIRECT_STRIDED_MAX_TAPS = 400  # C*KH*KW up to which it did at strides above 1 (stems 0.5-0.7; 3x3/2 on 32 ch. 0.95);
#                                any on float32 (3x3/2 with 1152 taps 0.88-0.94, 5x5/2 with 800 0.72-0.74)
DIRECT_STRIDED_MIN_LANE_USE = 0.8  # the lanes those must fill (3x3/2, 24 channels, 0.75 of the lanes: 1.1-1.2)
DIRECT_DATA_MIN_CHANNELS = 16  # C from which the data gradient as a direct forward beat im2col's (LeNet's 6: 1.1-1.25)


def conv2d_forward(x, w, b, stride, padding):
    """cnnkit.reference.conv2d_forward on the compiled drivers: x (N, C, H, W), w (F, C, KH, KW),
    b (F,) -> out (N, F, OH, OW), cache (x, w, b, (kernel, stride, padding)).
    """
    return _forward(x, w, b, stride, padding, relu=False)


def conv2d_backward(dout, cache, input_grad=True):
    """cnnkit.reference.conv2d_backward: dout (N, F, OH, OW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,);
    dx None, not computed, when input_grad is False.
    """
    return _backward(dout, cache, None, input_grad)


def conv2d_relu_forward(x, w, b, stride, padding):
    """cnnkit.reference.conv2d_relu_forward: the ReLU taken in the drivers' output pass ->
    out (N, F, OH, OW), cache (conv2d_forward's cache, out).
    """
    out, cache = _forward(x, w, b, stride, padding, relu=True)
    return out, (cache, out)


def conv2d_relu_backward(dout, cache, input_grad=True):
    """cnnkit.reference.conv2d_relu_backward: dout counts where out > 0, read so by the drivers -> dx, dw, db."""
    conv_cache, out = cache
    return _backward(dout, conv_cache, out, input_grad)


def _forward(x, w, b, stride, padding, relu):
    x, w, b = checked_float_arrays([x, w, b], ["x", "w", "b"], ["(N, C, H, W)", "(F, C, KH, KW)", "(F,)"])
    if x.shape[1] != w.shape[1] or b.shape[0] != w.shape[0]:
        raise ValueError(f"x {x.shape}, w {w.shape} and b {b.shape} do not match: expected x (N, C, H, W), "
                         f"w (F, C, KH, KW), b (F,)")
    kernel, stride, padding, out_hw = checked_window(x.shape, w.shape[2:], stride, padding)
    out = np.empty(x.shape[:1] + w.shape[:1] + out_hw, dtype=x.dtype)
    threads = product_threads(_multiply_adds(out, w))
    algorithm = forward_algorithm(x.shape, w.shape, kernel, stride, padding, out_hw, x.dtype)
    with single_threaded_blas():
        run_forward(algorithm, x, w, b, out, kernel, stride, padding, threads, relu)
    return out, (x, w, b, (kernel, stride, padding))


def _backward(dout, cache, relu_out, input_grad):
    """dx (None unless input_grad), dw, db of conv2d_forward's cache; dout read as 0 where relu_out (a fused
    ReLU's output) is not > 0.
    """
    x, w, b, (kernel, stride, padding) = cache
    out_hw = checked_window(x.shape, kernel, stride, padding)[3]
    dout = checked_gradient(dout, x.dtype, x.shape[:1] + w.shape[:1] + out_hw)
    threads = product_threads((1 + input_grad) * _multiply_adds(dout, w))
    dx = np.empty_like(x) if input_grad else None
    with single_threaded_blas():
        if _uses_winograd(x.shape, w.shape, kernel, stride, out_hw):
            dw, db = np.empty_like(w), np.empty_like(b)
            _winograd_kernels.winograd_backward(x, w, dout, dx, dw, db, *padding, threads, relu_out)
            return dx, dw, db
        direct_dx = input_grad and _direct_data_gradient(x.shape, w.shape, kernel, stride, padding, x.dtype)
        if direct_dx and relu_out is not None:  # masked once, for both the weight and the data gradient
            dout, relu_out = relu_backward(dout, (Activation.RELU, relu_out, relu_out, 0.0)), None
        weight_bias_grad = np.empty((len(w), math.prod(w.shape[1:]) + 1), dtype=x.dtype)
        _kernels.conv_backward(x, _weights_with_bias(w, b), _flat_hw(dout), None if direct_dx else dx,
                               weight_bias_grad, *kernel, *stride, *padding, threads,
                               None if relu_out is None else _flat_hw(relu_out))
        if direct_dx:
            _direct_kernels.direct_forward(dout, _flipped(w), np.zeros(x.shape[1], x.dtype), dx, 1, 1,
                                           kernel[0] - 1 - padding[0], kernel[1] - 1 - padding[1], threads)
    return dx, weight_bias_grad[:, :-1].reshape(w.shape), weight_bias_grad[:, -1].copy()


def _direct_data_gradient(x_shape, w_shape, kernel, stride, padding, dtype):
    """Whether the data gradient of a convolution on im2col's backward runs as the direct forward of dout (N, F, OH,
    OW) with the flipped weights (C, F, KH, KW) at padding (KH - 1 - PH, KW - 1 - PW): at stride 1 with padding
    inside the kernel, C >= DIRECT_DATA_MIN_CHANNELS, where that forward is direct by _uses_direct."""
    if _direct_kernels is None or stride != (1, 1) or x_shape[1] < DIRECT_DATA_MIN_CHANNELS:
        return False
    flipped_padding = tuple(k - 1 - p for k, p in zip(kernel, padding))
    out_hw = tuple(size + 2 * p - k + 1 for size, p, k in zip(x_shape[2:], padding, kernel))
    return min(flipped_padding) >= 0 and _uses_direct((x_shape[0], w_shape[0], *out_hw), (x_shape[1], w_shape[0],
                                                      *kernel), kernel, (1, 1), flipped_padding, x_shape[2:], dtype)


def _flipped(w):
    """w (F, C, KH, KW) as the weights (C, F, KH, KW) of its data gradient's convolution: transposed, rotated 180
    degrees."""
    return np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def forward_algorithm(x_shape, w_shape, kernel, stride, padding, out_hw, dtype):
    """The forward's algorithm for a convolution of x (N, C, H, W) with w (F, C, KH, KW) to (OH, OW) in dtype:
    "winograd", "direct" or "im2col"."""
    if _uses_winograd(x_shape, w_shape, kernel, stride, out_hw):
        return "winograd"
    if _uses_direct(x_shape, w_shape, kernel, stride, padding, out_hw, dtype):
        return "direct"
    return "im2col"


def takes_pooling(algorithm, kernel, stride, padding):
    """Whether algorithm's forward pools its output in the same pass (pool=True: 2x2 max pooling at stride 2,
    the inference plan's): direct's, and im2col's but pointwise."""
    return algorithm == "direct" or (algorithm == "im2col" and not (kernel == stride == (1, 1) and padding == (0, 0)))


def run_forward(algorithm, x, w, b, out, kernel, stride, padding, threads, relu, pool=False):
    """out (N, F, OH, OW) = the convolution of x with w and b on algorithm, or its ReLU with relu; with pool (where
    takes_pooling), out (N, F, OH // 2, OW // 2) = the maxima of that's 2x2 windows at stride 2."""
    if pool and not takes_pooling(algorithm, kernel, stride, padding):
        raise ValueError(f"the {algorithm} forward of this window pools in a step of its own, not in its output pass")
    if algorithm == "winograd":
        _winograd_kernels.winograd_forward(x, w, b, out, *padding, threads, relu)
    elif algorithm == "direct":
        _direct_kernels.direct_forward(x, w, b, out, *stride, *padding, threads, relu, pool)
    else:
        _kernels.conv_forward(x, _weights_with_bias(w, b), _flat_hw(out), *kernel, *stride, *padding, threads, relu,
                              pool)


def _uses_direct(x_shape, w_shape, kernel, stride, padding, out_hw, dtype):
    """Whether a convolution of x (N, C, H, W) with w (F, C, KH, KW) to (OH, OW) that is not on Winograd runs
    forward on the direct kernel: where it is built, not pointwise, with DIRECT_MIN_FILTERS filters, and outputs
    that fill DIRECT_MIN_LANE_USE of the kernel's vector lanes; at stride 1 with at most DIRECT_MAX_TAPS taps, or
    more with at most DIRECT_FEW_FILTERS filters or (float32) on outputs DIRECT_WIDE_OUTPUT wide; at other strides
    with at most DIRECT_STRIDED_MAX_TAPS taps (any in float32) that fill DIRECT_STRIDED_MIN_LANE_USE of the lanes."""
    if _direct_kernels is None or w_shape[0] < DIRECT_MIN_FILTERS or (kernel == (1, 1) and padding == (0, 0)):
        return False
    taps = math.prod(w_shape[1:])
    single = np.dtype(dtype) == np.float32
    if stride != (1, 1):
        few, least = taps <= DIRECT_STRIDED_MAX_TAPS or single, DIRECT_STRIDED_MIN_LANE_USE
    else:
        wide = out_hw[1] >= DIRECT_WIDE_OUTPUT and single
        few = taps <= DIRECT_MAX_TAPS or w_shape[0] <= DIRECT_FEW_FILTERS or wide
        least = DIRECT_MIN_LANE_USE
    return few and _direct_kernels.lane_use(x_shape, w_shape, stride, padding) >= least


def _uses_winograd(x_shape, w_shape, kernel, stride, out_hw):
    """Whether a convolution of x (N, C, H, W) with w (F, C, KH, KW) to (OH, OW) runs on Winograd F(2x2, 3x3)."""
    channels, tiles = min(w_shape[:2]), x_shape[0] * ((out_hw[0] + 1) // 2) * ((out_hw[1] + 1) // 2)
    if kernel != (3, 3) or stride != (1, 1) or channels < WINOGRAD_MIN_CHANNELS:
        return False
    if channels >= WINOGRAD_WIDE_CHANNELS:
        return tiles >= WINOGRAD_FEW_TILES
    return tiles >= WINOGRAD_MIN_TILES and (out_hw[1] >= WINOGRAD_MIN_WIDTH or channels >= WINOGRAD_NARROW_CHANNELS)


def _flat_hw(a):
    """(N, F, OH, OW) -> (N, F, OH*OW) view, N = 0 included."""
    return a.reshape(a.shape[:2] + (a.shape[2] * a.shape[3],))


def _weights_with_bias(w, b):
    """[w.reshape(F, C*KH*KW) | b], shape (F, C*KH*KW + 1): the drivers' weight matrix, in an array kept per
    Python thread that the next call overwrites (a new one of a few MB cost a page fault per 4 KB on every call).
    """
    rows = math.prod(w.shape[1:])
    size = len(w) * (rows + 1)
    wb = workspace(w.dtype, size, slot="weights")[:size].reshape(len(w), rows + 1)
    wb[:, :rows] = w.reshape(len(w), rows)
    wb[:, rows] = b
    return wb


def _multiply_adds(out, w):
    """Multiply-adds of one GEMM pass: N*F*OH*OW outputs times C*KH*KW."""
    return out.size * (w.size // max(1, len(w)))
