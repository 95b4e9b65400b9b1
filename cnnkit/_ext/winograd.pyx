# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Winograd F(2x2, 3x3) drivers for 3x3 stride-1 convolutions (Lavin and Gray 2016).

Notation: a tile is a 2x2 block of output positions; it reads the 4x4 input patch d at
(2*ty - ph, 2*tx - pw), zeros outside the image. An image has TH x TW tiles (the last row
and column may stick out of the output and are cropped). k in [0, 16) indexes the 4x4
transformed domain. With B^T, G, A^T of the paper:
    U_k = (G g G^T)_k (F, C)      V_k = (B^T d B)_k (C, T)      M_k = U_k @ V_k (F, T)
    y = A^T m A (2x2 per tile)    dM_k = (A dy A^T)_k            dU_k = sum over tiles dM_k V_k^T
    dw = G^T dU G,                 dx = the same convolution of dout with the rotated filters.
Each GEMM of the 16 has 2.25 times fewer multiply-adds per output than im2col's.

Design:
1. The unit of work is a band: `rows` consecutive tile rows of the whole batch (a band
   may run across images, so the GEMMs of small images stay large), chosen so that a
   thread's V and M (16 * (C + F) * rows * TW entries) fill at most BAND_BYTES, and
   small enough for MIN_BANDS bands, so that the threads and the gradient groups (5.) get
   even shares. The input transform writes V while the band's input is in cache, the 16
   GEMMs read it, the output transform writes out (NCHW) from M.
