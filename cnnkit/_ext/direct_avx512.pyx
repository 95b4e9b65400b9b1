# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct convolution, built for x86-64-v4 (AVX-512; setup.py): the forward of cnnkit.fast.conv for few
taps or filters. Import it only where cnnkit._ext.cpu.has_avx512() (cnnkit.fast.conv does).

Notation as conv.pyx: x (N, C, H, W), w (F, C, KH, KW), b (F,), out (N, F, OH, OW) at stride
(SH, SW), padding (PH, PW); K = C*KH*KW taps. With few taps im2col copies nearly as many entries
as the GEMM multiplies, and the GEMM stores each output after only K multiply-adds; here a
register-blocked kernel reads the (padded) input in place:

1. A work item is R consecutive output rows of one image (a band). Its input rows are first
   copied, zero-padded, into the thread's buffer by phases: input row SH*y + i and column
   SW*x + j (of the padded input) go to phase (i % SH, j % SW) of their channel, at row y + i // SH
   and column x + j // SW of it, so that at any stride tap (c, i, j) reads the outputs' inputs
   at one offset from them: (((c*SH + i % SH)*SW + j % SW)*Hq + i // SH)*Wq + j // SW, each phase
   Hq = R + (KH - 1) // SH rows of Wq = ceil((W + 2*PW) / SW) entries (at stride 1 the padded rows
   themselves), and LANES zeros after the last. Bands are sized to stay in L2 (BAND_ENTRIES);
   threads take items dynamically; a batch of fewer items than threads is cut into thinner bands.
