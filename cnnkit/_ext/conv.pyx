# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Convolution drivers (im2col + GEMM): OpenMP threads over work items, BLAS called directly, no GIL.

Notation: K = C*KH*KW column rows, P = OH*OW output positions, wb = [w.reshape(F, K) | b] of
shape (F, K+1). A work item is R consecutive output rows of one image (a band), or, on maps
small enough, B whole images; it covers Q = R*OW positions of each of its images.

Contract and rules:
1. Work items, not images, are the unit of work. R is chosen so that an item's columns
   (K+1, Q) and its output (gradient) (F, Q) fill at most BAND_BYTES (about an L2): im2col
   writes them and the GEMMs read them while they are still in cache. Where a whole image
   fits (R = OH) several times and has fewer output positions than there are filters (P < F),
   an item takes B whole images, at most a GRADIENT_GROUPS-th of the batch, so that the GEMMs
   are B times wider and the weights, larger than an image's columns then, are packed once
   per B images, not once per image (elsewhere the copy from the item's product to the NCHW
   output would cost more than that saves). Thread t owns one column buffer whose last row is ones, so
   wb @ cols adds the bias and dout @ cols.T yields [dw | db] in the same product. Its rows
   are ld apart, an odd number of cache lines (_row_stride), so that they spread over L1's
   sets; the workspace starts a cache line, so every row starts one.
2. The GEMMs are direct calls to scipy's BLAS (cnnkit/_ext/_blas.pxd), single-threaded inside
   the parallel loop: no GIL, no numpy call. The caller keeps BLAS's own pool at one thread
   meanwhile (cnnkit/fast/_threads.py), so only our OpenMP threads run.
3. Forward: the items are dealt out dynamically (the cores may be shared; one image alone
   still keeps every thread busy when cut into bands, which are cut thinner where there are
   fewer items than threads: a batch of one small image, into bands of an even number of rows,
   which pooling (11.) takes whole). A band's out[n][:, band] = wb @ cols
   is written in place with row stride P (NCHW, no copy); B images' product goes to the
   thread's buffer and is copied to their NCHW planes.
4. Backward, per item: its dout is first copied (staged) into the thread's buffer, rows ld
   apart, so that both products read it from cache. [dw | db].T += cols @ dout.T (the
   orientation OpenBLAS runs faster on these shapes; the transposed sums cost one small
   pass), then the columns are overwritten with w.T @ dout and col2im adds them into dx
   (bands of one image overlap in dx, so one thread does whole images). The images are cut
   into GRADIENT_GROUPS groups of consecutive images, fixed by N alone, and a group into
   items from its first image on; a group sums its [dw | db].T in item order and the groups
   are then added in order. Threads take groups dynamically, yet every call adds in the same
   order: the weight gradients are bit for bit the same whatever the thread count. (Fewer
   images than groups, cut into bands: see 10.)
5. The buffers (one per thread, plus the group sums) come from a workspace kept per Python
   thread between calls (cnnkit/_ext/_drivers.py); it holds nothing from one call to the
   next. Nothing of size N*K*P exists: the backward recomputes each item's columns.
6. Stride-1 windows that keep the width (OW == W, "same" padding) copy and add each kernel
   offset's rows in one run; on other narrow maps, windows twice as tall as their stride or
   more gather each kernel column's input rows once and copy or add each offset's rows from
   them in one run (cnnkit/_ext/_im2col.pxd).
7. A pointwise convolution (1x1 kernel, unit stride, no padding) skips im2col: x[n] seen as
   (C, P) is its own column matrix; its items are whole images. The output is first filled with
   the bias, to which the product is added (BLAS would zero it first otherwise); db is summed
   in SUM_LANES interleaved partial sums (_sum). Its backward on images so small that
   N*P <= POINTWISE_BATCH_POSITIONS_PER_FILTER * F runs as the batch-wide item of 9. instead:
   an image's [dw | db] product, P deep, would rewrite the whole of it for a few positions
   (0.73-0.91 of the per-image backward on 2x2 to 7x7 maps with 128 to 1024 channels).
8. ReLU fused (conv2d_relu): the forward takes an item's ReLU while it is in cache, the
   backward stages dout through the output's mask (pointwise, too, stages it then). The
   gradients are those of the unfused pair, bit for bit, without ReLU's own passes.
9. Weights that outweigh the batch (N*P <= BATCH_POSITIONS_PER_FILTER * F: small maps with
   many channels, batches of one or two; see 7. for pointwise), when its columns fit BATCH_BYTES: the whole batch
   is one item. Its columns (K+1, N*P) are made once (threads take images), and each product
   runs once over them, cut into an even number of equal slices that threads take: of at
   most F_SLICE filters for the output and [dw | db] (dout staged for the whole batch first),
   of at most K_SLICE column rows for the data gradient, then col2im per image. The slices
   depend on the shape alone, so every result is the same bit for bit at any thread count;
   each weight is read a few times per call, not once per item of a few images.
