# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct convolution at stride 1, built for x86-64-v4 (AVX-512; setup.py): the forward of cnnkit.fast.conv for
few input channels. Import it only where cnnkit._ext.cpu.has_avx512() (cnnkit.fast.conv does).

Notation as conv.pyx: x (N, C, H, W), w (F, C, KH, KW), b (F,), out (N, F, OH, OW); at stride 1
OH = H + 2*PH - KH + 1 and OW = W + 2*PW - KW + 1; K = C*KH*KW taps. With few taps im2col copies
nearly as many entries as the GEMM multiplies, and the GEMM stores each output after only K
multiply-adds; here a register-blocked kernel reads the (padded) input in place:

1. A work item is R consecutive output rows of one image (a band). Its input rows are first
   copied, zero-padded, into the thread's buffer: C planes of R + KH - 1 rows of Wp = W + 2*PW
   entries (PW zeros, the row, PW zeros; a row of padding all zeros), sized to stay in L1
   (BAND_ENTRIES). Threads take items dynamically; a batch of fewer items than threads is cut
   into thinner bands.
2. The kernel (C, below) makes one output row of BLOCK filters at a time, a vector of LANES
   outputs after another (the last one overlapping the one before where LANES does not divide
   OW, so OW >= MIN_WIDTH): BLOCK vector sums in registers, set to the biases, then for each
   tap (c, i, j) the vector of inputs at offset (c*(R + KH - 1) + i)*Wp + j from the row's start
   times each filter's weight (weights laid out tap by tap, BLOCK filters a tap, zero past F),
   then stored, or their ReLU, into the output planes. Each output is b + the products in
   (c, i, j) order, multiply-adds fused: the same bits at any thread count.
