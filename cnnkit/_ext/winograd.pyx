# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Winograd F(2x2, 3x3) drivers for 3x3 stride-1 convolutions (Lavin and Gray 2016).

Shapes: x (N, C, H, W), w (F, C, 3, 3), b (F,), any padding (ph, pw) >= 0 -> out (N, F, OH, OW);
the backward takes dout (N, F, OH, OW) and writes dx (unless None), dw, db.

Notation: a tile is a 2x2 block of output positions; it reads the 4x4 input patch d at
(2*ty - ph, 2*tx - pw), zeros outside the image. An image has TH x TW tiles (the last row
and column may stick out of the output and are cropped). k in [0, 16) indexes the 4x4
transformed domain. With B^T, G, A^T of the paper:
    U_k = (G g G^T)_k (F, C)      V_k = (B^T d B)_k (C, T)      M_k = U_k @ V_k (F, T)
    y = A^T m A (2x2 per tile)    dM_k = (A dy A^T)_k            dU_k = sum over tiles dM_k V_k^T
    dw = G^T dU G                  dV_k = U_k^T @ dM_k (C, T)     dx = B dv B^T, overlap-added
Each GEMM of the 16 has 2.25 times fewer multiply-adds per output than im2col's.

Contract and rules:
1. The unit of work is a band: `rows` consecutive tile rows of the whole batch (a band may
   run across images, so the GEMMs of small images stay large), chosen so that a thread's V
   and M (16 * (C + F) * rows * TW entries) fill at most BAND_BYTES, and small enough for
   MIN_BANDS bands, so that the threads and the gradient groups (5.) get even shares. The
   input transform writes V while the band's input is in cache, the 16 GEMMs read it, the
   output transform writes out (NCHW) from M. Where the weights outweigh the batch (its tiles
   times C + F at most WHOLE_BATCH times F * C: small maps with many channels, few images),
   the whole batch is one band and the threads split its steps instead, each step's even
   shares of the channels or filters and the 16 GEMMs a k at a time: U_k is then read once
   per call, not once per band, and the GEMMs are as wide as the batch. Where its V takes at
   most SLICED_BYTES, its forward transforms the filters FILTER_SLICE at a time, each slice's
   16 products made while its U is in cache: U, 16/9 the size of w, is never written whole to
   memory and read back (V, read once per slice, stays in L2: 0.6-0.87 of the forward's time
   at 1 thread on 4x4 to 14x14 maps with 128 to 512 channels; 2 x 384 x 13 x 13 -> 256, with a
   V of 2.4 MB: 1.18); its backward makes dU the same way, each slice transformed into dw while
   in cache (0.89-0.94 of the backward's time; the data gradient still reads U whole).
2. The 1-D transforms are written out by hand (_input_1d and friends) and applied along
   rows, then along columns, of each tile. BLOCK tiles of one channel at a time: their input
   rows are copied, zero-padded, into an array on the stack, transformed into another and
   stored to their 16 matrices, so the loop over tiles has no bounds test and GCC vectorises
   it (plain loops, not memcpy calls per block). Channel by channel, then tile row: reads run
   along each plane rather than jumping from plane to plane. On narrow maps (rows of at most
   NARROW_TILES tiles) a block is BLOCK consecutive tiles of the band across tile rows (and
   images), taken in runs of one tile row each (the data gradient's: as many whole tile rows
   as a block holds): a row's own tiles would fill few of a block's lanes and pay a block's
   loops and stores per tile row (4x4 maps: 0.70-0.76 of the forward's time, 0.7-0.75 of the
   backward's; 8x8 to 14x14 maps 0.83-0.95). The 16 matrices of a band lie
   SKEW entries more than their size apart, so that the 16 streams of a block's stores do not
   fall in one cache set when that size is a power of two. The filter transforms take BLOCK
   filters at a time the same way, vectorised across filters.
3. Forward: bands dealt out dynamically; U is computed once per call, the threads taking
   even shares of the filters.
4. Backward: one pass over the bands for all three gradients. A band transforms x (V) and
   dout (dM, summing db), adds dM_k @ V_k.T into dU, then computes dV_k = U_k.T @ dM_k in
   V's place and transforms it into dx; dM is shared by both products. The backward stores V
   tile-major, (16, T, C), so that dU_k += dM_k @ V_k is a plain product, which OpenBLAS runs
   in its small-matrix kernel without packing; the input transform then takes CHANNELS
   channels at a time and transposes their blocks in squares of 8 floats or 4 doubles (AVX
   shuffles where built with AVX, plain loops otherwise).
   Neighbouring tile rows overlap by two rows of dx: each tile row stores its last two rows
   and adds its first two to the row above's, so a band needs no zeroed dx, and only where
   two groups (5.) meet could two threads write the same rows: a group keeps its first tile
   row's first two rows apart and they are added after the parallel loop, in group order.
5. The bands are cut into GRADIENT_GROUPS groups of consecutive bands, fixed by the shapes
   alone. A group sums its dU (16, F, C) and db in band order, the groups are then added in
   order and dU transformed back once: dw, db and dx are bit for bit the same on every call,
   whatever the thread count. A batch that is one band (1.) needs no groups: each dU_k is one
   product over all its tiles, made by one thread. V is computed again from x: the cache keeps
   x, w and b only (a kept V would take 4 times the memory of x).
6. Buffers come from the per-Python-thread workspace (cnnkit/_ext/_drivers.py): U, the group
   sums and kept rows, and one band's V and M per thread (dU and the one band's V and M of a
   batch that is one band, whose forward may keep a slice of U per thread instead of U). Nothing
   scales with N but that one band, at most WHOLE_BATCH times U.
7. ReLU fused (conv2d_relu): the output transform stores max(0, y) (the fast ReLU's formula),
   and the output-gradient transform reads dout as 0 where out is not > 0. The gradients are
   those of the unfused pair, bit for bit, without ReLU's own passes over the output.
8. Not F(4x4, 3x3): its float32 rounding error is an order of magnitude above F(2x2, 3x3)'s,
   beyond the tolerance the fast ops promise against the reference.
Which shapes run here rather than on im2col is cnnkit/fast/conv.py's rule (_uses_winograd).
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.limits cimport INT_MAX
from libc.string cimport memcpy, memset

from cnnkit._ext._blas cimport gemm
from cnnkit._ext._drivers import check_threads, expect_shape, workspace


cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize("no-tree-loop-distribute-patterns")
    #endif
    #if defined(__AVX__)
    #include <immintrin.h>
    #endif
    /* dst[l * ds + c] = src[c * ss + l] for c, l < 8: a square of floats transposed (8 rows of 8) */
    static inline void cnnkit_transpose_floats(const float* src, Py_ssize_t ss, float* dst, Py_ssize_t ds) {
    #if defined(__AVX__)
        __m256 a0 = _mm256_loadu_ps(src), a1 = _mm256_loadu_ps(src + ss), a2 = _mm256_loadu_ps(src + 2 * ss),
               a3 = _mm256_loadu_ps(src + 3 * ss), a4 = _mm256_loadu_ps(src + 4 * ss),
               a5 = _mm256_loadu_ps(src + 5 * ss), a6 = _mm256_loadu_ps(src + 6 * ss),
               a7 = _mm256_loadu_ps(src + 7 * ss);
        __m256 b0 = _mm256_unpacklo_ps(a0, a1), b1 = _mm256_unpackhi_ps(a0, a1), b2 = _mm256_unpacklo_ps(a2, a3),
               b3 = _mm256_unpackhi_ps(a2, a3), b4 = _mm256_unpacklo_ps(a4, a5), b5 = _mm256_unpackhi_ps(a4, a5),
               b6 = _mm256_unpacklo_ps(a6, a7), b7 = _mm256_unpackhi_ps(a6, a7);
        __m256 c0 = _mm256_shuffle_ps(b0, b2, 0x44), c1 = _mm256_shuffle_ps(b0, b2, 0xEE),
               c2 = _mm256_shuffle_ps(b1, b3, 0x44), c3 = _mm256_shuffle_ps(b1, b3, 0xEE),
               c4 = _mm256_shuffle_ps(b4, b6, 0x44), c5 = _mm256_shuffle_ps(b4, b6, 0xEE),
               c6 = _mm256_shuffle_ps(b5, b7, 0x44), c7 = _mm256_shuffle_ps(b5, b7, 0xEE);
        _mm256_storeu_ps(dst, _mm256_permute2f128_ps(c0, c4, 0x20));
        _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(c1, c5, 0x20));
        _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(c2, c6, 0x20));
        _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(c3, c7, 0x20));
        _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(c0, c4, 0x31));
        _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(c1, c5, 0x31));
        _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(c2, c6, 0x31));
        _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(c3, c7, 0x31));
    #else
        for (int c = 0; c < 8; c++)
            for (int l = 0; l < 8; l++)
                dst[l * ds + c] = src[c * ss + l];
    #endif
    }
    /* the same for doubles, 4 rows of 4 */
    static inline void cnnkit_transpose_doubles(const double* src, Py_ssize_t ss, double* dst, Py_ssize_t ds) {
    #if defined(__AVX__)
        __m256d a0 = _mm256_loadu_pd(src), a1 = _mm256_loadu_pd(src + ss), a2 = _mm256_loadu_pd(src + 2 * ss),
                a3 = _mm256_loadu_pd(src + 3 * ss);
        __m256d b0 = _mm256_unpacklo_pd(a0, a1), b1 = _mm256_unpackhi_pd(a0, a1), b2 = _mm256_unpacklo_pd(a2, a3),
                b3 = _mm256_unpackhi_pd(a2, a3);
        _mm256_storeu_pd(dst, _mm256_permute2f128_pd(b0, b2, 0x20));
        _mm256_storeu_pd(dst + ds, _mm256_permute2f128_pd(b1, b3, 0x20));
        _mm256_storeu_pd(dst + 2 * ds, _mm256_permute2f128_pd(b0, b2, 0x31));
        _mm256_storeu_pd(dst + 3 * ds, _mm256_permute2f128_pd(b1, b3, 0x31));
    #else
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 4; l++)
                dst[l * ds + c] = src[c * ss + l];
    #endif
    }
    """
    void cnnkit_transpose_floats(const float* src, Py_ssize_t ss, float* dst, Py_ssize_t ds) noexcept nogil
    void cnnkit_transpose_doubles(const double* src, Py_ssize_t ss, double* dst, Py_ssize_t ds) noexcept nogil


GRADIENT_GROUPS = 8  # groups of bands whose weight gradients are summed apart (see 5.)
BAND_BYTES = 1 << 20  # largest V and M of one band together (see 1.)
MIN_BANDS = 16  # bands at least, when there are as many tile rows (see 1.)
WHOLE_BATCH = 2.0  # the batch is one band where its tiles times (C + F) are at most this times F * C (see 1.)
NARROW_TILES = 7  # tiles a row up to which the transforms take blocks across tile rows (see 2.)
SLICED_BYTES = 1 << 21  # largest V of a batch that is one band whose forward takes the filters in slices (see 1.)
cdef enum:
    BLOCK = 16  # tiles transformed together, in arrays on the stack (see 2.)
    SKEW = 16  # entries between the 16 matrices of a band (see 2.)
    CHANNELS = 16  # channels transformed together when V is stored tile-major (see 4.)
    FILTER_SLICE = 32  # filters a whole batch's forward transforms at a time, just before their products (see 1.)


cdef struct Tiling:
    Py_ssize_t N, C, H, W, F, OH, OW  # input (N, C, H, W), output (N, F, OH, OW)
    Py_ssize_t ph, pw  # padding, >= 0
    Py_ssize_t TH, TW, rows, bands  # tiles down and across an image, tile rows per band, bands
    bint whole  # the whole batch is one band, its work split by channels, filters and k (see 1.)
    bint narrow  # rows of at most NARROW_TILES tiles: blocks of tiles across tile rows (see 2.)
    bint sliced  # the whole batch one band, its V at most SLICED_BYTES: filters FILTER_SLICE at a time (see 1.)
    Py_ssize_t vs, ms  # entries from one matrix V_k (M_k) of a band to the next, skewed (see 2.)


cdef Tiling _tiling(tuple x_shape, tuple w_shape, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t itemsize) except *:
    """The tiles of x (N, C, H, W) convolved with w (F, C, 3, 3) at stride 1, padding (ph, pw) >= 0;
    ValueError if they clash."""
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got ({ph}, {pw})")
    if x_shape[1] != w_shape[1] or w_shape[2:] != (3, 3):
        raise ValueError(f"w must have shape (F, C, 3, 3) with C = {x_shape[1]}, got {w_shape}")
    cdef Tiling t
    t.N, t.C, t.H, t.W = x_shape
    t.F, t.ph, t.pw = w_shape[0], ph, pw
    t.OH, t.OW = t.H + 2 * ph - 2, t.W + 2 * pw - 2
    if t.OH < 1 or t.OW < 1:
        raise ValueError(f"a 3x3 window does not fit x {x_shape} with padding ({ph}, {pw})")
    t.TH, t.TW = (t.OH + 1) // 2, (t.OW + 1) // 2
    t.narrow = t.TW <= NARROW_TILES
    t.whole = t.N > 0 and t.N * t.TH * t.TW * <double>(t.C + t.F) <= WHOLE_BATCH * t.F * <double>t.C
    if t.whole:
        t.rows = t.N * t.TH
    else:
        t.rows = max(1, min((t.N * t.TH + MIN_BANDS - 1) // MIN_BANDS,
                            BAND_BYTES // (16 * max(1, t.C + t.F) * t.TW * itemsize)))
    t.bands = (t.N * t.TH + t.rows - 1) // t.rows
    t.vs, t.ms = t.C * t.rows * t.TW + SKEW, t.F * t.rows * t.TW + SKEW
    t.sliced = t.whole and 16 * t.C * t.rows * t.TW * itemsize <= SLICED_BYTES
    if max(t.C, t.F, t.rows * t.TW) > INT_MAX:
        raise ValueError(f"C = {t.C}, F = {t.F} and the tiles of a band must each fit BLAS's int")
    return t


cdef inline Py_ssize_t _thread_size(const Tiling* t) noexcept nogil:
    """Entries of one thread's buffer: V (16, C, T) and M (16, F, T) of a band."""
    return 16 * (t.vs + t.ms)