10. Backward of fewer images than GRADIENT_GROUPS cut into bands (a batch of one would keep one
   thread busy): the groups are runs of consecutive items (image, band), all N*bands of them
   below four, else a multiple of four up to GRADIENT_GROUPS (each half then shares evenly
   between two threads). The even groups run first, then the odd ones: an odd group holds a
   whole band at least, and for such batches a band of R output rows reaches past the kernel's
   height (R is raised to KH/SH - 1, rounded up, where the bytes allow fewer: KH <= (R+1)*SH), so
   two groups that run at once add to different rows of dx. The groups, fixed by the shape
   alone, are added in order as in 4.
11. Pooling fused (pool=True; the inference plan's convolution, ReLU or not, then 2x2 max pooling
   at stride 2): each item's product goes to the thread's buffer, whose 2x2 windows are pooled
   into out (N, F, OH//2 * OW//2) (cnnkit/_ext/_max2x2.pxd) while it is in cache, their ReLU taken
   in the same pass (the ReLU of a maximum is the maximum of the ReLUs); the full output is never written.
   So that no window spans two items, an item of bands of an odd number of rows (but the last)
   takes two of them, one GEMM each: the GEMMs are the unfused forward's, call for call
   (OpenBLAS's sums depend on a product's width), and the values the unfused convolution, ReLU
   and pooling's (but for which of two equal zeros or NaNs comes out, as with the 2x2 pooling
   alone). Not pointwise.