3. Pooling fused (pool=True; the inference plan's convolution, ReLU or not, then 2x2 max pooling
   at stride 2, as conv.pyx's 11.): the kernel makes a block's output rows of the band into the
   thread's buffer, whose 2x2 windows are pooled into out (N, F, OH // 2, OW // 2) while in cache,
   their ReLU taken in the same pass (cnnkit/_ext/_max2x2.pxd); bands have an even number of rows.
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
    #define CNNKIT_BLOCK 8  /* filters of a block */
    #define CNNKIT_VECTOR 64  /* bytes of a vector: 16 floats, 8 doubles */
    /* *dst = s, or its ReLU: 0 where s < 0 (a NaN kept) */
    #define CNNKIT_STORE(V, M, s, dst, relu) *(V*)(dst) = (relu) ? (V)((M)(s) & ~((s) < (V){0})) : (s)
    /* out[f * plane + x] for x < width (>= LANES), f < filters (<= CNNKIT_BLOCK): bias[f] + the sum over
       t < taps of weights[t * CNNKIT_BLOCK + f] * src[x + offsets[t]], or its ReLU */
    #define CNNKIT_DIRECT_ROW(NAME, T, I)                                                                    \\
    typedef T NAME##_vector __attribute__((vector_size(CNNKIT_VECTOR), aligned(sizeof(T)), may_alias));      \\
    typedef I NAME##_mask __attribute__((vector_size(CNNKIT_VECTOR)));                                      \\
    static void NAME(const T* src, const Py_ssize_t* offsets, Py_ssize_t taps, const T* weights,            \\
                     const T* bias, T* out, Py_ssize_t plane, Py_ssize_t width, int filters, int relu) {    \\
        typedef NAME##_vector V;                                                                            \\
        typedef NAME##_mask M;                                                                              \\
        const Py_ssize_t lanes = CNNKIT_VECTOR / sizeof(T);                                                 \\
        for (Py_ssize_t x = 0; x < width; x += lanes) {                                                     \\
            if (x + lanes > width)                                                                          \\
                x = width - lanes;                                                                          \\
            V s0 = (V){0} + bias[0], s1 = (V){0} + bias[1], s2 = (V){0} + bias[2], s3 = (V){0} + bias[3],  \\
              s4 = (V){0} + bias[4], s5 = (V){0} + bias[5], s6 = (V){0} + bias[6], s7 = (V){0} + bias[7];  \\
            const T* w = weights;                                                                           \\
            for (Py_ssize_t t = 0; t < taps; t++, w += CNNKIT_BLOCK) {                                      \\
                V v = *(const V*)(src + x + offsets[t]);                                                    \\
                s0 += w[0] * v; s1 += w[1] * v; s2 += w[2] * v; s3 += w[3] * v;                             \\
                s4 += w[4] * v; s5 += w[5] * v; s6 += w[6] * v; s7 += w[7] * v;                             \\
            }                                                                                               \\
            T* o = out + x;                                                                                 \\
            switch (filters) {                                                                              \\
            default: CNNKIT_STORE(V, M, s7, o + 7 * plane, relu); /* fall through */                        \\
            case 7: CNNKIT_STORE(V, M, s6, o + 6 * plane, relu); /* fall through */                         \\
            case 6: CNNKIT_STORE(V, M, s5, o + 5 * plane, relu); /* fall through */                         \\
            case 5: CNNKIT_STORE(V, M, s4, o + 4 * plane, relu); /* fall through */                         \\
            case 4: CNNKIT_STORE(V, M, s3, o + 3 * plane, relu); /* fall through */                         \\
            case 3: CNNKIT_STORE(V, M, s2, o + 2 * plane, relu); /* fall through */                         \\
            case 2: CNNKIT_STORE(V, M, s1, o + plane, relu); /* fall through */                             \\
            case 1: CNNKIT_STORE(V, M, s0, o, relu);                                                        \\
            }                                                                                               \\
        }                                                                                                   \\
    }
    CNNKIT_DIRECT_ROW(cnnkit_direct_floats, float, int)
    CNNKIT_DIRECT_ROW(cnnkit_direct_doubles, double, long long)
    """
    enum: BLOCK "CNNKIT_BLOCK"
    enum: VECTOR_BYTES "CNNKIT_VECTOR"
    void _row_floats "cnnkit_direct_floats"(const float* src, const Py_ssize_t* offsets, Py_ssize_t taps,
                                            const float* weights, const float* bias, float* out, Py_ssize_t plane,
                                            Py_ssize_t width, int filters, int relu) noexcept nogil
    void _row_doubles "cnnkit_direct_doubles"(const double* src, const Py_ssize_t* offsets, Py_ssize_t taps,
                                              const double* weights, const double* bias, double* out,
                                              Py_ssize_t plane, Py_ssize_t width, int filters,
                                              int relu) noexcept nogil

MIN_WIDTH = VECTOR_BYTES // 4  # OW of at least one vector of floats (see 2.)
cdef enum:
    BAND_ENTRIES = 6144  # a band's padded input at most: 24 KB of float32 (see 1.)


cdef struct Direct:
    Py_ssize_t N, C, H, W, F, OH, OW, Wp, rows, bands, span, taps
    int kh, kw, ph, pw
    bint relu, pool


cdef Direct _direct(tuple x_shape, tuple w_shape, int ph, int pw, bint relu, bint pool, int n_threads) except *:
    """The geometry of the convolution, its bands cut for n_threads (see 1.)."""
    cdef Direct g
    cdef Py_ssize_t per_image
    g.OH, g.OW = output_hw(x_shape, w_shape[2], w_shape[3], 1, 1, ph, pw)
    if g.OW < MIN_WIDTH:
        raise ValueError(f"direct convolution needs an output width (OW) of at least {MIN_WIDTH}, got {g.OW}")
    g.N, g.C, g.H, g.W, g.F = x_shape[0], x_shape[1], x_shape[2], x_shape[3], w_shape[0]
    g.kh, g.kw, g.ph, g.pw, g.relu, g.pool = w_shape[2], w_shape[3], ph, pw, relu, pool
    g.Wp, g.taps = g.W + 2 * pw, g.C * g.kh * g.kw
    g.rows = max(1, min(g.OH, BAND_ENTRIES // max(1, g.C * g.Wp) - (g.kh - 1)))
    if 0 < g.N * ((g.OH + g.rows - 1) // g.rows) < n_threads:
        per_image = (n_threads + g.N - 1) // g.N
        g.rows = (g.OH + per_image - 1) // per_image
    if pool and g.rows < g.OH:
        g.rows = min(g.OH, g.rows + g.rows % 2)
    g.bands, g.span = (g.OH + g.rows - 1) // g.rows, g.rows + g.kh - 1
    return g


cdef void _block_weights(const Direct* g, const floating* w, const floating* b, floating* blocked,
                         floating* bias, Py_ssize_t* offsets) noexcept nogil:
    """blocked (blocks, taps, BLOCK) = w (F, taps) by blocks of BLOCK filters, bias (blocks*BLOCK) = b, both zero
    past F; offsets (taps) = where tap (c, i, j) reads in a band's padded input, from an output row's start."""
    cdef Py_ssize_t f, t, c, i, j, blocks = (g.F + BLOCK - 1) // BLOCK
    memset(blocked, 0, blocks * g.taps * BLOCK * sizeof(floating))
    memset(bias, 0, blocks * BLOCK * sizeof(floating))
    for f in range(g.F):
        bias[f] = b[f]
        for t in range(g.taps):
            blocked[((f // BLOCK) * g.taps + t) * BLOCK + f % BLOCK] = w[f * g.taps + t]
    for c in range(g.C):
        for i in range(g.kh):
            for j in range(g.kw):
                offsets[(c * g.kh + i) * g.kw + j] = (c * g.span + i) * g.Wp + j


cdef void _pad_band(const Direct* g, const floating* image, floating* padded, Py_ssize_t y0) noexcept nogil:
    """Input rows [y0 - PH, y0 - PH + span) of each channel of image (C, H, W), zero-padded (see 1.)."""
    cdef Py_ssize_t c, r, y
    memset(padded, 0, g.C * g.span * g.Wp * sizeof(floating))
    for c in range(g.C):
        for r in range(g.span):
            y = y0 - g.ph + r
            if 0 <= y < g.H:
                memcpy(padded + (c * g.span + r) * g.Wp + g.pw, image + (c * g.H + y) * g.W, g.W * sizeof(floating))


cdef inline void _row(const Direct* g, const floating* padded, const floating* blocked, const floating* bias,
                      const Py_ssize_t* offsets, floating* out, Py_ssize_t plane, int filters, bint relu) noexcept nogil:
    """One output row of a block of filters into out, planes `plane` apart: the kernel of this dtype (see 2.)."""
    if floating is float:
        _row_floats(padded, offsets, g.taps, blocked, bias, out, plane, g.OW, filters, relu)
    else:
        _row_doubles(padded, offsets, g.taps, blocked, bias, out, plane, g.OW, filters, relu)


cdef void _forward_item(const Direct* g, const floating* x, const floating* blocked, const floating* bias,
                        const Py_ssize_t* offsets, floating* out, floating* buffer, Py_ssize_t n,
                        Py_ssize_t y0) noexcept nogil:
    """Output rows [y0, y0 + R) of image n, BLOCK filters at a time, or their pooling (see 1.-3.)."""
    cdef Py_ssize_t rows = min(g.rows, g.OH - y0), width = g.OW // 2, block, y, f
    cdef Py_ssize_t plane = (g.OH // 2) * width if g.pool else g.OH * g.OW
    cdef int filters
    cdef const floating* blocked_weights
    cdef const floating* blocked_bias
    cdef floating* dst
    cdef floating* rows_made = buffer + g.C * g.span * g.Wp
    _pad_band(g, x + n * g.C * g.H * g.W, buffer, y0)
    for block in range((g.F + BLOCK - 1) // BLOCK):
        filters = <int>min(<Py_ssize_t>BLOCK, g.F - block * BLOCK)
        blocked_weights, blocked_bias = blocked + block * g.taps * BLOCK, bias + block * BLOCK
        dst = out + (n * g.F + block * BLOCK) * plane
        if not g.pool:
            for y in range(rows):
                _row(g, buffer + y * g.Wp, blocked_weights, blocked_bias, offsets, dst + (y0 + y) * g.OW, plane,
                     filters, g.relu)
            continue
        for y in range(rows):
            _row(g, buffer + y * g.Wp, blocked_weights, blocked_bias, offsets, rows_made + y * g.OW, rows * g.OW,
                 filters, False)
        for f in range(filters):
            max_plane_2x2(rows_made + f * rows * g.OW, dst + f * plane + y0 // 2 * width, g.OW, rows // 2, width,
                          g.relu)


def direct_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                   floating[:, :, :, ::1] out, int ph, int pw, int n_threads, bint relu=False, bint pool=False):
    """out (N, F, OH, OW) = the stride-1 convolution of x (N, C, H, W) with w (F, C, KH, KW) and b (F,),
    padded by (ph, pw), or its ReLU with relu; OW >= MIN_WIDTH. pool: out (N, F, OH // 2, OW // 2), the
    maxima of that's 2x2 windows at stride 2 (see 3.)."""
    if w.shape[1] != x.shape[1] or b.shape[0] != w.shape[0]:
        raise ValueError(f"x {tuple(x.shape)[:4]}, w {tuple(w.shape)[:4]} and b ({b.shape[0]},) do not match: "
                         f"expected x (N, C, H, W), w (F, C, KH, KW), b (F,)")
    check_threads(n_threads)
    cdef Direct g = _direct(tuple(x.shape)[:4], tuple(w.shape)[:4], ph, pw, relu, pool, n_threads)
    expect_shape(tuple(out.shape)[:4], (g.N, g.F, g.OH // 2, g.OW // 2) if pool else (g.N, g.F, g.OH, g.OW), "out")
    if out.size == 0:
        return
    cdef Py_ssize_t blocks = (g.F + BLOCK - 1) // BLOCK, item
    cdef Py_ssize_t size = g.C * g.span * g.Wp + (BLOCK * g.rows * g.OW if pool else 0)  # the band, its outputs
    dtype = np.asarray(out).dtype
    cdef floating[::1] weights = workspace(dtype, blocks * (g.taps + 1) * BLOCK, slot="direct")
    cdef Py_ssize_t[::1] offsets = workspace(np.intp, g.taps, slot="direct")
    cdef floating[::1] work = workspace(dtype, n_threads * size)
    cdef floating* bias = &weights[0] + blocks * g.taps * BLOCK
    with nogil:
        _block_weights(&g, &w[0, 0, 0, 0], &b[0], &weights[0], bias, &offsets[0])
    for item in prange(g.N * g.bands, nogil=True, schedule="dynamic", num_threads=n_threads):
        _forward_item(&g, &x[0, 0, 0, 0], &weights[0], bias, &offsets[0], &out[0, 0, 0, 0],
                      &work[0] + threadid() * size, item // g.bands, (item % g.bands) * g.rows)