2. The kernel (C, below) makes output rows of BLOCK filters, a vector of LANES outputs at a
   time: BLOCK vector sums in registers, set to the biases, then for each tap the vector of
   inputs at the tap's offset from the vector's times each filter's weight (weights laid out tap
   by tap, BLOCK filters a tap, zero past F), then stored, or their ReLU, into the output planes
   with masks. The vectors run along p = y*Wq + x: over a whole band's rows at once, a vector's
   lanes beyond x = OW - 1 (the padding's) dropped, where that takes fewer vectors than row by
   row (narrow maps: rows of 8, 10 apart, fill 0.8 of the lanes, not half), else row by row.
   Each output is b + the products in (c, i, j) order, multiply-adds fused: the same bits at
   any thread count. lane_use gives the share of lanes kept, for cnnkit.fast.conv's choice.
3. Pooling fused (pool=True; the inference plan's convolution, ReLU or not, then 2x2 max pooling
   at stride 2, as conv.pyx's 11.): the kernel makes a block's output rows of the band into the
   thread's buffer, whose 2x2 windows are pooled into out (N, F, OH // 2, OW // 2) while in cache,
   their ReLU taken in the same pass (cnnkit/_ext/_max2x2.pxd); bands have an even number of rows.
4. Filters in the lanes (the other kernel, below; float32 where filters_in_lanes): two vectors of filters, for
   CNNKIT_PIXELS outputs of a band at a time (consecutive ones of its rows, the padding's columns skipped): set to
   the biases, then for each tap each output's input at the tap's offset, broadcast, times the tap's two vectors
   of weights (weights laid out tap by tap, 2 * LANES filters a tap, zero past F); then transposed in registers
   and stored filter by filter, CNNKIT_PIXELS outputs a masked store. Every lane makes an output whatever the
   map's width, where 2. leaves the padding's lanes idle (rows of 14: 0.88 of them), at the cost of the
   transposition: from 64 taps and F that fills its blocks (32, 64, ...), 0.91-0.95 times 2.'s time on narrow
   maps (16 -> 32 channels on 14x14, 32 -> 64 on 8x8, 3x3/2 to 8x8; 1 and 2 threads); 1.05 on rows of 32, 1.5
   with 16 filters. At strides above 1 it needs a margin of FILTER_LANES_STRIDED_MARGIN (3x3/2 on 28 and 56 wide
   maps, F filling the blocks, 0.88 of the lanes filled by 2.: 1.0 times im2col's forward against 2.'s 0.9; on
   8 and 16 wide ones, 0.8 filled: 0.8-0.9 against 0.9-1.0). The same sums in the same order as 2.: the same
   bits. (float64 stores entry by entry and does not gain: not chosen.)
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

import numpy as np

from cnnkit._ext._drivers import check_threads, expect_shape, workspace
from cnnkit._ext._im2col cimport output_hw
from cnnkit._ext._max2x2 cimport max_plane_2x2

cdef extern from *:
    """
    #include <immintrin.h>
    #define CNNKIT_BLOCK 8  /* filters of a block */
    #define CNNKIT_VECTOR 64  /* bytes of a vector: 16 floats, 8 doubles */
    #define CNNKIT_STORE_FLOATS(dst, mask, v) _mm512_mask_storeu_ps(dst, (__mmask16)(mask), (__m512)(v))
    #define CNNKIT_STORE_DOUBLES(dst, mask, v) _mm512_mask_storeu_pd(dst, (__mmask8)(mask), (__m512d)(v))
    /* s, or its ReLU: 0 where s < 0 (a NaN kept) */
    #define CNNKIT_KEPT(V, M, s, relu) ((relu) ? (V)((M)(s) & ~((s) < (V){0})) : (s))
    /* Rows y < rows of out (rows of width outputs, planes `plane` apart) for filters f < filters (<= CNNKIT_BLOCK):
       out[f * plane + y * width + x] = bias[f] + the sum over t < taps of weights[t * CNNKIT_BLOCK + f] *
       src[y * pitch + x + offsets[t]], or its ReLU; vectors of lanes at p = y * pitch + x, p = 0, lanes, ...,
       their lanes of x < width stored (masked), the others dropped. */
    #define CNNKIT_DIRECT_ROWS(NAME, T, I, STORE)                                                           \\
    typedef T NAME##_vector __attribute__((vector_size(CNNKIT_VECTOR), aligned(sizeof(T)), may_alias));      \\
    typedef I NAME##_mask __attribute__((vector_size(CNNKIT_VECTOR)));                                      \\
    static void NAME(const T* src, const Py_ssize_t* offsets, Py_ssize_t taps, const T* weights,            \\
                     const T* bias, T* out, Py_ssize_t plane, Py_ssize_t pitch, Py_ssize_t width,          \\
                     Py_ssize_t rows, int filters, int relu) {                                              \\
        typedef NAME##_vector V;                                                                            \\
        typedef NAME##_mask M;                                                                              \\
        const Py_ssize_t lanes = CNNKIT_VECTOR / sizeof(T), end = (rows - 1) * pitch + width;               \\
        for (Py_ssize_t p = 0; p < end; p += lanes) {                                                       \\
            V s0 = (V){0} + bias[0], s1 = (V){0} + bias[1], s2 = (V){0} + bias[2], s3 = (V){0} + bias[3],  \\
              s4 = (V){0} + bias[4], s5 = (V){0} + bias[5], s6 = (V){0} + bias[6], s7 = (V){0} + bias[7];  \\
            const T* w = weights;                                                                           \\
            for (Py_ssize_t t = 0; t < taps; t++, w += CNNKIT_BLOCK) {                                      \\
                V v = *(const V*)(src + p + offsets[t]);                                                    \\
                s0 += w[0] * v; s1 += w[1] * v; s2 += w[2] * v; s3 += w[3] * v;                             \\
                s4 += w[4] * v; s5 += w[5] * v; s6 += w[6] * v; s7 += w[7] * v;                             \\
            }                                                                                               \\
            s0 = CNNKIT_KEPT(V, M, s0, relu); s1 = CNNKIT_KEPT(V, M, s1, relu);                             \\
            s2 = CNNKIT_KEPT(V, M, s2, relu); s3 = CNNKIT_KEPT(V, M, s3, relu);                             \\
            s4 = CNNKIT_KEPT(V, M, s4, relu); s5 = CNNKIT_KEPT(V, M, s5, relu);                             \\
            s6 = CNNKIT_KEPT(V, M, s6, relu); s7 = CNNKIT_KEPT(V, M, s7, relu);                             \\
            for (Py_ssize_t y = p / pitch; y < rows && y * pitch < p + lanes; y++) {                        \\
                Py_ssize_t first = y * pitch - p, last = first + width;  /* the lanes of row y: [first, last) */ \\
                first = first < 0 ? 0 : first;                                                              \\
                last = last > lanes ? lanes : last;                                                         \\
                if (first >= last)                                                                          \\
                    continue;                                                                               \\
                unsigned mask = (1u << last) - (1u << first);                                               \\
                T* o = out + y * (width - pitch) + p;  /* lane k: out[y * width + x] at x = p + k - y * pitch */ \\
                switch (filters) {                                                                          \\
                default: STORE(o + 7 * plane, mask, s7); /* fall through */                                 \\
                case 7: STORE(o + 6 * plane, mask, s6); /* fall through */                                  \\
                case 6: STORE(o + 5 * plane, mask, s5); /* fall through */                                  \\
                case 5: STORE(o + 4 * plane, mask, s4); /* fall through */                                  \\
                case 4: STORE(o + 3 * plane, mask, s3); /* fall through */                                  \\
                case 3: STORE(o + 2 * plane, mask, s2); /* fall through */                                  \\
                case 2: STORE(o + plane, mask, s1); /* fall through */                                      \\
                case 1: STORE(o, mask, s0);                                                                 \\
                }                                                                                           \\
            }                                                                                               \\
        }                                                                                                   \\
    }
    CNNKIT_DIRECT_ROWS(cnnkit_direct_floats, float, int, CNNKIT_STORE_FLOATS)
    CNNKIT_DIRECT_ROWS(cnnkit_direct_doubles, double, long long, CNNKIT_STORE_DOUBLES)
    #define CNNKIT_PIXELS 12  /* outputs a pass of the filter-lanes kernel takes */
    /* The same rows as CNNKIT_DIRECT_ROWS for filters f < filters (<= 2 * lanes), the filters in the lanes:
       CNNKIT_PIXELS outputs (y, x), x < width, at a time, two vectors of lanes filters each, set to the biases, then
       for each tap the input at the tap's offset from each output, broadcast, times the tap's two vectors of
       weights (weights[t * 2 * lanes + f]); stored filter by filter. The padding's columns take no lanes. */
    #define CNNKIT_FILTER_LANES(NAME, T, SET1, STORE)                                                       \\
    typedef T NAME##_vector __attribute__((vector_size(CNNKIT_VECTOR), aligned(sizeof(T)), may_alias));      \\
    static void NAME(const T* src, const Py_ssize_t* offsets, Py_ssize_t taps, const T* weights,            \\
                     const T* bias, T* out, Py_ssize_t plane, Py_ssize_t pitch, Py_ssize_t width,          \\
                     Py_ssize_t rows, int filters, int relu) {                                              \\
        typedef NAME##_vector V;                                                                            \\
        enum { L = CNNKIT_VECTOR / sizeof(T), P = CNNKIT_PIXELS };                                          \\
        const Py_ssize_t count = rows * width;                                                              \\
        const V b0 = *(const V*)bias, b1 = *(const V*)(bias + L);                                           \\
        for (Py_ssize_t k0 = 0; k0 < count; k0 += P) {                                                      \\
            const T* s[P];                                                                                  \\
            V a0[P], a1[P];                                                                                 \\
            for (int j = 0; j < P; j++) {  /* past the last output: the last one again, not stored */       \\
                Py_ssize_t k = k0 + j < count ? k0 + j : count - 1, y = k / width;                          \\
                s[j] = src + y * pitch + (k - y * width);                                                   \\
                a0[j] = b0;                                                                                 \\
                a1[j] = b1;                                                                                 \\
            }                                                                                               \\
            const T* w = weights;                                                                           \\
            for (Py_ssize_t t = 0; t < taps; t++, w += 2 * L) {                                             \\
                const V w0 = *(const V*)w, w1 = *(const V*)(w + L);                                         \\
                const Py_ssize_t offset = offsets[t];                                                       \\
                for (int j = 0; j < P; j++) {                                                               \\
                    const V v = (V)SET1(s[j][offset]);  /* not (V){0} + x: a separate add (x may be -0.0) */ \\
                    a0[j] += v * w0;                                                                        \\
                    a1[j] += v * w1;                                                                        \\
                }                                                                                           \\
            }                                                                                               \\
            const int n = count - k0 < P ? (int)(count - k0) : P;                                           \\
            STORE(a0, out + k0, plane, n, filters < L ? filters : L, relu);                                 \\
            if (filters > L)                                                                                \\
                STORE(a1, out + L * plane + k0, plane, n, filters - L, relu);                               \\
        }                                                                                                   \\
    }
    /* out[f * plane + j] = a[j][f] (its ReLU with relu: 0 where < 0, a NaN kept) for j < n, f < filters: the
       CNNKIT_PIXELS vectors of 16 filters transposed in registers (16 x 16, the rows past CNNKIT_PIXELS zeros),
       then a masked store of the n outputs per filter */
    static inline void cnnkit_store_filter_lanes_floats(const void* vectors, float* out, Py_ssize_t plane, int n,
                                                        int filters, int relu) {
        const __m512* a = (const __m512*)vectors;
        __m512 r[16], t[16], u[16], v[16];
        for (int j = 0; j < 16; j++)
            r[j] = j < CNNKIT_PIXELS ? a[j] : _mm512_setzero_ps();
        for (int j = 0; j < 16; j += 2) {
            t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
            t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
        }
        for (int j = 0; j < 16; j += 4) {
            u[j] = _mm512_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(1, 0, 1, 0));
            u[j + 1] = _mm512_shuffle_ps(t[j], t[j + 2], _MM_SHUFFLE(3, 2, 3, 2));
            u[j + 2] = _mm512_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(1, 0, 1, 0));
            u[j + 3] = _mm512_shuffle_ps(t[j + 1], t[j + 3], _MM_SHUFFLE(3, 2, 3, 2));
        }
        for (int j = 0; j < 16; j += 8)
            for (int i = 0; i < 4; i++) {
                v[j + i] = _mm512_shuffle_f32x4(u[j + i], u[j + 4 + i], 0x88);
                v[j + 4 + i] = _mm512_shuffle_f32x4(u[j + i], u[j + 4 + i], 0xdd);
            }
        for (int i = 0; i < 8; i++) {
            r[i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0x88);
            r[8 + i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0xdd);
        }
        const __mmask16 mask = (__mmask16)((1u << n) - 1);
        for (int f = 0; f < filters; f++) {
            __m512 value = r[f];
            if (relu)  /* 0 where value < 0: a NaN is not < 0 and stays */
                value = _mm512_mask_mov_ps(value, _mm512_cmp_ps_mask(value, _mm512_setzero_ps(), _CMP_LT_OQ),
                                           _mm512_setzero_ps());
            _mm512_mask_storeu_ps(out + f * plane, mask, value);
        }
    }
    /* the same for doubles, entry by entry */
    static inline void cnnkit_store_filter_lanes_doubles(const void* vectors, double* out, Py_ssize_t plane, int n,
                                                         int filters, int relu) {
        const double* a = (const double*)vectors;  /* CNNKIT_PIXELS vectors of lanes doubles */
        const int lanes = CNNKIT_VECTOR / sizeof(double);
        for (int j = 0; j < n; j++)
            for (int f = 0; f < filters; f++) {
                double value = a[j * lanes + f];
                out[f * plane + j] = relu && value < 0 ? 0 : value;
            }
    }
    CNNKIT_FILTER_LANES(cnnkit_filter_lanes_floats, float, _mm512_set1_ps, cnnkit_store_filter_lanes_floats)
    CNNKIT_FILTER_LANES(cnnkit_filter_lanes_doubles, double, _mm512_set1_pd, cnnkit_store_filter_lanes_doubles)
    """
    enum: BLOCK "CNNKIT_BLOCK"
    void _filter_lanes_floats "cnnkit_filter_lanes_floats"(
        const float* src, const Py_ssize_t* offsets, Py_ssize_t taps, const float* weights, const float* bias,
        float* out, Py_ssize_t plane, Py_ssize_t pitch, Py_ssize_t width, Py_ssize_t rows, int filters,
        int relu) noexcept nogil
    void _filter_lanes_doubles "cnnkit_filter_lanes_doubles"(
        const double* src, const Py_ssize_t* offsets, Py_ssize_t taps, const double* weights, const double* bias,
        double* out, Py_ssize_t plane, Py_ssize_t pitch, Py_ssize_t width, Py_ssize_t rows, int filters,
        int relu) noexcept nogil
    enum: VECTOR_BYTES "CNNKIT_VECTOR"
    void _rows_floats "cnnkit_direct_floats"(const float* src, const Py_ssize_t* offsets, Py_ssize_t taps,
                                             const float* weights, const float* bias, float* out, Py_ssize_t plane,
                                             Py_ssize_t pitch, Py_ssize_t width, Py_ssize_t rows, int filters,
                                             int relu) noexcept nogil
    void _rows_doubles "cnnkit_direct_doubles"(const double* src, const Py_ssize_t* offsets, Py_ssize_t taps,
                                               const double* weights, const double* bias, double* out,
                                               Py_ssize_t plane, Py_ssize_t pitch, Py_ssize_t width, Py_ssize_t rows,
                                               int filters, int relu) noexcept nogil

FILTER_LANES_MIN_TAPS = 64  # taps from which filters in the lanes can pay for their transposed stores (see 4.)
FILTER_LANES_MARGIN = 0.05  # share of the lanes by which they must fill more than outputs in the lanes do
FILTER_LANES_STRIDED_MARGIN = 0.15  # the same at strides above 1


cdef enum:
    BAND_ENTRIES = 32768  # a band's input at most, 128 KB of float32: in L2 (as fast as L1 here), more rows a vector
    LANES = VECTOR_BYTES // 4  # a vector's floats: the most entries a vector reads past a band's input


cdef struct Direct:
    Py_ssize_t N, C, H, W, F, OH, OW, Hq, Wq, rows, bands, taps, band_rows
    int kh, kw, sh, sw, ph, pw, block  # block: filters a kernel call makes (BLOCK, or two vectors' with filter_lanes)
    bint relu, pool, filter_lanes


cdef Direct _direct(tuple x_shape, tuple w_shape, int sh, int sw, int ph, int pw, bint relu, bint pool,
                    int n_threads, bint filter_lanes=False, Py_ssize_t itemsize=4) except *:
    """The geometry of the convolution, its bands cut for n_threads (see 1. and 2.)."""
    cdef Direct g
    cdef Py_ssize_t per_image, phases = sh * sw
    g.OH, g.OW = output_hw(x_shape, w_shape[2], w_shape[3], sh, sw, ph, pw)
    g.N, g.C, g.H, g.W, g.F = x_shape[0], x_shape[1], x_shape[2], x_shape[3], w_shape[0]
    g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.relu, g.pool = w_shape[2], w_shape[3], sh, sw, ph, pw, relu, pool
    g.filter_lanes, g.block = filter_lanes, 2 * VECTOR_BYTES // itemsize if filter_lanes else BLOCK
    g.Wq, g.taps = (g.W + 2 * pw + sw - 1) // sw, g.C * g.kh * g.kw
    g.rows = max(1, min(g.OH, BAND_ENTRIES // max(1, g.C * phases * g.Wq) - (g.kh - 1) // sh))
    if 0 < g.N * ((g.OH + g.rows - 1) // g.rows) < n_threads:
        per_image = (n_threads + g.N - 1) // g.N
        g.rows = (g.OH + per_image - 1) // per_image
    if pool and g.rows < g.OH:
        g.rows = min(g.OH, g.rows + g.rows % 2)
    g.bands, g.Hq = (g.OH + g.rows - 1) // g.rows, g.rows + (g.kh - 1) // sh
    g.band_rows = g.rows if filter_lanes or _vectors(g.rows, g.Wq, g.OW) < g.rows * _vectors(1, g.Wq, g.OW) else 1
    return g


cdef inline Py_ssize_t _vectors(Py_ssize_t rows, Py_ssize_t pitch, Py_ssize_t width) noexcept nogil:
    """The vectors the kernel takes for rows rows of width outputs, pitch apart in its input (see 2.)."""
    return ((rows - 1) * pitch + width + LANES - 1) // LANES


def lane_use(tuple x_shape, tuple w_shape, stride, padding):
    """The share of the kernel's vector lanes that make outputs of a convolution of x (N, C, H, W) with
    w (F, C, KH, KW) at stride (SH, SW), padded by (PH, PW) (see 2.; vectors of float32), 0 where it has no output."""
    cdef Direct g = _direct(x_shape, w_shape, stride[0], stride[1], padding[0], padding[1], False, False, 1)
    return _lane_share(&g)


cdef double _lane_share(const Direct* g) noexcept nogil:
    """lane_use of the outputs-in-lanes geometry g."""
    cdef Py_ssize_t vectors = (g.rows // g.band_rows) * _vectors(g.band_rows, g.Wq, g.OW)
    return g.rows * g.OW / <double>(LANES * vectors) if vectors > 0 else 0.0


def filters_in_lanes(tuple x_shape, tuple w_shape, stride, padding, dtype):
    """Whether direct_forward puts the filters in the vector lanes (see 4.) for this convolution of dtype: float32
    only, with FILTER_LANES_MIN_TAPS taps or more, where F fills a larger share of the two-vector blocks of filters,
    by FILTER_LANES_MARGIN (FILTER_LANES_STRIDED_MARGIN at strides above 1), than the outputs fill of the lanes
    (lane_use)."""
    return _filters_in_lanes(x_shape, w_shape, stride[0], stride[1], padding[0], padding[1], np.dtype(dtype).itemsize)


cdef bint _filters_in_lanes(tuple x_shape, tuple w_shape, int sh, int sw, int ph, int pw,
                            Py_ssize_t itemsize) except -1:
    cdef Direct g = _direct(x_shape, w_shape, sh, sw, ph, pw, False, False, 1)
    cdef Py_ssize_t block = 2 * LANES
    cdef double margin = FILTER_LANES_MARGIN if sh == sw == 1 else FILTER_LANES_STRIDED_MARGIN
    if itemsize != 4 or g.taps < FILTER_LANES_MIN_TAPS or g.F == 0:
        return False
    return g.F / <double>(block * ((g.F + block - 1) // block)) >= _lane_share(&g) + margin


cdef inline Py_ssize_t _lines(Py_ssize_t entries) noexcept nogil:
    """entries rounded up to whole vectors (LANES: a cache line of float32)."""
    return (entries + LANES - 1) // LANES * LANES


cdef inline Py_ssize_t _band_size(const Direct* g) noexcept nogil:
    """The entries of a band's padded input, by phases, and the LANES zeros after it (see 1.)."""
    return g.C * g.sh * g.sw * g.Hq * g.Wq + LANES


cdef void _block_weights(const Direct* g, const floating* w, const floating* b, floating* blocked,
                         floating* bias, Py_ssize_t* offsets) noexcept nogil:
    """blocked (blocks, taps, g.block) = w (F, taps) by blocks of g.block filters, bias (blocks*g.block) = b,
    both zero past F; offsets (taps) = where tap (c, i, j) reads in a band's padded input, from an output's (see 1.)."""
    cdef Py_ssize_t f, t, c, i, j, blocks = (g.F + g.block - 1) // g.block
    memset(blocked, 0, blocks * g.taps * g.block * sizeof(floating))
    memset(bias, 0, blocks * g.block * sizeof(floating))
    for f in range(g.F):
        bias[f] = b[f]
        for t in range(g.taps):
            blocked[((f // g.block) * g.taps + t) * g.block + f % g.block] = w[f * g.taps + t]
    for c in range(g.C):
        for i in range(g.kh):
            for j in range(g.kw):
                offsets[(c * g.kh + i) * g.kw + j] = ((((c * g.sh + i % g.sh) * g.sw + j % g.sw) * g.Hq + i // g.sh)
                                                      * g.Wq + j // g.sw)


cdef inline void _gather(const floating* src, floating* dst, Py_ssize_t count, Py_ssize_t step) noexcept nogil:
    """dst[k] = src[k * step] for k < count (a loop of its own at step 2, which GCC vectorises)."""
    cdef Py_ssize_t k
    if step == 2:
        for k in range(count):
            dst[k] = src[2 * k]
    else:
        for k in range(count):
            dst[k] = src[k * step]


cdef void _pad_band(const Direct* g, const floating* image, floating* padded, Py_ssize_t y0) noexcept nogil:
    """The input rows of output rows [y0, y0 + R) of image (C, H, W), zero-padded, by phases (see 1.)."""
    cdef Py_ssize_t c, r, y, q, first, phase_entries = g.Hq * g.Wq
    cdef const floating* row
    cdef floating* dst
    memset(padded, 0, _band_size(g) * sizeof(floating))
    for c in range(g.C):
        for r in range((g.rows - 1) * g.sh + g.kh):
            y = y0 * g.sh - g.ph + r
            if not 0 <= y < g.H:
                continue
            row, dst = image + (c * g.H + y) * g.W, padded + (c * g.sh + r % g.sh) * g.sw * phase_entries
            dst += (r // g.sh) * g.Wq
            if g.sw == 1:
                memcpy(dst + g.pw, row, g.W * sizeof(floating))
                continue
            for q in range(g.sw):  # column phase q: padded columns q, q + SW, ..., input columns first, first + SW, ...
                first = (q - g.pw % g.sw + g.sw) % g.sw
                _gather(row + first, dst + q * phase_entries + (first + g.pw) // g.sw, (g.W - first + g.sw - 1) // g.sw,
                        g.sw)


cdef inline void _rows(const Direct* g, const floating* padded, const floating* blocked, const floating* bias,
                       const Py_ssize_t* offsets, floating* out, Py_ssize_t plane, Py_ssize_t rows, int filters,
                       bint relu) noexcept nogil:
    """Output rows [0, rows) of a block of filters from their band's padded input into out, planes `plane`
    apart: the kernel of this dtype (see 2.)."""
    if floating is float and g.filter_lanes:
        _filter_lanes_floats(padded, offsets, g.taps, blocked, bias, out, plane, g.Wq, g.OW, rows, filters, relu)
    elif floating is float:
        _rows_floats(padded, offsets, g.taps, blocked, bias, out, plane, g.Wq, g.OW, rows, filters, relu)
    elif g.filter_lanes:
        _filter_lanes_doubles(padded, offsets, g.taps, blocked, bias, out, plane, g.Wq, g.OW, rows, filters, relu)
    else:
        _rows_doubles(padded, offsets, g.taps, blocked, bias, out, plane, g.Wq, g.OW, rows, filters, relu)


cdef void _forward_item(const Direct* g, const floating* x, const floating* blocked, const floating* bias,
                        const Py_ssize_t* offsets, floating* out, floating* buffer, Py_ssize_t n,
                        Py_ssize_t y0) noexcept nogil:
    """Output rows [y0, y0 + R) of image n, g.block filters at a time, or their pooling (see 1.-4.)."""
    cdef Py_ssize_t rows = min(g.rows, g.OH - y0), width = g.OW // 2, block, part, y, f, taken
    cdef Py_ssize_t plane = (g.OH // 2) * width if g.pool else g.OH * g.OW
    cdef int filters
    cdef const floating* blocked_weights
    cdef const floating* blocked_bias
    cdef floating* dst
    cdef floating* rows_made = buffer + _band_size(g)
    _pad_band(g, x + n * g.C * g.H * g.W, buffer, y0)
    for block in range((g.F + g.block - 1) // g.block):
        filters = <int>min(<Py_ssize_t>g.block, g.F - block * g.block)
        blocked_weights, blocked_bias = blocked + block * g.taps * g.block, bias + block * g.block
        dst = out + (n * g.F + block * g.block) * plane
        for part in range((rows + g.band_rows - 1) // g.band_rows):
            y = part * g.band_rows
            taken = min(g.band_rows, rows - y)
            if g.pool:
                _rows(g, buffer + y * g.Wq, blocked_weights, blocked_bias, offsets, rows_made + y * g.OW,
                      rows * g.OW, taken, filters, False)
            else:
                _rows(g, buffer + y * g.Wq, blocked_weights, blocked_bias, offsets, dst + (y0 + y) * g.OW, plane,
                      taken, filters, g.relu)
        if g.pool:
            for f in range(filters):
                max_plane_2x2(rows_made + f * rows * g.OW, dst + f * plane + y0 // 2 * width, g.OW, rows // 2,
                              width, g.relu)


def direct_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                   floating[:, :, :, ::1] out, int sh, int sw, int ph, int pw, int n_threads, bint relu=False,
                   bint pool=False, filter_lanes=None):
    """out (N, F, OH, OW) = the convolution of x (N, C, H, W) with w (F, C, KH, KW) and b (F,) at stride
    (sh, sw), padded by (ph, pw), or its ReLU with relu. pool: out (N, F, OH // 2, OW // 2), the maxima of
    that's 2x2 windows at stride 2 (see 3.). filter_lanes: the kernel of 4. (True) or of 2. (False); None:
    filters_in_lanes's choice. Both give the same bits."""
    if w.shape[1] != x.shape[1] or b.shape[0] != w.shape[0]:
        raise ValueError(f"x {tuple(x.shape)[:4]}, w {tuple(w.shape)[:4]} and b ({b.shape[0]},) do not match: "
                         f"expected x (N, C, H, W), w (F, C, KH, KW), b (F,)")
    check_threads(n_threads)
    if filter_lanes is None:
        filter_lanes = _filters_in_lanes(tuple(x.shape)[:4], tuple(w.shape)[:4], sh, sw, ph, pw, sizeof(floating))
    cdef Direct g = _direct(tuple(x.shape)[:4], tuple(w.shape)[:4], sh, sw, ph, pw, relu, pool, n_threads,
                            filter_lanes, sizeof(floating))
    expect_shape(tuple(out.shape)[:4], (g.N, g.F, g.OH // 2, g.OW // 2) if pool else (g.N, g.F, g.OH, g.OW), "out")
    if out.size == 0:
        return
    cdef Py_ssize_t item, size = _band_size(&g) + (g.block * g.rows * g.OW if pool else 0)
    # one workspace: the taps' offsets, the blocked weights and biases, then each thread's buffer (a cache line apart)
    cdef Py_ssize_t offset_entries = _lines(g.taps * sizeof(Py_ssize_t) // sizeof(floating))
    cdef Py_ssize_t weight_entries = _lines((g.F + g.block - 1) // g.block * (g.taps + 1) * g.block)
    cdef floating[::1] work = workspace(np.asarray(out).dtype, offset_entries + weight_entries + n_threads * size)
    cdef Py_ssize_t* offsets = <Py_ssize_t*>&work[0]
    cdef floating* weights = &work[0] + offset_entries
    cdef floating* bias = weights + (g.F + g.block - 1) // g.block * g.taps * g.block
    cdef floating* buffers = weights + weight_entries
    with nogil:
        _block_weights(&g, &w[0, 0, 0, 0], &b[0], weights, bias, offsets)
    for item in prange(g.N * g.bands, nogil=True, schedule="dynamic", num_threads=n_threads):
        _forward_item(&g, &x[0, 0, 0, 0], weights, bias, offsets, &out[0, 0, 0, 0], buffers + threadid() * size,
                      item // g.bands, (item % g.bands) * g.rows)