2. The 1-D transforms are written out by hand (_input_1d and friends) and applied along
   rows, then along columns, of each tile. BLOCK tiles of one channel at a time: their
   input rows are copied, zero-padded, into an array on the stack, transformed into another
   and stored to their 16 matrices, so the loop over tiles has no bounds test and GCC
   vectorises it (plain loops: glibc's memcpy per block took 12% of the time in perf).
   Channel by channel, then tile row: reads run along each plane (the other order, jumping
   from plane to plane, stalled on loads: shape C took 0.98 of im2col's time, not 0.77).
   The 16 matrices of a band lie SKEW entries more than their size apart: at exactly their
   size (64 KiB on shape C) the 16 streams of a block's stores fell in one cache set, and
   shape C's forward and backward took 5-10% longer.
3. Forward: bands dealt out dynamically; U is computed once per call (serial: F*C filters).
4. Data gradient: the same driver over dout with the filters rotated 180 degrees and C, F
   swapped, padding 2 - p. A padding p > 2 gives a negative padding, which is a crop:
   tiles then read from inside the image, and nothing else changes.
5. Weight gradient: the bands are cut into GRADIENT_GROUPS groups of consecutive bands,
   fixed by the shapes alone. A group sums its dU (16, F, C) and db in band order, the
   groups are then added in order and transformed back once: bit for bit the same on every
   call, whatever the thread count. V is computed again from x: the cache keeps x, w and
   b only (a kept V would take 4 times the memory of x).
6. Buffers come from the per-Python-thread workspace (cnnkit/_ext/_drivers.py): U (or
   the group sums) and one band's V and M per thread. Nothing scales with N.
7. Measured (one thread, busy machine, against im2col's forward+backward): 0.56-0.6 times the
   time on shape B (64x64x32x32, 64 filters), 0.76-0.82 on C (128x32x16x16, 64), 0.64-0.76
   with C = F = 32; perf puts about half of it in the transforms. dU_k.T += V_k @ dM_k.T ran
   no faster than dU_k += dM_k @ V_k.T; bands of 0.5-1 MiB beat 2 MiB by 5-15%. On 2 threads,
   quiet: 0.61 (B) and 0.80 (C) in float32, 0.56 and 0.83 in float64.
8. Not F(4x4, 3x3): its float32 forward (numpy model) erred 15 times more than F(2x2, 3x3)
   (4e-6 of the largest output against 2.6e-7) and failed rtol = atol = 1e-5 from C = 4 on.
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
    """

GRADIENT_GROUPS = 8  # groups of bands whose weight gradients are summed apart (see 5.)
BAND_BYTES = 1 << 20  # largest V and M of one band together (see 1.)
MIN_BANDS = 16  # bands at least, when there are as many tile rows (see 1.)
cdef enum:
    BLOCK = 16  # tiles transformed together, in arrays on the stack (see 2.)
    SKEW = 16  # entries between the 16 matrices of a band (see 2.)


cdef struct Tiling:
    Py_ssize_t N, C, H, W, F, OH, OW  # input (N, C, H, W), output (N, F, OH, OW)
    Py_ssize_t ph, pw  # padding; negative crops
    Py_ssize_t TH, TW, rows, bands  # tiles down and across an image, tile rows per band, bands
    Py_ssize_t vs, ms  # entries from one matrix V_k (M_k) of a band to the next, skewed (see 2.)


cdef Tiling _tiling(tuple x_shape, Py_ssize_t F, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t itemsize) except *:
    """The tiles of a 3x3 stride-1 convolution of x (N, C, H, W) into F channels."""
    cdef Tiling t
    t.N, t.C, t.H, t.W = x_shape
    t.F, t.ph, t.pw = F, ph, pw
    t.OH, t.OW = t.H + 2 * ph - 2, t.W + 2 * pw - 2
    if t.OH < 1 or t.OW < 1:
        raise ValueError(f"a 3x3 window does not fit x {x_shape} with padding ({ph}, {pw})")
    t.TH, t.TW = (t.OH + 1) // 2, (t.OW + 1) // 2
    t.rows = max(1, min((t.N * t.TH + MIN_BANDS - 1) // MIN_BANDS,
                        BAND_BYTES // (16 * max(1, t.C + t.F) * t.TW * itemsize)))
    t.bands = (t.N * t.TH + t.rows - 1) // t.rows
    t.vs, t.ms = t.C * t.rows * t.TW + SKEW, t.F * t.rows * t.TW + SKEW
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


cdef void _transform_filters(const floating* w, floating* U, Py_ssize_t F, Py_ssize_t C,
                             bint rotated) noexcept nogil:
    """U (16, F, C) = G g G^T of every filter g = w[f, c] of w (F, C, 3, 3).

    rotated: U (16, C, F) of the filters turned by 180 degrees (the data gradient's).
    """
    cdef Py_ssize_t f, c, i, FC = F * C
    cdef floating g[9]
    cdef floating s[12]
    cdef floating* u
    for f in range(F):
        for c in range(C):
            for i in range(9):
                g[i] = w[(f * C + c) * 9 + (8 - i if rotated else i)]
            for i in range(3):
                _filter_1d(g + 3 * i, 1, s + 4 * i, 1)
            u = U + (c * F + f if rotated else f * C + c)
            for i in range(4):
                _filter_1d(s + i, 4, u + i * FC, 4 * FC)


cdef void _filter_gradients(const floating* dU, floating* dw, Py_ssize_t F, Py_ssize_t C) noexcept nogil:
    """dw (F, C, 3, 3) = G^T u G of every u = dU[:, f, c] of dU (16, F, C)."""
    cdef Py_ssize_t f, c, i, FC = F * C
    cdef floating s[12]
    for f in range(F):
        for c in range(C):
            for i in range(4):
                _filter_gradient_1d(dU + f * C + c + 4 * i * FC, FC, s + 3 * i, 1)
            for i in range(3):
                _filter_gradient_1d(s + i, 3, dw + (f * C + c) * 9 + i, 3)


cdef void _padded_rows(const floating* plane, floating* rows, Py_ssize_t count, Py_ssize_t width,
                       Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t H, Py_ssize_t W) noexcept nogil:
    """rows (count, width) = plane (H, W)[y0:y0+count, x0:x0+width], zero outside the plane."""
    cdef Py_ssize_t i, j, y, lo = min(max(0, -x0), width), hi = max(lo, min(width, W - x0))
    cdef floating* row
    for i in range(count):
        y, row = y0 + i, rows + i * width
        for j in range(lo if 0 <= y < H else width):
            row[j] = 0
        if 0 <= y < H:
            for j in range(lo, hi):
                row[j] = plane[y * W + x0 + j]
            for j in range(hi, width):
                row[j] = 0


cdef inline void _store_block(const floating* v, floating* dst, Py_ssize_t stride, Py_ssize_t count) noexcept nogil:
    """dst[k * stride + l] = v[k * BLOCK + l] for k < 16, l < count: a block of tiles into its 16 matrices."""
    cdef Py_ssize_t k, l
    for k in range(16):
        for l in range(count):
            dst[k * stride + l] = v[k * BLOCK + l]


cdef void _transform_inputs(const Tiling* t, const floating* x, floating* V, Py_ssize_t r0,
                            Py_ssize_t count) noexcept nogil:
    """V (16, C, count*TW) = B^T d B of every tile of tile rows [r0, r0+count), every channel."""
    cdef Py_ssize_t q = count * t.TW, r, n, ty, c, block, tx, nt, i, l
    cdef floating d[4 * (2 * BLOCK + 2)]
    cdef floating v[16 * BLOCK]
    cdef floating s[16]
    cdef floating* dst
    for c in range(t.C):
        for r in range(count):
            n, ty = (r0 + r) // t.TH, (r0 + r) % t.TH
            dst = V + c * q + r * t.TW
            for block in range((t.TW + BLOCK - 1) // BLOCK):
                tx = block * BLOCK
                nt = min(BLOCK, t.TW - tx)
                _padded_rows(x + (n * t.C + c) * t.H * t.W, d, 4, 2 * BLOCK + 2, 2 * ty - t.ph, 2 * tx - t.pw,
                             t.H, t.W)
                for l in range(nt):
                    for i in range(4):
                        _input_1d(d + i * (2 * BLOCK + 2) + 2 * l, 1, s + 4 * i, 1)
                    for i in range(4):
                        _input_1d(s + i, 4, v + i * BLOCK + l, 4 * BLOCK)
                _store_block(v, dst + tx, t.vs, nt)


cdef void _transform_outputs(const Tiling* t, const floating* M, const floating* b, floating* out,
                             Py_ssize_t r0, Py_ssize_t count) noexcept nogil:
    """out (N, F, OH, OW) on tile rows [r0, r0+count) = A^T m A (+ b[f] unless b is NULL), M (16, F, count*TW)."""
    cdef Py_ssize_t q = count * t.TW, r, n, ty, f, block, tx, nt, i, l, x, height, width
    cdef floating y[2 * 2 * BLOCK]
    cdef floating s[8]
    cdef floating bias = 0
    cdef const floating* m
    cdef floating* o
    for f in range(t.F):
        for r in range(count):
            n, ty = (r0 + r) // t.TH, (r0 + r) % t.TH
            height = min(2, t.OH - 2 * ty)
            m = M + f * q + r * t.TW
            o = out + ((n * t.F + f) * t.OH + 2 * ty) * t.OW
            if b != NULL:
                bias = b[f]
            for block in range((t.TW + BLOCK - 1) // BLOCK):
                tx = block * BLOCK
                nt, width = min(BLOCK, t.TW - tx), min(2 * BLOCK, t.OW - 2 * tx)
                for l in range(nt):
                    for i in range(4):
                        _output_1d(m + tx + l + i * t.ms, 4 * t.ms, s + i, 4)
                    for i in range(2):
                        _output_1d(s + 4 * i, 1, y + i * 2 * BLOCK + 2 * l, 1)
                for i in range(height):
                    for x in range(width):
                        o[i * t.OW + 2 * tx + x] = y[i * 2 * BLOCK + x] + bias


cdef void _transform_gradients(const Tiling* t, const floating* dout, floating* dM, floating* db,
                               Py_ssize_t r0, Py_ssize_t count) noexcept nogil:
    """dM (16, F, count*TW) = A dy A^T of every tile's output gradient dy; db[f] += the sum of dout's tiles."""
    cdef Py_ssize_t q = count * t.TW, r, n, ty, f, block, tx, nt, i, l
    cdef floating d[2 * 2 * BLOCK]
    cdef floating v[16 * BLOCK]
    cdef floating s[8]
    cdef double sums[2 * BLOCK]
    cdef floating* dst
    for f in range(t.F):
        for i in range(2 * BLOCK):
            sums[i] = 0
        for r in range(count):
            n, ty = (r0 + r) // t.TH, (r0 + r) % t.TH
            dst = dM + f * q + r * t.TW
            for block in range((t.TW + BLOCK - 1) // BLOCK):
                tx = block * BLOCK
                nt = min(BLOCK, t.TW - tx)
                _padded_rows(dout + (n * t.F + f) * t.OH * t.OW, d, 2, 2 * BLOCK, 2 * ty, 2 * tx, t.OH, t.OW)
                for i in range(2 * BLOCK):
                    sums[i] = sums[i] + d[i] + d[2 * BLOCK + i]
                for l in range(nt):
                    for i in range(2):
                        _output_gradient_1d(d + i * 2 * BLOCK + 2 * l, 1, s + 4 * i, 1)
                    for i in range(4):
                        _output_gradient_1d(s + i, 4, v + i * BLOCK + l, 4 * BLOCK)
                _store_block(v, dst + tx, t.ms, nt)
        for i in range(1, 2 * BLOCK):  # once per channel and band: a serial sum per tile row cost 10% of backward
            sums[0] = sums[0] + sums[i]
        db[f] += <floating>sums[0]


cdef inline Py_ssize_t _band_rows(const Tiling* t, Py_ssize_t band) noexcept nogil:
    """Tile rows of band `band` (the last one may be shorter)."""
    return min(t.rows, t.N * t.TH - band * t.rows)


cdef void _forward_band(const Tiling* t, const floating* x, const floating* U, const floating* b,
                        floating* out, floating* work, Py_ssize_t band) noexcept nogil:
    """The tiles of one band of out: inputs transformed, 16 GEMMs M_k = U_k @ V_k, outputs transformed."""
    cdef Py_ssize_t count = _band_rows(t, band), q = count * t.TW, k
    cdef floating* V = work
    cdef floating* M = work + 16 * t.vs
    _transform_inputs(t, x, V, band * t.rows, count)
    for k in range(16):
        gemm(False, False, <int>t.F, <int>q, <int>t.C, <floating>1, U + k * t.F * t.C, <int>t.C,
             V + k * t.vs, <int>q, <floating>0, M + k * t.ms, <int>q)
    _transform_outputs(t, M, b, out, band * t.rows, count)


cdef void _weight_gradient_band(const Tiling* t, const floating* x, const floating* dout, floating* dU,
                                floating* db, floating* work, Py_ssize_t band) noexcept nogil:
    """dU (16, F, C) += dM_k @ V_k.T and db (F,) += dout over one band's tiles."""
    cdef Py_ssize_t count = _band_rows(t, band), q = count * t.TW, k
    cdef floating* V = work
    cdef floating* dM = work + 16 * t.vs
    _transform_inputs(t, x, V, band * t.rows, count)
    _transform_gradients(t, dout, dM, db, band * t.rows, count)
    for k in range(16):
        gemm(False, True, <int>t.F, <int>t.C, <int>q, <floating>1, dM + k * t.ms, <int>q,
             V + k * t.vs, <int>q, <floating>1, dU + k * t.F * t.C, <int>t.C)


cdef _convolve(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating* b,
               floating[:, :, :, ::1] out, str name, Py_ssize_t ph, Py_ssize_t pw, bint rotated, int n_threads):
    """out = x convolved with w (F, C, 3, 3) (+ b unless NULL); rotated: with w turned, C and F swapped."""
    cdef Tiling t = _tiling(tuple(x.shape)[:4], w.shape[1 if rotated else 0], ph, pw, sizeof(floating))
    if x.shape[1] != w.shape[0 if rotated else 1] or tuple(w.shape)[2:4] != (3, 3):
        raise ValueError(f"w must have shape (F, C, 3, 3) with {'F' if rotated else 'C'} = {x.shape[1]}, "
                         f"got {tuple(w.shape)[:4]}")
    expect_shape(tuple(out.shape)[:4], (t.N, t.F, t.OH, t.OW), name)
    check_threads(n_threads)
    cdef Py_ssize_t filters = 16 * t.F * t.C, size = _thread_size(&t), band
    cdef floating[::1] work = workspace(np.asarray(out).dtype, filters + n_threads * size)
    if t.N == 0 or t.F == 0:
        return
    _transform_filters(&w[0, 0, 0, 0], &work[0], w.shape[0], w.shape[1], rotated)
    for band in prange(t.bands, nogil=True, schedule="dynamic", num_threads=n_threads):
        _forward_band(&t, &x[0, 0, 0, 0], &work[0], b, &out[0, 0, 0, 0], &work[0] + filters + threadid() * size,
                      band)


cdef _weight_gradients(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dout,
                       floating[:, :, :, ::1] dw, floating[::1] db, Py_ssize_t ph, Py_ssize_t pw, int n_threads):
    """dw (F, C, 3, 3) and db (F,) from x (N, C, H, W) and dout (N, F, OH, OW), summed as in 5."""
    cdef Tiling t = _tiling(tuple(x.shape)[:4], dw.shape[0], ph, pw, sizeof(floating))
    expect_shape(tuple(dout.shape)[:4], (t.N, t.F, t.OH, t.OW), "dout")
    expect_shape(tuple(db.shape)[:1], (t.F,), "db")
    cdef Py_ssize_t groups = min(t.bands, GRADIENT_GROUPS), size = _thread_size(&t), filters = 16 * t.F * t.C
    cdef Py_ssize_t sums = filters + t.F, group, band, i
    cdef floating[::1] work = workspace(np.asarray(dw).dtype, n_threads * size + max(1, groups) * sums)
    cdef floating* group_sums = &work[0] + n_threads * size
    memset(group_sums, 0, sums * sizeof(floating))  # the sums when there are no bands
    for group in prange(groups, nogil=True, schedule="dynamic", num_threads=n_threads):
        memset(group_sums + group * sums, 0, sums * sizeof(floating))
        for band in range(group * t.bands // groups, (group + 1) * t.bands // groups):
            _weight_gradient_band(&t, &x[0, 0, 0, 0], &dout[0, 0, 0, 0], group_sums + group * sums,
                                  group_sums + group * sums + filters, &work[0] + threadid() * size, band)
    for group in range(1, groups):  # a small pass: not worth waking the threads again
        for i in range(sums):
            group_sums[i] += group_sums[group * sums + i]
    _filter_gradients(group_sums, &dw[0, 0, 0, 0], t.F, t.C)
    memcpy(&db[0], group_sums + filters, t.F * sizeof(floating))


def winograd_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                     floating[:, :, :, ::1] out, int ph, int pw, int n_threads):
    """out (N, F, OH, OW) = x (N, C, H, W) convolved with w (F, C, 3, 3) + b (F,); stride 1, padding (ph, pw)."""
    expect_shape(tuple(b.shape)[:1], (w.shape[0],), "b")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got ({ph}, {pw})")
    _convolve(x, w, &b[0] if b.shape[0] else NULL, out, "out", ph, pw, False, n_threads)


def winograd_backward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                      const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw,
                      floating[::1] db, int ph, int pw, int n_threads):
    """Overwrite dx (N, C, H, W), dw (F, C, 3, 3) and db (F,) with the gradients of winograd_forward.

    x, w and (ph, pw) are the forward's, dout (N, F, OH, OW) the output gradient.
    """
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got ({ph}, {pw})")
    expect_shape(tuple(dx.shape)[:4], tuple(x.shape)[:4], "dx")
    expect_shape(tuple(dw.shape)[:4], tuple(w.shape)[:4], "dw")
    _convolve(dout, w, NULL, dx, "dx", 2 - ph, 2 - pw, True, n_threads)
    _weight_gradients(x, dout, dw, db, ph, pw, n_threads)