cdef inline void _input_1d(const floating* d, Py_ssize_t ds, floating* o, Py_ssize_t os) noexcept nogil:
    """o = B^T d for the 4-vector d (entries ds apart), written os apart."""
    o[0] = d[0] - d[2 * ds]
    o[os] = d[ds] + d[2 * ds]
    o[2 * os] = d[2 * ds] - d[ds]
    o[3 * os] = d[ds] - d[3 * ds]


cdef inline void _input_gradient_1d(const floating* v, Py_ssize_t vs, floating* o, Py_ssize_t os) noexcept nogil:
    """o = B v for the 4-vector v: the adjoint of _input_1d."""
    o[0] = v[0]
    o[os] = v[vs] - v[2 * vs] + v[3 * vs]
    o[2 * os] = v[vs] + v[2 * vs] - v[0]
    o[3 * os] = -v[3 * vs]


cdef inline void _filter_1d(const floating* g, Py_ssize_t gs, floating* o, Py_ssize_t os) noexcept nogil:
    """o = G g for the 3-vector g."""
    o[0] = g[0]
    o[os] = (g[0] + g[gs] + g[2 * gs]) * <floating>0.5
    o[2 * os] = (g[0] - g[gs] + g[2 * gs]) * <floating>0.5
    o[3 * os] = g[2 * gs]