"""
import numpy as np
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.limits cimport INT_MAX
from libc.string cimport memset

from cnnkit._ext._blas cimport gemm
from cnnkit._ext._drivers import check_threads, expect_shape, workspace
from cnnkit._ext._im2col cimport (TABLE_ENTRIES, col2im_channel, im2col_channel, output_hw, tabled, tabled_channel,
                                  window_table)
from cnnkit._ext._max2x2 cimport max_plane_2x2

cdef extern from *:
    """
    #include <string.h>
    /* Rows of a few entries (small maps) copied in a loop: a memcpy call costs more than such a
       copy. GCC would turn the loop back into the call but for this attribute. */
    #if defined(__GNUC__) && !defined(__clang__)
    __attribute__((optimize("no-tree-loop-distribute-patterns")))
    #endif
    static void cnnkit_copy(void* dst, const void* src, size_t bytes) {
        if (bytes >= 256) {
            memcpy(dst, src, bytes);
            return;
        }
        for (size_t i = 0; i < bytes; i++)
            ((char*)dst)[i] = ((const char*)src)[i];
    }
    """
    void _copy "cnnkit_copy"(void* dst, const void* src, size_t bytes) noexcept nogil


GRADIENT_GROUPS = 8  # groups of images whose weight gradients are summed apart (see 4.)
BAND_BYTES = 1 << 20  # largest columns + output (gradient) of one item: about an L2 (see 1.)
BATCH_BYTES = 1 << 24  # largest columns + output (gradient) of the batch-wide item (see 9.)
BATCH_POSITIONS_PER_FILTER = 2  # the batch is one item from F >= N*P / this (see 9.)
POINTWISE_BATCH_POSITIONS_PER_FILTER = 8  # the same for a pointwise convolution's backward (see 7.)
cdef enum:
    CACHE_LINE = 64  # bytes
    TILE = 16  # entries a side of the squares the weight gradient is transposed in
    F_SLICE = 128  # filters of one product of the batch-wide item at most (see 9.)
    K_SLICE = 512  # column rows of one of its data-gradient products at most
    SUM_LANES = 8  # partial sums of a pointwise convolution's bias gradient (_sum)


cdef struct Conv:
    Py_ssize_t N, C, H, W, F, K, OH, OW, P, rows, images, ld  # rows: R; images: B; ld: see _row_stride
    Py_ssize_t gemm_rows  # output rows of a forward GEMM: R, or R/2 where pooling pairs bands (see 11.)
    int kh, kw, sh, sw, ph, pw
    bint pointwise, batch, pool  # batch: the whole batch is one item (see 9.); pool: see 11.


cdef Conv _conv(tuple x_shape, tuple wb_shape, int kh, int kw, int sh, int sw, int ph, int pw,
                Py_ssize_t itemsize, bint backward=False) except *:
    """The geometry of a convolution (its backward's if backward) after checking that wb is (F, C*KH*KW + 1) for
    x (N, C, H, W)."""
    cdef Conv g
    cdef bint pointwise = kh == kw == sh == sw == 1 and ph == pw == 0
    cdef Py_ssize_t image_bytes
    g.OH, g.OW = output_hw(x_shape, kh, kw, sh, sw, ph, pw)
    g.N, g.C, g.H, g.W, g.F = x_shape[0], x_shape[1], x_shape[2], x_shape[3], wb_shape[0]
    g.K, g.P = g.C * kh * kw, g.OH * g.OW
    if wb_shape[1] != g.K + 1:
        raise ValueError(f"wb must have shape (F, {g.K + 1}) = (F, C*KH*KW + 1), got {wb_shape}")
    if max(g.K + 1, g.P, g.F) > INT_MAX:
        raise ValueError(f"C*KH*KW + 1 = {g.K + 1}, OH*OW = {g.P} and F = {g.F} must each fit BLAS's int")
    g.kh, g.kw, g.sh, g.sw, g.ph, g.pw = kh, kw, sh, sw, ph, pw
    g.pool = False
    image_bytes = (g.K + 1 + g.F) * g.P * itemsize
    if pointwise:
        g.batch = backward and g.N * g.P <= POINTWISE_BATCH_POSITIONS_PER_FILTER * g.F
    else:
        g.batch = g.N * g.P <= BATCH_POSITIONS_PER_FILTER * g.F
    g.batch = g.batch and g.N * image_bytes <= BATCH_BYTES
    g.pointwise = pointwise and not g.batch
    g.rows = g.OH if g.pointwise else max(1, min(g.OH, BAND_BYTES // ((g.K + 1 + g.F) * g.OW * itemsize)))
    if g.N < GRADIENT_GROUPS and not g.pointwise:  # bands the kernel does not reach past (see 10.)
        g.rows = max(g.rows, min(g.OH, (kh + sh - 1) // sh - 1))
    g.images = 1
    if not g.pointwise and g.rows == g.OH and g.P < g.F:
        g.images = max(1, min(BAND_BYTES // max(1, image_bytes), g.N // GRADIENT_GROUPS))
    if g.batch:
        g.rows, g.images = g.OH, max(1, g.N)
    g.ld = _row_stride(g.images * g.rows * g.OW, itemsize)
    g.gemm_rows = g.rows
    return g


cdef inline Py_ssize_t _row_stride(Py_ssize_t q, Py_ssize_t itemsize) noexcept nogil:
    """Elements from one column row to the next: q rounded up to an odd number of cache lines.

    Rows an odd number of lines apart spread over all of L1's sets; rows a power of two
    apart would share a few of them.
    """
    cdef Py_ssize_t lines = (q * itemsize + CACHE_LINE - 1) // CACHE_LINE
    return (lines | 1) * (CACHE_LINE // itemsize)


cdef inline Py_ssize_t _band_columns(const Conv* g) noexcept nogil:
    """Elements of one thread's column buffer: K+1 rows, ld apart; none when pointwise."""
    return 0 if g.pointwise else (g.K + 1) * g.ld


cdef inline Py_ssize_t _bands(const Conv* g) noexcept nogil:
    """Bands of R output rows (the last one may be shorter) per image."""
    return (g.OH + g.rows - 1) // g.rows


cdef inline Py_ssize_t _out_plane(const Conv* g) noexcept nogil:
    """Entries of one output plane: OH*OW, or (OH//2) * (OW//2) pooled (see 11.)."""
    return (g.OH // 2) * (g.OW // 2) if g.pool else g.P


cdef inline Py_ssize_t _skipped(const Conv* g, Py_ssize_t y0) noexcept nogil:
    """Input rows above the first one that the band starting at output row y0 reads (in [0, H])."""
    return min(max(0, y0 * g.sh - g.ph), g.H)


cdef void _im2col_band(const Conv* g, const floating* image, floating* cols, Py_ssize_t y0,
                       Py_ssize_t rows) noexcept nogil:
    """cols (K+1, rows*OW), rows ld apart: the patches of output rows [y0, y0+rows) of image (C, H, W), then ones.

    The band is a convolution of its own over the input rows from `skip` on, whose top
    padding is what remains above them.
    """
    cdef Py_ssize_t c, i, q = rows * g.OW, skip = _skipped(g, y0), plane = g.H * g.W
    cdef int top_padding = <int>(skip - (y0 * g.sh - g.ph))
    cdef int table[TABLE_ENTRIES]
    if tabled(g.kh, g.kw, g.sh, g.sw, q, g.W, g.OW, plane):
        window_table(table, g.H - skip, g.W, g.kh, g.kw, g.sh, g.sw, top_padding, g.pw, rows, g.OW)
        for c in range(g.C):
            tabled_channel(<floating*>image + c * plane + skip * g.W, cols + c * g.kh * g.kw * g.ld, table,
                           g.kh * g.kw, q, g.ld, True)
    else:
        for c in range(g.C):
            im2col_channel(image + c * plane + skip * g.W, cols + c * g.kh * g.kw * g.ld, g.H - skip, g.W,
                           g.kh, g.kw, g.sh, g.sw, top_padding, g.pw, rows, g.OW, g.ld)
    for i in range(q):
        cols[g.K * g.ld + i] = 1


cdef void _col2im_band(const Conv* g, floating* cols, floating* image, Py_ssize_t y0,
                       Py_ssize_t rows) noexcept nogil:
    """Adjoint of _im2col_band (without the ones): scatter-add cols' first K rows into image.

    Entries of cols that fall in the padding may be overwritten.
    """
    cdef Py_ssize_t c, skip = _skipped(g, y0), plane = g.H * g.W, q = rows * g.OW
    cdef int top_padding = <int>(skip - (y0 * g.sh - g.ph))
    cdef int table[TABLE_ENTRIES]
    if tabled(g.kh, g.kw, g.sh, g.sw, q, g.W, g.OW, plane):
        window_table(table, g.H - skip, g.W, g.kh, g.kw, g.sh, g.sw, top_padding, g.pw, rows, g.OW)
        for c in range(g.C):
            tabled_channel(image + c * plane + skip * g.W, cols + c * g.kh * g.kw * g.ld, table, g.kh * g.kw, q,
                           g.ld, False)
    else:
        for c in range(g.C):
            col2im_channel(cols + c * g.kh * g.kw * g.ld, image + c * plane + skip * g.W, g.H - skip, g.W,
                           g.kh, g.kw, g.sh, g.sw, top_padding, g.pw, rows, g.OW, g.ld, True)


cdef void _store(const floating* src, floating* dst, Py_ssize_t rows, Py_ssize_t q, Py_ssize_t ld,
                 Py_ssize_t stride, bint relu) noexcept nogil:
    """dst (rows, q), rows `stride` apart = src (rows, q), rows ld apart, or its ReLU; src may be dst.

    The fast ReLU's formula: NaN and -0.0 stay.
    """
    cdef Py_ssize_t f, p
    cdef floating value
    for f in range(rows):
        if not relu:
            _copy(dst + f * stride, src + f * ld, q * sizeof(floating))
            continue
        for p in range(q):
            value = src[f * ld + p]
            dst[f * stride + p] = 0 if value < 0 else value


cdef void _emit(const Conv* g, floating* product, floating* out, Py_ssize_t filters, Py_ssize_t y0,
                Py_ssize_t rows, bint relu) noexcept nogil:
    """Output rows [y0, y0+rows) of `filters` planes of one image from product (filters, rows*OW), rows ld apart,
    into out (those planes, _out_plane apart): stored (their ReLU when relu), or their 2x2 maxima (the ReLU of
    those, see 11.), one of the ReLUs' maxima (NaN, or which of two equal zeros, may differ)."""
    cdef Py_ssize_t f, q = rows * g.OW, plane = _out_plane(g), width = g.OW // 2
    if not g.pool:
        _store(product, out + y0 * g.OW, filters, q, g.ld, plane, relu)
        return
    out += y0 // 2 * width
    for f in range(filters):
        max_plane_2x2(product + f * g.ld, out + f * plane, g.OW, rows // 2, width, relu)


cdef void _forward_item(const Conv* g, const floating* x, const floating* wb, floating* out,
                        floating* cols, floating* product, Py_ssize_t n0, Py_ssize_t y0, bint relu) noexcept nogil:
    """Output rows [y0, y0+R) of images [n0, n0+B) of out (N, F, P) = wb @ their patches (their ReLU when relu;
    pooled into out (N, F, OH//2 * OW//2) when g.pool).

    product: a thread's (F, B*P) buffer, rows ld apart, used when the item has more than one image or pools.
    """
    cdef Py_ssize_t rows = min(g.rows, g.OH - y0), q = rows * g.OW, nb = min(g.images, g.N - n0), i, f, p
    cdef Py_ssize_t plane = g.C * g.H * g.W, planes = g.F * _out_plane(g)
    x += n0 * plane
    out += n0 * planes
    if g.pointwise:
        out += y0 * g.OW
        for f in range(g.F):  # the bias, to which the product is added (see 7.)
            for p in range(q):
                out[f * g.P + p] = wb[f * (g.K + 1) + g.K]
        gemm(False, False, <int>g.F, <int>q, <int>g.K, <floating>1, wb, <int>(g.K + 1),
             x + y0 * g.OW, <int>g.P, <floating>1, out, <int>g.P)
        if relu:
            _store(out, out, g.F, q, g.P, g.P, relu)
        return
    if g.pool and nb == 1:
        _pooled_item(g, x, wb, out, cols, product, y0, rows, relu)
        return
    for i in range(nb):
        _im2col_band(g, x + i * plane, cols + i * q, y0, rows)
    if nb == 1:
        out += y0 * g.OW
        gemm(False, False, <int>g.F, <int>q, <int>(g.K + 1), <floating>1, wb, <int>(g.K + 1),
             cols, <int>g.ld, <floating>0, out, <int>g.P)
        if relu:
            _store(out, out, g.F, q, g.P, g.P, relu)
        return
    gemm(False, False, <int>g.F, <int>(nb * q), <int>(g.K + 1), <floating>1, wb, <int>(g.K + 1),
         cols, <int>g.ld, <floating>0, product, <int>g.ld)
    for i in range(nb):
        _emit(g, product + i * q, out + i * planes, g.F, y0, rows, relu)


cdef void _pooled_item(const Conv* g, const floating* image, const floating* wb, floating* out, floating* cols,
                       floating* product, Py_ssize_t y0, Py_ssize_t rows, bint relu) noexcept nogil:
    """Output rows [y0, y0+rows) of one image (C, H, W) into product (F, rows*OW), one GEMM per gemm_rows, then
    pooled into out (its F planes) (see 11.)."""
    cdef Py_ssize_t y = y0, part
    while y < y0 + rows:
        part = min(g.gemm_rows, y0 + rows - y)
        _im2col_band(g, image, cols, y, part)
        gemm(False, False, <int>g.F, <int>(part * g.OW), <int>(g.K + 1), <floating>1, wb, <int>(g.K + 1),
             cols, <int>g.ld, <floating>0, product + (y - y0) * g.OW, <int>g.ld)
        y += part
    _emit(g, product, out, g.F, y0, rows, relu)


cdef void _stage(const floating* dout, const floating* out, floating* staged, Py_ssize_t rows, Py_ssize_t q,
                 Py_ssize_t stride, Py_ssize_t ld) noexcept nogil:
    """staged (rows, q), rows ld apart = dout, or, with out not NULL, dout where out > 0, else 0;
    dout and out have rows `stride` apart.

    Both are read unconditionally, so the masking loop has no branch and GCC vectorises it (a
    conditional read of dout would branch on every entry).
    """
    cdef Py_ssize_t f, p
    cdef floating value
    for f in range(rows):
        if out == NULL:
            _copy(staged + f * ld, dout + f * stride, q * sizeof(floating))
            continue
        for p in range(q):
            value = dout[f * stride + p]
            staged[f * ld + p] = value if out[f * stride + p] > 0 else 0


cdef void _backward_item(const Conv* g, const floating* x, const floating* wb, const floating* dout,
                         const floating* out, floating* dx, floating* dwb_t, floating* cols, floating* staged,
                         Py_ssize_t n0, Py_ssize_t nb, Py_ssize_t y0) noexcept nogil:
    """dwb_t (K+1, F) += the [dw | db].T of output rows [y0, y0+R) of images [n0, n0+nb); their share of
    dx (N, C, H, W) written (pointwise) or added, unless dx is NULL. nb > 1 only when R = OH.

    Unless staged is NULL (pointwise without ReLU), the products read the item's dout from staged
    (F, nb*Q), rows ld apart (see 4.); with out (N, F, P) not NULL (the fused ReLU's output), it counts
    where out > 0 only.
    """
    cdef Py_ssize_t rows = min(g.rows, g.OH - y0), q = rows * g.OW, i, f, p
    cdef Py_ssize_t plane = g.C * g.H * g.W, planes = g.F * g.P, offset = y0 * g.OW
    cdef int ld = <int>g.P
    x += n0 * plane
    dout += n0 * planes + offset
    if dx != NULL:
        dx += n0 * plane
    if staged != NULL:
        for i in range(nb):
            _stage(dout + i * planes, out + n0 * planes + offset + i * planes if out != NULL else NULL,
                   staged + i * q, g.F, q, g.P, g.ld)
        dout, ld = staged, <int>g.ld
    if g.pointwise:
        gemm(False, True, <int>g.K, <int>g.F, <int>q, <floating>1, x + offset, <int>g.P, dout, ld,
             <floating>1, dwb_t, <int>g.F)
        for f in range(g.F):
            dwb_t[g.K * g.F + f] += <floating>_sum(dout + f * ld, q)
        if dx != NULL:
            gemm(True, False, <int>g.K, <int>q, <int>g.F, <floating>1, wb, <int>(g.K + 1), dout, ld,
                 <floating>0, dx + offset, <int>g.P)
        return
    for i in range(nb):
        _im2col_band(g, x + i * plane, cols + i * q, y0, rows)
    gemm(False, True, <int>(g.K + 1), <int>g.F, <int>(nb * q), <floating>1, cols, <int>g.ld, dout, ld,
         <floating>1, dwb_t, <int>g.F)
    if dx != NULL:
        gemm(True, False, <int>g.K, <int>(nb * q), <int>g.F, <floating>1, wb, <int>(g.K + 1), dout, ld,
             <floating>0, cols, <int>g.ld)
        for i in range(nb):
            _col2im_band(g, cols + i * q, dx + i * plane, y0, rows)


cdef double _sum(const floating* run, Py_ssize_t n) noexcept nogil:
    """The sum of run[0..n) in double: SUM_LANES interleaved partial sums (vectorised, a fixed order) added
    pairwise, then the tail in order (one chain of dependent adds cost 15% of a pointwise backward)."""
    cdef double lanes[SUM_LANES]
    cdef double total = 0
    cdef Py_ssize_t t, k, tail = n - n % SUM_LANES
    for k in range(SUM_LANES):
        lanes[k] = 0
    for t in range(n // SUM_LANES):
        for k in range(SUM_LANES):
            lanes[k] += run[t * SUM_LANES + k]
    for k in range(SUM_LANES // 2):
        lanes[k] += lanes[k + SUM_LANES // 2]
    for k in range(SUM_LANES // 4):
        lanes[k] += lanes[k + SUM_LANES // 4]
    total = lanes[0] + lanes[1]
    for t in range(tail, n):
        total += run[t]
    return total


cdef inline Py_ssize_t _slice(Py_ssize_t total, Py_ssize_t most) noexcept nogil:
    """Size of the slices of `total` into an even number of equal parts of at most `most` (the last may be
    shorter): two threads get the same share, and the cut depends on the shape alone."""
    cdef Py_ssize_t slices = 2 * ((total + 2 * most - 1) // (2 * most))
    return max(1, (total + slices - 1) // slices)


cdef void _forward_batch(const Conv* g, const floating* x, const floating* wb, floating* out, floating* cols,
                         floating* product, int n_threads, bint relu) noexcept nogil:
    """out (N, F, P) = wb @ the columns of the whole batch (their ReLU when relu; pooled when g.pool), in slices of
    filters (see 9.).

    cols: (K+1, N*P), product: (F, N*P), both rows ld apart.
    """
    cdef Py_ssize_t n, image, s, f0, fs, size = _slice(g.F, F_SLICE), slices = (g.F + size - 1) // size
    cdef Py_ssize_t plane = g.C * g.H * g.W, out_plane = _out_plane(g)
    for n in prange(g.N, schedule="static", num_threads=n_threads):
        _im2col_band(g, x + n * plane, cols + n * g.P, 0, g.OH)
    for s in prange(slices, schedule="dynamic", num_threads=n_threads):
        f0 = s * size
        fs = min(size, g.F - f0)
        gemm(False, False, <int>fs, <int>(g.N * g.P), <int>(g.K + 1), <floating>1, wb + f0 * (g.K + 1),
             <int>(g.K + 1), cols, <int>g.ld, <floating>0, product + f0 * g.ld, <int>g.ld)
        for image in range(g.N):
            _emit(g, product + f0 * g.ld + image * g.P, out + (image * g.F + f0) * out_plane, fs, 0, g.OH, relu)


cdef void _backward_batch(const Conv* g, const floating* x, const floating* wb, const floating* dout,
                          const floating* out, floating* dx, floating* dwb, floating* cols, floating* staged,
                          int n_threads) noexcept nogil:
    """dwb (F, K+1) = [dw | db] and dx (N, C, H, W), unless NULL, over the whole batch as one item (see 9.).

    dout (N, F, P) is staged into staged (F, N*P), through the mask out > 0 unless out is NULL;
    cols (K+1, N*P) holds the columns, then the data gradient's; both rows ld apart.
    """
    cdef Py_ssize_t n, s, f0, fs, k0, ks, size = _slice(g.F, F_SLICE), slices = (g.F + size - 1) // size
    cdef Py_ssize_t rows = _slice(g.K, K_SLICE), row_slices = (g.K + rows - 1) // rows, q = g.N * g.P
    cdef Py_ssize_t plane = g.C * g.H * g.W, planes = g.F * g.P
    for n in prange(g.N, schedule="static", num_threads=n_threads):
        _stage(dout + n * planes, out + n * planes if out != NULL else NULL, staged + n * g.P, g.F, g.P, g.P, g.ld)
        _im2col_band(g, x + n * plane, cols + n * g.P, 0, g.OH)
    for s in prange(slices, schedule="dynamic", num_threads=n_threads):
        f0 = s * size
        fs = min(size, g.F - f0)
        gemm(False, True, <int>fs, <int>(g.K + 1), <int>q, <floating>1, staged + f0 * g.ld, <int>g.ld, cols,
             <int>g.ld, <floating>0, dwb + f0 * (g.K + 1), <int>(g.K + 1))
    if dx == NULL:
        return
    for s in prange(row_slices, schedule="dynamic", num_threads=n_threads):
        k0 = s * rows
        ks = min(rows, g.K - k0)
        gemm(True, False, <int>ks, <int>q, <int>g.F, <floating>1, wb + k0, <int>(g.K + 1), staged, <int>g.ld,
             <floating>0, cols + k0 * g.ld, <int>g.ld)
    for n in prange(g.N, schedule="static", num_threads=n_threads):
        memset(dx + n * plane, 0, plane * sizeof(floating))
        _col2im_band(g, cols + n * g.P, dx + n * plane, 0, g.OH)


cdef void _backward_bands(const Conv* g, const floating* x, const floating* wb, const floating* dout,
                          const floating* out, floating* dx, floating* group_sums, floating* work, Py_ssize_t size,
                          Py_ssize_t groups, bint staging, int n_threads) noexcept nogil:
    """group_sums (groups, K+1, F): the [dw | db].T of `groups` runs of consecutive items (image, band), and dx
    (N, C, H, W) unless NULL: even runs first, then odd ones (see 10.). work: a buffer of `size` per thread."""
    cdef Py_ssize_t bands = _bands(g), items = g.N * bands, sums = g.F * (g.K + 1), plane = g.C * g.H * g.W
    cdef Py_ssize_t n, phase, group, item
    cdef floating* cols
    if dx != NULL:
        for n in prange(g.N, schedule="static", num_threads=n_threads):
            memset(dx + n * plane, 0, plane * sizeof(floating))
    for phase in range(2):
        for group in prange(phase, groups, 2, schedule="dynamic", num_threads=n_threads):
            cols = work + threadid() * size
            memset(group_sums + group * sums, 0, sums * sizeof(floating))
            for item in range(group * items // groups, (group + 1) * items // groups):
                _backward_item(g, x, wb, dout, out, dx, group_sums + group * sums, cols,
                               cols + _band_columns(g) if staging else NULL, item // bands, 1, (item % bands) * g.rows)


cdef void _add_groups(floating* dwb, floating* parts, Py_ssize_t groups, Py_ssize_t rows,
                      Py_ssize_t F) noexcept nogil:
    """dwb (F, rows) = the sum of the `groups` (rows, F) parts (consecutive), added in order, transposed.

    The parts are added into the first along their rows (contiguous, vectorised), then it is transposed
    in TILE x TILE squares, so that both sides stay in cache whatever F (large weights included).
    """
    cdef Py_ssize_t group, i, f, row_square, filter_square, size = rows * F
    if groups == 0:
        memset(dwb, 0, size * sizeof(floating))
        return
    for group in range(1, groups):
        for i in range(size):
            parts[i] += parts[group * size + i]
    for row_square in range((rows + TILE - 1) // TILE):
        for filter_square in range((F + TILE - 1) // TILE):
            for f in range(filter_square * TILE, min(filter_square * TILE + TILE, F)):
                for i in range(row_square * TILE, min(row_square * TILE + TILE, rows)):
                    dwb[f * rows + i] = parts[i * F + f]


def work_item(tuple x_shape, int filters, int kh, int kw, int sh, int sw, int ph, int pw, Py_ssize_t itemsize):
    """(R, B) of a convolution of x (N, C, H, W) with `filters` filters: output rows and images per work item."""
    cdef Conv g = _conv(x_shape, (filters, x_shape[1] * kh * kw + 1), kh, kw, sh, sw, ph, pw, itemsize)
    return g.rows, g.images


def conv_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] wb, floating[:, :, ::1] out,
                 int kh, int kw, int sh, int sw, int ph, int pw, int n_threads, bint relu=False, bint pool=False):
    """out (N, F, OH*OW) = wb @ columns(x[n]) for each image of x (N, C, H, W); wb is (F, K+1).

    relu: out is the ReLU of that (conv2d_relu's forward). pool: out (N, F, OH//2 * OW//2) is the
    maxima of that's 2x2 windows at stride 2 (see 11.); not for a pointwise convolution.
    """
    cdef Conv g = _conv(tuple(x.shape)[:4], tuple(wb.shape)[:2], kh, kw, sh, sw, ph, pw, sizeof(floating))
    if pool and g.pointwise:
        raise ValueError("pooling is fused into convolutions with im2col only, not a pointwise one "
                         "(1x1 kernel, stride 1, no padding)")
    g.pool = pool
    expect_shape(tuple(out.shape)[:3], (x.shape[0], g.F, _out_plane(&g)), "out")
    check_threads(n_threads)
    cdef Py_ssize_t chunks = (g.N + g.images - 1) // g.images, per_image, item
    if not g.batch and 0 < chunks * _bands(&g) < n_threads:  # thinner bands, one item per thread at least (see 3.)
        per_image = (n_threads + chunks - 1) // chunks
        g.rows = (g.OH + per_image - 1) // per_image
        g.rows = g.gemm_rows = min(g.OH, g.rows + g.rows % 2)
    if pool and g.rows < g.OH and g.rows % 2:  # items of two bands: whole pooling windows (see 11.)
        g.rows = min(g.OH, 2 * g.rows)
        g.ld = _row_stride(g.rows * g.OW, sizeof(floating))
    cdef Py_ssize_t bands = _bands(&g)
    cdef Py_ssize_t size = _band_columns(&g) + (g.F * g.ld if g.images > 1 or g.batch or pool else 0)
    cdef floating[::1] work = workspace(np.asarray(out).dtype, size if g.batch else n_threads * size)
    cdef floating* buffer
    if g.N == 0 or g.F == 0 or _out_plane(&g) == 0:
        return
    if g.batch:
        with nogil:
            _forward_batch(&g, &x[0, 0, 0, 0], &wb[0, 0], &out[0, 0, 0], &work[0], &work[0] + _band_columns(&g),
                           n_threads, relu)
        return
    for item in prange(chunks * bands, nogil=True, schedule="dynamic", num_threads=n_threads):
        buffer = &work[0] + threadid() * size
        _forward_item(&g, &x[0, 0, 0, 0], &wb[0, 0], &out[0, 0, 0], buffer, buffer + _band_columns(&g),
                      (item // bands) * g.images, (item % bands) * g.rows, relu)


def conv_backward(const floating[:, :, :, ::1] x, const floating[:, ::1] wb, const floating[:, :, ::1] dout,
                  floating[:, :, :, ::1] dx, floating[:, ::1] dwb, int kh, int kw, int sh, int sw, int ph, int pw,
                  int n_threads, const floating[:, :, ::1] out=None):
    """Overwrite dx (N, C, H, W) (unless None: not computed) and dwb = [dw | db] (F, K+1) with the gradients.

    x (N, C, H, W) and wb (F, K+1) are the forward inputs, dout (N, F, OH*OW) the output
    gradient; out: the output of a forward with relu (conv2d_relu's backward), None without.
    """
    cdef Conv g = _conv(tuple(x.shape)[:4], tuple(wb.shape)[:2], kh, kw, sh, sw, ph, pw, sizeof(floating), True)
    expect_shape(tuple(dout.shape)[:3], (x.shape[0], g.F, g.P), "dout")
    if dx is not None:
        expect_shape(tuple(dx.shape)[:4], tuple(x.shape)[:4], "dx")
    expect_shape(tuple(dwb.shape)[:2], tuple(wb.shape)[:2], "dwb")
    check_threads(n_threads)
    if out is not None:
        expect_shape(tuple(out.shape)[:3], tuple(dout.shape)[:3], "out")
    cdef bint relu = out is not None and out.size > 0, input_grad = dx is not None, staging = relu or not g.pointwise
    cdef Py_ssize_t N = g.N, groups = min(N, GRADIENT_GROUPS), plane = g.C * g.H * g.W
    cdef Py_ssize_t size = _band_columns(&g) + (g.F * g.ld if staging else 0)
    cdef Py_ssize_t sums = g.F * (g.K + 1), bands = _bands(&g), group, n, nb, last, band
    cdef bint split = bands > 1 and 0 < N < GRADIENT_GROUPS  # see 10.
    if split:
        groups = N * bands if N * bands < 4 else min(N * bands, GRADIENT_GROUPS) // 4 * 4
    cdef floating[::1] work = workspace(np.asarray(dwb).dtype, size if g.batch else n_threads * size + groups * sums)
    cdef floating* group_sums
    cdef floating* cols
    if g.batch and N > 0:
        with nogil:
            _backward_batch(&g, &x[0, 0, 0, 0], &wb[0, 0], &dout[0, 0, 0], &out[0, 0, 0] if relu else NULL,
                            &dx[0, 0, 0, 0] if input_grad else NULL, &dwb[0, 0], &work[0],
                            &work[0] + _band_columns(&g), n_threads)
        return
    group_sums = &work[0] + n_threads * size
    if split:
        with nogil:
            _backward_bands(&g, &x[0, 0, 0, 0], &wb[0, 0], &dout[0, 0, 0], &out[0, 0, 0] if relu else NULL,
                            &dx[0, 0, 0, 0] if input_grad else NULL, group_sums, &work[0], size, groups, staging,
                            n_threads)
    else:
        for group in prange(groups, nogil=True, schedule="dynamic", num_threads=n_threads):
            cols = &work[0] + threadid() * size
            memset(group_sums + group * sums, 0, sums * sizeof(floating))
            n, last = group * N // groups, (group + 1) * N // groups
            while n < last:
                nb = min(g.images, last - n)
                if input_grad and not g.pointwise:
                    memset(&dx[n, 0, 0, 0], 0, nb * plane * sizeof(floating))
                for band in range(bands):
                    _backward_item(&g, &x[0, 0, 0, 0], &wb[0, 0], &dout[0, 0, 0], &out[0, 0, 0] if relu else NULL,
                                   &dx[0, 0, 0, 0] if input_grad else NULL, group_sums + group * sums, cols,
                                   cols + _band_columns(&g) if staging else NULL, n, nb, band * g.rows)
                n = n + nb
    _add_groups(&dwb[0, 0], group_sums, groups, g.K + 1, g.F)  # serial: one pass over the weights per group