cdef inline void _filter_gradient_1d(const floating* u, Py_ssize_t us, floating* o, Py_ssize_t os) noexcept nogil:
    """o = G^T u for the 4-vector u: the adjoint of _filter_1d."""
    o[0] = u[0] + (u[us] + u[2 * us]) * <floating>0.5
    o[os] = (u[us] - u[2 * us]) * <floating>0.5
    o[2 * os] = (u[us] + u[2 * us]) * <floating>0.5 + u[3 * us]


cdef inline void _output_1d(const floating* m, Py_ssize_t ms, floating* o, Py_ssize_t os) noexcept nogil:
    """o = A^T m for the 4-vector m (2 entries)."""
    o[0] = m[0] + m[ms] + m[2 * ms]
    o[os] = m[ms] - m[2 * ms] - m[3 * ms]


cdef inline void _output_gradient_1d(const floating* y, Py_ssize_t ys, floating* o, Py_ssize_t os) noexcept nogil:
    """o = A y for the 2-vector y: the adjoint of _output_1d."""
    o[0] = y[0]
    o[os] = y[0] + y[ys]
    o[2 * os] = y[0] - y[ys]
    o[3 * os] = -y[ys]


cdef void _transform_filters(const floating* w, floating* U, Py_ssize_t F, Py_ssize_t C, Py_ssize_t f0,
                             Py_ssize_t f1) noexcept nogil:
    """U (16, F, C) = G g G^T of every filter g = w[f, c] of w (F, C, 3, 3), f in [f0, f1).

    BLOCK filters at a time, gathered into arrays on the stack with the filter innermost, so that GCC vectorises
    the transforms across filters (as 2. does across tiles).
    """
    cdef Py_ssize_t block, j, n, i, l
    cdef floating g[9 * BLOCK]
    cdef floating s[12 * BLOCK]
    cdef floating u[16 * BLOCK]
    for block in range(((f1 - f0) * C + BLOCK - 1) // BLOCK):
        j = f0 * C + block * BLOCK  # filter w[f, c] flattened: f * C + c
        n = min(BLOCK, f1 * C - j)
        for i in range(9):
            for l in range(n):
                g[i * BLOCK + l] = w[(j + l) * 9 + i]
        for l in range(n):
            for i in range(3):
                _filter_1d(g + 3 * i * BLOCK + l, BLOCK, s + 4 * i * BLOCK + l, BLOCK)
            for i in range(4):
                _filter_1d(s + i * BLOCK + l, 4 * BLOCK, u + i * BLOCK + l, 4 * BLOCK)
        _store_block(u, U + j, F * C, n)


cdef void _filter_gradients(const floating* dU, floating* dw, Py_ssize_t F, Py_ssize_t C, Py_ssize_t f0,
                            Py_ssize_t f1) noexcept nogil:
    """dw (F, C, 3, 3) = G^T u G of every u = dU[:, f, c] of dU (16, F, C), f in [f0, f1); BLOCK filters at a
    time, as in _transform_filters.
    """
    cdef Py_ssize_t block, j, n, i, l
    cdef floating u[16 * BLOCK]
    cdef floating s[12 * BLOCK]
    cdef floating g[9 * BLOCK]
    for block in range(((f1 - f0) * C + BLOCK - 1) // BLOCK):
        j = f0 * C + block * BLOCK
        n = min(BLOCK, f1 * C - j)
        for i in range(16):
            for l in range(n):
                u[i * BLOCK + l] = dU[i * F * C + j + l]
        for l in range(n):
            for i in range(4):
                _filter_gradient_1d(u + 4 * i * BLOCK + l, BLOCK, s + 3 * i * BLOCK + l, BLOCK)
            for i in range(3):
                _filter_gradient_1d(s + i * BLOCK + l, 3 * BLOCK, g + i * BLOCK + l, 3 * BLOCK)
        for l in range(n):
            for i in range(9):
                dw[(j + l) * 9 + i] = g[i * BLOCK + l]


cdef inline void _padded_rows(const floating* plane, floating* rows, Py_ssize_t count, Py_ssize_t width,
                              Py_ssize_t stride, Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t H,
                              Py_ssize_t W) noexcept nogil:
    """rows (count, width), rows `stride` apart, = plane (H, W)[y0:y0+count, x0:x0+width], zero outside the plane."""
    cdef Py_ssize_t i, j, y, lo = min(max(0, -x0), width), hi = max(lo, min(width, W - x0))
    cdef floating* row
    for i in range(count):
        y, row = y0 + i, rows + i * stride
        for j in range(lo if 0 <= y < H else width):
            row[j] = 0
        if 0 <= y < H:
            for j in range(lo, hi):
                row[j] = plane[y * W + x0 + j]
            for j in range(hi, width):
                row[j] = 0


cdef inline void _store_block_transposed(const floating* v, floating* dst, Py_ssize_t stride, Py_ssize_t C,
                                         Py_ssize_t count, Py_ssize_t g) noexcept nogil:
    """dst[k * stride + l * C + c] = v[(c * 16 + k) * BLOCK + l] for k < 16, l < count, c < g: the blocks of
    g channels into their 16 matrices, tile-major; by squares of 8 floats or 4 doubles (_transpose) where whole
    ones fit, entry by entry elsewhere.
    """
    cdef Py_ssize_t side = 8 if floating is float else 4, whole_c = g - g % side, whole_l = count - count % side
    cdef Py_ssize_t k, l, c, i, j
    for k in range(16):
        for i in range(whole_c // side):
            for j in range(whole_l // side):
                c, l = i * side, j * side
                _transpose(v + (c * 16 + k) * BLOCK + l, 16 * BLOCK, dst + k * stride + l * C + c, C)
        for l in range(count):
            for c in range(whole_c if l < whole_l else 0, g):
                dst[k * stride + l * C + c] = v[(c * 16 + k) * BLOCK + l]


cdef inline void _transpose(const floating* src, Py_ssize_t ss, floating* dst, Py_ssize_t ds) noexcept nogil:
    """dst[l * ds + c] = src[c * ss + l] for c, l < 8 (float) or 4 (double)."""
    if floating is float:
        cnnkit_transpose_floats(src, ss, dst, ds)
    else:
        cnnkit_transpose_doubles(src, ss, dst, ds)


cdef inline void _store_block(const floating* v, floating* dst, Py_ssize_t stride, Py_ssize_t count) noexcept nogil:
    """dst[k * stride + l] = v[k * BLOCK + l] for k < 16, l < count: a block of tiles into its 16 matrices."""
    cdef Py_ssize_t k, l
    for k in range(16):
        for l in range(count):
            dst[k * stride + l] = v[k * BLOCK + l]


cdef void _transform_inputs(const Tiling* t, const floating* x, floating* V, Py_ssize_t r0,
                            Py_ssize_t count, bint transposed, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """V (16, C, count*TW) = B^T d B of every tile of tile rows [r0, r0+count), channels [lo, hi);
    V (16, count*TW, C) when transposed (see 4.), lo then a multiple of CHANNELS.
    """
    cdef Py_ssize_t q = count * t.TW, group = CHANNELS if transposed else 1, i, c0, g, r, c, block, j, nt, l, row, tx
    cdef Py_ssize_t run
    cdef floating d[4 * (2 * BLOCK + 2)]
    cdef floating v[CHANNELS * 16 * BLOCK]
    for i in range(lo // group, (hi + group - 1) // group):
        c0 = i * group
        g = min(group, hi - c0)
        for r in range(1 if t.narrow else count):
            for block in range(_blocks(t, r, q)):
                j, nt = _block(t, r, q, block)
                for c in range(g):
                    l = 0
                    while l < nt:  # the runs of the block's tiles in one tile row
                        row, tx = r0 + (j + l) // t.TW, (j + l) % t.TW
                        run = min(nt - l, t.TW - tx)
                        _padded_rows(x + (row // t.TH * t.C + c0 + c) * t.H * t.W, d, 4, 2 * run + 2, 2 * BLOCK + 2,
                                     2 * (row % t.TH) - t.ph, 2 * tx - t.pw, t.H, t.W)
                        _input_tiles(d, v + c * 16 * BLOCK + l, run)
                        l += run
                if transposed:
                    _store_block_transposed(v, V + j * t.C + c0, t.vs, t.C, nt, g)
                else:
                    _store_block(v, V + c0 * q + j, t.vs, nt)


cdef inline Py_ssize_t _blocks(const Tiling* t, Py_ssize_t r, Py_ssize_t q) noexcept nogil:
    """Blocks of BLOCK tiles of the band's q tiles (t.narrow) or of its tile row r (see 2.)."""
    return (q + BLOCK - 1) // BLOCK if t.narrow else (t.TW + BLOCK - 1) // BLOCK


cdef inline (Py_ssize_t, Py_ssize_t) _block(const Tiling* t, Py_ssize_t r, Py_ssize_t q,
                                            Py_ssize_t block) noexcept nogil:
    """(j, nt): the band's tiles j, ..., j + nt - 1 of that block."""
    cdef Py_ssize_t j = block * BLOCK if t.narrow else r * t.TW + block * BLOCK
    return j, min(BLOCK, (q if t.narrow else (r + 1) * t.TW) - j)


cdef inline void _input_tiles(const floating* d, floating* v, Py_ssize_t nt) noexcept nogil:
    """v (16, BLOCK) = B^T d B of the first nt tiles of the rows d (4, 2*BLOCK+2), tile l at column 2l."""
    cdef Py_ssize_t l, i
    cdef floating s[16]
    for l in range(nt):
        for i in range(4):
            _input_1d(d + i * (2 * BLOCK + 2) + 2 * l, 1, s + 4 * i, 1)
        for i in range(4):
            _input_1d(s + i, 4, v + i * BLOCK + l, 4 * BLOCK)


cdef void _transform_outputs(const Tiling* t, const floating* M, const floating* b, floating* out,
                             Py_ssize_t r0, Py_ssize_t count, bint relu, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """out (N, F, OH, OW) on tile rows [r0, r0+count), filters [lo, hi) = A^T m A (+ b[f] unless b is NULL),
    M (16, F, count*TW); its ReLU when relu.
    """
    cdef Py_ssize_t q = count * t.TW, r, f, block, j, nt, i, l, row, tx, run
    cdef floating y[2 * 2 * BLOCK]
    cdef floating s[8]
    cdef floating bias = 0
    cdef const floating* m
    for f in range(lo, hi):
        m = M + f * q
        if b != NULL:
            bias = b[f]
        for r in range(1 if t.narrow else count):
            for block in range(_blocks(t, r, q)):
                j, nt = _block(t, r, q, block)
                for l in range(nt):  # y: row i of tile l's 2x2 at y[i * 2 * BLOCK + 2 * l]
                    for i in range(4):
                        _output_1d(m + j + l + i * t.ms, 4 * t.ms, s + i, 4)
                    for i in range(2):
                        _output_1d(s + 4 * i, 1, y + i * 2 * BLOCK + 2 * l, 1)
                l = 0
                while l < nt:  # the runs of the block's tiles in one tile row
                    row, tx = r0 + (j + l) // t.TW, (j + l) % t.TW
                    run = min(nt - l, t.TW - tx)
                    _put_outputs(t, y + 2 * l, 2 * BLOCK, row, tx, run, out, f, bias, relu)
                    l += run


cdef inline void _put_outputs(const Tiling* t, const floating* y, Py_ssize_t ys, Py_ssize_t row, Py_ssize_t tx,
                              Py_ssize_t nt, floating* out, Py_ssize_t f, floating bias, bint relu) noexcept nogil:
    """out[n, f] at tiles (ty, tx), ..., (ty, tx + nt - 1) of tile row `row` (image n, row ty) = y (2, 2*nt), rows
    ys apart, + bias (its ReLU when relu), cropped to the output."""
    cdef Py_ssize_t i, x, height = min(2, t.OH - 2 * (row % t.TH)), width = min(2 * nt, t.OW - 2 * tx)
    cdef floating* o = out + ((row // t.TH * t.F + f) * t.OH + 2 * (row % t.TH)) * t.OW + 2 * tx
    cdef floating value
    for i in range(height):
        if relu:
            for x in range(width):
                value = y[i * ys + x] + bias
                o[i * t.OW + x] = 0 if value < 0 else value
        else:
            for x in range(width):
                o[i * t.OW + x] = y[i * ys + x] + bias


cdef void _transform_gradients(const Tiling* t, const floating* dout, const floating* out, floating* dM,
                               floating* db, Py_ssize_t r0, Py_ssize_t count, Py_ssize_t lo,
                               Py_ssize_t hi) noexcept nogil:
    """dM (16, F, count*TW) = A dy A^T of every tile's output gradient dy, filters [lo, hi); db[f] += the sum of
    dout's tiles.

    With out (the fused ReLU's output) not NULL, dy is dout where out > 0, else 0.
    """
    cdef Py_ssize_t q = count * t.TW, r, f, block, j, nt, i, l, row, tx, run
    cdef floating d[2 * 2 * BLOCK]
    cdef floating v[16 * BLOCK]
    cdef floating s[8]
    cdef double sums[2 * BLOCK]
    for f in range(lo, hi):
        for i in range(2 * BLOCK):
            sums[i] = 0
        for r in range(1 if t.narrow else count):
            for block in range(_blocks(t, r, q)):
                j, nt = _block(t, r, q, block)
                l = 0
                while l < nt:  # the runs of the block's tiles in one tile row, side by side in d (2, 2*BLOCK)
                    row, tx = r0 + (j + l) // t.TW, (j + l) % t.TW
                    run = min(nt - l, t.TW - tx)
                    _gradient_rows(t, dout, out, f, row, tx, run, d + 2 * l)
                    l += run
                for i in range(2 * nt):  # the lanes past 2 * nt would add zeros
                    sums[i] = sums[i] + d[i] + d[2 * BLOCK + i]
                for l in range(nt):
                    for i in range(2):
                        _output_gradient_1d(d + i * 2 * BLOCK + 2 * l, 1, s + 4 * i, 1)
                    for i in range(4):
                        _output_gradient_1d(s + i, 4, v + i * BLOCK + l, 4 * BLOCK)
                _store_block(v, dM + f * q + j, t.ms, nt)
        for i in range(1, 2 * BLOCK):  # once per channel and band, not per tile row: a serial chain
            sums[0] = sums[0] + sums[i]
        db[f] += <floating>sums[0]


cdef inline void _gradient_rows(const Tiling* t, const floating* dout, const floating* out, Py_ssize_t f,
                                Py_ssize_t row, Py_ssize_t tx, Py_ssize_t n, floating* d) noexcept nogil:
    """d (2, 2*n), rows 2*BLOCK apart, = the output gradient of filter f at tiles tx, ..., tx + n - 1 of tile row
    `row`, zero outside the output and where out, unless NULL, is not > 0."""
    cdef Py_ssize_t plane = (row // t.TH * t.F + f) * t.OH * t.OW, i, x
    cdef floating positive[2 * 2 * BLOCK]
    _padded_rows(dout + plane, d, 2, 2 * n, 2 * BLOCK, 2 * (row % t.TH), 2 * tx, t.OH, t.OW)
    if out != NULL:
        _padded_rows(out + plane, positive, 2, 2 * n, 2 * BLOCK, 2 * (row % t.TH), 2 * tx, t.OH, t.OW)
        for i in range(2):
            for x in range(2 * n):
                d[i * 2 * BLOCK + x] = d[i * 2 * BLOCK + x] if positive[i * 2 * BLOCK + x] > 0 else 0


cdef inline void _overlapped_tiles(const floating* v, Py_ssize_t vs, bint left, bint own, floating* e, floating* o,
                                   Py_ssize_t es) noexcept nogil:
    """Columns 2l and 2l+1 (e and o, 4 rows es apart) of a tile row's B dv B^T, overlap-added, where l is the tile
    at v (if own) and l-1 the one at v - 1 (if left), v the first of the 16 entries of dV, vs apart.

    From both tiles' dV, not from stored sums of the left one: reading those one tile over, just after they were
    stored, stalls the loads on store forwarding.
    """
    cdef floating s[16]
    cdef floating z[16]
    cdef Py_ssize_t i, j
    for j in range(4):  # down the columns: s[4i + j] is row i of column j
        if own:
            _input_gradient_1d(v + j * vs, 4 * vs, s + j, 4)
        if left:
            _input_gradient_1d(v - 1 + j * vs, 4 * vs, z + j, 4)
    for i in range(4):  # along the rows: B (own's columns 0, 1 and left's 2, 3)
        e[i * es] = ((s[4 * i] if own else 0)
                     + ((z[4 * i + 1] + z[4 * i + 2] - z[4 * i]) if left else 0))
        o[i * es] = ((s[4 * i + 1] - s[4 * i + 2] + s[4 * i + 3] if own else 0)
                     - (z[4 * i + 3] if left else 0))


cdef inline void _overlapped_pairs(const floating* v, Py_ssize_t vs, Py_ssize_t n, floating* e, floating* o,
                                   Py_ssize_t es) noexcept nogil:
    """_overlapped_tiles(v + l, vs, True, True, e + l, o + l, es) for 1 <= l <= n, in a loop that GCC vectorises.

    Pair n may be the row's right edge, past its last tile: it is read as a tile (the next row's first, or the
    entry after the band's last, which the caller zeroes), and the caller overwrites it.
    """
    cdef Py_ssize_t l, i, j
    cdef floating s[16]
    cdef floating z[16]
    for l in range(1, n + 1):
        for j in range(4):
            _input_gradient_1d(v + l + j * vs, 4 * vs, s + j, 4)
            _input_gradient_1d(v + l - 1 + j * vs, 4 * vs, z + j, 4)
        for i in range(4):
            e[i * es + l] = s[4 * i] + (z[4 * i + 1] + z[4 * i + 2] - z[4 * i])
            o[i * es + l] = (s[4 * i + 1] - s[4 * i + 2] + s[4 * i + 3]) - z[4 * i + 3]


cdef inline void _put(floating* dst, Py_ssize_t x, Py_ssize_t W, floating value, bint add) noexcept nogil:
    """dst[x] = value (or += if add) if 0 <= x < W."""
    if 0 <= x < W:
        if add:
            dst[x] += value
        else:
            dst[x] = value


cdef void _put_pairs(const floating* e, const floating* o, Py_ssize_t n, floating* dst, Py_ssize_t x0, Py_ssize_t W,
                     bint add) noexcept nogil:
    """dst[x0 + 2l] = e[l], dst[x0 + 2l + 1] = o[l] (or += if add) for l < n, where inside [0, W)."""
    cdef Py_ssize_t l, lo = 0 if x0 >= 0 else min(n, (1 - x0) // 2), hi = lo
    if W - 2 - x0 >= 0:
        hi = max(lo, min(n, (W - 2 - x0) // 2 + 1))
    if add:
        for l in range(lo, hi):
            dst[x0 + 2 * l] += e[l]
            dst[x0 + 2 * l + 1] += o[l]
    else:
        for l in range(lo, hi):
            dst[x0 + 2 * l] = e[l]
            dst[x0 + 2 * l + 1] = o[l]
    for l in range(lo):
        _put(dst, x0 + 2 * l, W, e[l], add)
        _put(dst, x0 + 2 * l + 1, W, o[l], add)
    for l in range(hi, n):
        _put(dst, x0 + 2 * l, W, e[l], add)
        _put(dst, x0 + 2 * l + 1, W, o[l], add)


cdef void _transform_input_gradients(const Tiling* t, const floating* dV, floating* dx, floating* edge,
                                     Py_ssize_t r0, Py_ssize_t count, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """dx (N, C, H, W), channels [lo, hi), from dV (16, C, count*TW) on tile rows [r0, r0+count): B dv B^T of every
    tile, overlap-added.

    BLOCK tiles of a tile row at a time, column pair by column pair: _overlapped_tiles for a block's first pair and
    the row's right edge, _overlapped_pairs for the rest (one loop over the pairs from the block's second to the
    row's edge, so that its trip count fills whole vectors where a block's own 7 pairs would run scalar). On narrow
    maps (t.narrow; rows of at most BLOCK tiles, as any shipped NARROW_TILES gives) a block is as many whole tile
    rows as BLOCK holds: _overlapped_pairs runs across them, then _overlapped_tiles makes each row's first pair
    (its own tile only) and its edge (the left one only). The tile row's last two rows are the first
    to reach their rows of dx and are stored, its first two added to what the tile row above stored (stored too
    at the top of an image). edge (C, 2, W), unless NULL, takes the first tile row's first two rows instead: the
    band's caller adds them once the other threads are done (see 4.).
    """
    cdef Py_ssize_t q = count * t.TW, rows = max(1, BLOCK // t.TW), r, c, block, tx, nt, i, l
    cdef floating e[4 * (BLOCK + 1)]
    cdef floating o[4 * (BLOCK + 1)]
    cdef const floating* v
    cdef bint last
    for c in range(lo, hi):
        if t.narrow and t.TW <= BLOCK:
            for block in range((count + rows - 1) // rows):
                r = block * rows
                v = dV + c * q + r * t.TW
                nt = min(rows, count - r) * t.TW
                _overlapped_pairs(v, t.vs, nt - 1, e, o, BLOCK + 1)
                for i in range(nt // t.TW):  # row by row: its first pair (own tile only), its edge (left only)
                    l = i * t.TW
                    _overlapped_tiles(v + l, t.vs, False, True, e + l, o + l, BLOCK + 1)
                    _overlapped_tiles(v + l + t.TW, t.vs, True, False, e + l + t.TW, o + l + t.TW, BLOCK + 1)
                    _put_tile_row(t, e + l, o + l, t.TW + 1, c, r0, r + i, 0, dx, edge)
            continue
        for r in range(count):
            for block in range((t.TW + BLOCK - 1) // BLOCK):
                tx = block * BLOCK
                nt = min(BLOCK, t.TW - tx)
                last = tx + nt == t.TW
                v = dV + c * q + r * t.TW + tx
                _overlapped_tiles(v, t.vs, tx > 0, True, e, o, BLOCK + 1)
                _overlapped_pairs(v, t.vs, nt if last else nt - 1, e, o, BLOCK + 1)
                if last:  # tile nt is the row's last one's right neighbour: overwrite what _overlapped_pairs put there
                    _overlapped_tiles(v + nt, t.vs, True, False, e + nt, o + nt, BLOCK + 1)
                _put_tile_row(t, e, o, nt + last, c, r0, r, tx, dx, edge)


cdef inline void _put_tile_row(const Tiling* t, const floating* e, const floating* o, Py_ssize_t pairs, Py_ssize_t c,
                               Py_ssize_t r0, Py_ssize_t r, Py_ssize_t tx, floating* dx, floating* edge) noexcept nogil:
    """The 4 rows of column pairs e, o (rows BLOCK + 1 apart) of tile row r0 + r, channel c, from tile tx on, into dx
    (N, C, H, W): the last two stored, the first two added (stored at an image's top; into edge at the band's first
    tile row when edge is not NULL), as _transform_input_gradients says."""
    cdef Py_ssize_t n = (r0 + r) // t.TH, ty = (r0 + r) % t.TH, i, y
    cdef bint to_edge = edge != NULL and r == 0 and ty > 0
    cdef floating* dst
    for i in range(4):
        y = 2 * ty - t.ph + i
        if to_edge and i < 2:
            dst = edge + (c * 2 + i) * t.W
        elif 0 <= y < t.H:
            dst = dx + ((n * t.C + c) * t.H + y) * t.W
        else:
            continue
        _put_pairs(e + i * (BLOCK + 1), o + i * (BLOCK + 1), pairs, dst, 2 * tx - t.pw, t.W,
                   i < 2 and ty > 0 and not to_edge)


cdef inline Py_ssize_t _band_rows(const Tiling* t, Py_ssize_t band) noexcept nogil:
    """Tile rows of band `band` (the last one may be shorter)."""
    return min(t.rows, t.N * t.TH - band * t.rows)


cdef void _forward_band(const Tiling* t, const floating* x, const floating* U, const floating* b,
                        floating* out, floating* work, Py_ssize_t band, bint relu) noexcept nogil:
    """The tiles of one band of out: inputs transformed, 16 GEMMs M_k = U_k @ V_k, outputs transformed
    (and their ReLU taken when relu).
    """
    cdef Py_ssize_t count = _band_rows(t, band), q = count * t.TW, k
    cdef floating* V = work
    cdef floating* M = work + 16 * t.vs
    _transform_inputs(t, x, V, band * t.rows, count, False, 0, t.C)
    for k in range(16):
        gemm(False, False, <int>t.F, <int>q, <int>t.C, <floating>1, U + k * t.F * t.C, <int>t.C,
             V + k * t.vs, <int>q, <floating>0, M + k * t.ms, <int>q)
    _transform_outputs(t, M, b, out, band * t.rows, count, relu, 0, t.F)


cdef void _backward_band(const Tiling* t, const floating* x, const floating* dout, const floating* out,
                         const floating* U, floating* dU, floating* db, floating* dx, floating* edge, floating* work,
                         Py_ssize_t band) noexcept nogil:
    """One band's share of the gradients: dU (16, F, C) += dM_k @ V_k.T, db (F,) += dout over its tiles,
    dV_k = U_k.T @ dM_k (in V's place) transformed into dx (edge as in _transform_input_gradients)
    unless dx is NULL; out: as in _transform_gradients.
    """
    cdef Py_ssize_t count = _band_rows(t, band), q = count * t.TW, k
    cdef floating* V = work
    cdef floating* dM = work + 16 * t.vs
    _transform_inputs(t, x, V, band * t.rows, count, True, 0, t.C)
    _transform_gradients(t, dout, out, dM, db, band * t.rows, count, 0, t.F)
    for k in range(16):
        gemm(False, False, <int>t.F, <int>t.C, <int>q, <floating>1, dM + k * t.ms, <int>q,
             V + k * t.vs, <int>t.C, <floating>1, dU + k * t.F * t.C, <int>t.C)
        if dx != NULL:
            gemm(True, False, <int>t.C, <int>q, <int>t.F, <floating>1, U + k * t.F * t.C, <int>t.C,
                 dM + k * t.ms, <int>q, <floating>0, V + k * t.vs, <int>q)
    if dx != NULL:
        for k in range(16):  # the entry after the last tile, which _overlapped_pairs reads
            V[k * t.vs + t.C * q] = 0
        _transform_input_gradients(t, V, dx, edge, band * t.rows, count, 0, t.C)


cdef _forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating* b,
              floating[:, :, :, ::1] out, Py_ssize_t ph, Py_ssize_t pw, int n_threads, bint relu):
    """out = x convolved with w (F, C, 3, 3) (+ b unless NULL), its ReLU when relu."""
    cdef Tiling t = _tiling(tuple(x.shape)[:4], tuple(w.shape)[:4], ph, pw, sizeof(floating))
    expect_shape(tuple(out.shape)[:4], (t.N, t.F, t.OH, t.OW), "out")
    check_threads(n_threads)
    cdef Py_ssize_t filters = 16 * (n_threads * FILTER_SLICE if t.sliced else t.F) * t.C, size = _thread_size(&t)
    cdef Py_ssize_t band
    cdef floating[::1] work = workspace(np.asarray(out).dtype, filters + (1 if t.whole else n_threads) * size)
    if t.N == 0 or t.F == 0:
        return
    if not t.sliced:
        _transform_all_filters(&w[0, 0, 0, 0], &work[0], t.F, t.C, n_threads)
    if t.whole:
        _forward_whole(&t, &x[0, 0, 0, 0], &w[0, 0, 0, 0], &work[0], b, &out[0, 0, 0, 0], &work[0] + filters,
                       n_threads, relu)
        return
    for band in prange(t.bands, nogil=True, schedule="dynamic", num_threads=n_threads):
        _forward_band(&t, &x[0, 0, 0, 0], &work[0], b, &out[0, 0, 0, 0], &work[0] + filters + threadid() * size,
                      band, relu)


cdef inline Py_ssize_t _cut(Py_ssize_t n, Py_ssize_t part, Py_ssize_t parts, Py_ssize_t unit) noexcept nogil:
    """Where part `part` of `parts` starts when [0, n) is cut into parts of whole units (the last may be short)."""
    return min(n, (n + unit - 1) // unit * part // parts * unit)


cdef void _transform_all_filters(const floating* w, floating* U, Py_ssize_t F, Py_ssize_t C,
                                 int n_threads) noexcept nogil:
    """_transform_filters of every filter, the threads taking even shares of them."""
    cdef Py_ssize_t part
    for part in prange(n_threads, num_threads=n_threads):
        _transform_filters(w, U, F, C, _cut(F, part, n_threads, 1), _cut(F, part + 1, n_threads, 1))


cdef void _forward_whole(const Tiling* t, const floating* x, const floating* w, floating* U, const floating* b,
                         floating* out, floating* work, int n_threads, bint relu) noexcept nogil:
    """The forward of a batch that is one band (see 1.): the threads transform even shares of its channels, make
    the 16 GEMMs M_k = U_k @ V_k a k at a time, and transform even shares of its filters. When t.sliced, U holds a
    (16, S, C) slice per thread instead, and the threads take the filters FILTER_SLICE at a time, each slice
    transformed just before its 16 products M_k[slice] = U_k[slice] @ V_k.
    """
    cdef Py_ssize_t q = t.rows * t.TW, part, k, s, f0, fs, S = FILTER_SLICE
    cdef floating* V = work
    cdef floating* M = work + 16 * t.vs
    cdef floating* slice_U
    for part in prange(n_threads, num_threads=n_threads):
        _transform_inputs(t, x, V, 0, t.rows, False, _cut(t.C, part, n_threads, 1), _cut(t.C, part + 1, n_threads, 1))
    if t.sliced:
        for s in prange((t.F + S - 1) // S, schedule="dynamic", num_threads=n_threads):
            f0 = s * S
            fs = min(S, t.F - f0)
            slice_U = U + threadid() * 16 * S * t.C
            _transform_filters(w + f0 * t.C * 9, slice_U, fs, t.C, 0, fs)
            for k in range(16):
                gemm(False, False, <int>fs, <int>q, <int>t.C, <floating>1, slice_U + k * fs * t.C, <int>t.C,
                     V + k * t.vs, <int>q, <floating>0, M + k * t.ms + f0 * q, <int>q)
    else:
        for k in prange(16, schedule="static", num_threads=n_threads):
            gemm(False, False, <int>t.F, <int>q, <int>t.C, <floating>1, U + k * t.F * t.C, <int>t.C,
                 V + k * t.vs, <int>q, <floating>0, M + k * t.ms, <int>q)
    for part in prange(n_threads, num_threads=n_threads):
        _transform_outputs(t, M, b, out, 0, t.rows, relu, _cut(t.F, part, n_threads, 1),
                           _cut(t.F, part + 1, n_threads, 1))


cdef _backward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[:, :, :, ::1] dout,
               const floating* out, floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw, floating[::1] db,
               Py_ssize_t ph, Py_ssize_t pw, int n_threads):
    """dx (unless None), dw (F, C, 3, 3) and db (F,) from x (N, C, H, W) and dout (N, F, OH, OW), as in
    4. and 5.; out (N, F, OH, OW) or NULL: as in _transform_gradients.
    """
    cdef Tiling t = _tiling(tuple(x.shape)[:4], tuple(w.shape)[:4], ph, pw, sizeof(floating))
    expect_shape(tuple(dout.shape)[:4], (t.N, t.F, t.OH, t.OW), "dout")
    if dx is not None:
        expect_shape(tuple(dx.shape)[:4], (t.N, t.C, t.H, t.W), "dx")
    cdef floating* dxp = &dx[0, 0, 0, 0] if dx is not None and dx.size else NULL
    expect_shape(tuple(dw.shape)[:4], (t.F, t.C, 3, 3), "dw")
    expect_shape(tuple(db.shape)[:1], (t.F,), "db")
    check_threads(n_threads)
    cdef Py_ssize_t groups = min(t.bands, GRADIENT_GROUPS), size = _thread_size(&t), filters = 16 * t.F * t.C
    cdef Py_ssize_t sums = filters + t.F, edges = 2 * t.C * t.W, group, first, band, i
    cdef Py_ssize_t slices = n_threads * 16 * FILTER_SLICE * t.C if t.sliced else 0
    cdef floating[::1] work = workspace(np.asarray(dw).dtype, filters + size + max(filters, slices) if t.whole else
                                        filters + n_threads * size + max(1, groups) * (sums + edges))
    if dxp != NULL:  # U serves the data gradient only
        _transform_all_filters(&w[0, 0, 0, 0], &work[0], t.F, t.C, n_threads)
    if t.whole:
        memset(&db[0], 0, t.F * sizeof(floating))
        _backward_whole(&t, &x[0, 0, 0, 0], &dout[0, 0, 0, 0], out, &work[0], &work[0] + filters + size,
                        &dw[0, 0, 0, 0], &db[0], dxp, &work[0] + filters, n_threads)
        return
    cdef floating* group_sums = &work[0] + filters + n_threads * size
    cdef floating* group_edges = group_sums + max(1, groups) * sums
    memset(group_sums, 0, sums * sizeof(floating))  # the sums when there are no bands
    if t.F == 0 and dxp != NULL:
        memset(dxp, 0, t.N * t.C * t.H * t.W * sizeof(floating))
    for group in prange(groups, nogil=True, schedule="dynamic", num_threads=n_threads):
        memset(group_sums + group * sums, 0, sums * sizeof(floating))
        first = group * t.bands // groups
        for band in range(first, (group + 1) * t.bands // groups):
            _backward_band(&t, &x[0, 0, 0, 0], &dout[0, 0, 0, 0], out, &work[0], group_sums + group * sums,
                           group_sums + group * sums + filters, dxp,
                           group_edges + group * edges if band == first else NULL,
                           &work[0] + filters + threadid() * size, band)
    for group in range(1, groups):  # small passes: not worth waking the threads again
        if dxp != NULL:
            _add_edge(&t, group_edges + group * edges, dxp, group * t.bands // groups * t.rows)
        for i in range(sums):
            group_sums[i] += group_sums[group * sums + i]
    _filter_gradients(group_sums, &dw[0, 0, 0, 0], t.F, t.C, 0, t.F)
    memcpy(&db[0], group_sums + filters, t.F * sizeof(floating))


cdef void _backward_whole(const Tiling* t, const floating* x, const floating* dout, const floating* out,
                          const floating* U, floating* dU, floating* dw, floating* db, floating* dx, floating* work,
                          int n_threads) noexcept nogil:
    """The gradients of a batch that is one band (see 1.), db zeroed: the threads transform even shares of x's
    channels and dout's filters, make dU_k = dM_k @ V_k.T and dV_k = U_k.T @ dM_k a k at a time, and transform
    even shares of dU's filters and dV's channels; when t.sliced, dU FILTER_SLICE filters at a time instead (one
    (16, S, C) slice per thread in dU's place), each slice transformed into dw while in cache, before dV is made
    in V's place. Each result has one writer, whatever the thread count.
    """
    cdef Py_ssize_t q = t.rows * t.TW, part, k, s, f0, fs, S = FILTER_SLICE
    cdef floating* V = work
    cdef floating* dM = work + 16 * t.vs
    cdef floating* slice_sums
    for part in prange(n_threads, num_threads=n_threads):
        _transform_inputs(t, x, V, 0, t.rows, True, _cut(t.C, part, n_threads, CHANNELS),
                          _cut(t.C, part + 1, n_threads, CHANNELS))
        _transform_gradients(t, dout, out, dM, db, 0, t.rows, _cut(t.F, part, n_threads, 1),
                             _cut(t.F, part + 1, n_threads, 1))
    if t.sliced:
        for s in prange((t.F + S - 1) // S, schedule="dynamic", num_threads=n_threads):
            f0 = s * S
            fs = min(S, t.F - f0)
            slice_sums = dU + threadid() * 16 * S * t.C
            for k in range(16):
                gemm(False, False, <int>fs, <int>t.C, <int>q, <floating>1, dM + k * t.ms + f0 * q, <int>q,
                     V + k * t.vs, <int>t.C, <floating>0, slice_sums + k * fs * t.C, <int>t.C)
            _filter_gradients(slice_sums, dw + f0 * t.C * 9, fs, t.C, 0, fs)
    for k in prange(16, schedule="static", num_threads=n_threads):
        if not t.sliced:
            gemm(False, False, <int>t.F, <int>t.C, <int>q, <floating>1, dM + k * t.ms, <int>q,
                 V + k * t.vs, <int>t.C, <floating>0, dU + k * t.F * t.C, <int>t.C)
        if dx != NULL:
            gemm(True, False, <int>t.C, <int>q, <int>t.F, <floating>1, U + k * t.F * t.C, <int>t.C,
                 dM + k * t.ms, <int>q, <floating>0, V + k * t.vs, <int>q)
            V[k * t.vs + t.C * q] = 0  # the entry after the last tile, which _overlapped_pairs reads
    for part in prange(n_threads, num_threads=n_threads):
        if not t.sliced:
            _filter_gradients(dU, dw, t.F, t.C, _cut(t.F, part, n_threads, 1), _cut(t.F, part + 1, n_threads, 1))
        if dx != NULL:
            _transform_input_gradients(t, V, dx, NULL, 0, t.rows, _cut(t.C, part, n_threads, 1),
                                       _cut(t.C, part + 1, n_threads, 1))


cdef void _add_edge(const Tiling* t, const floating* edge, floating* dx, Py_ssize_t r0) noexcept nogil:
    """dx += edge (C, 2, W), the first two rows of tile row r0 that a band kept apart (see 4.)."""
    cdef Py_ssize_t n = r0 // t.TH, ty = r0 % t.TH, c, i, x, y
    cdef floating* dst
    if ty == 0:
        return
    for c in range(t.C):
        for i in range(2):
            y = 2 * ty - t.ph + i
            if 0 <= y < t.H:
                dst = dx + ((n * t.C + c) * t.H + y) * t.W
                for x in range(t.W):
                    dst[x] += edge[(c * 2 + i) * t.W + x]


def winograd_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                     floating[:, :, :, ::1] out, int ph, int pw, int n_threads, bint relu=False):
    """out (N, F, OH, OW) = x (N, C, H, W) convolved with w (F, C, 3, 3) + b (F,); stride 1, padding (ph, pw).

    relu: out is the ReLU of that (conv2d_relu's forward).
    """
    expect_shape(tuple(b.shape)[:1], (w.shape[0],), "b")
    _forward(x, w, &b[0] if b.shape[0] else NULL, out, ph, pw, n_threads, relu)


def winograd_backward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                      const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw,
                      floating[::1] db, int ph, int pw, int n_threads, const floating[:, :, :, ::1] out=None):
    """Overwrite dx (N, C, H, W) (unless None: not computed), dw (F, C, 3, 3) and db (F,) with the gradients
    of winograd_forward.

    x, w and (ph, pw) are the forward's, dout (N, F, OH, OW) the output gradient. out: the
    output of a forward with relu (conv2d_relu's backward), None without.
    """
    if out is not None:
        expect_shape(tuple(out.shape)[:4], tuple(dout.shape)[:4], "out")
    _backward(x, w, dout, &out[0, 0, 0, 0] if out is not None and out.size else NULL, dx, dw, db, ph, pw, n_threads)
