# cython: boundscheck=False, wraparound=False, cdivision=True
"""Winograd convolution F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray 2016): 3x3 kernels, stride 1.

With F(m x m, 3x3) (m = tile = 2 or 4) the output is cut into m x m tiles; tile t reads
an (m + 2) x (m + 2) input tile d whose top-left corner sits m pixels further per tile
(zero outside the image), and

    y = A^T [ (G g G^T) * (B^T d B) ] A

gives it from the 3x3 kernel g with (m + 2)^2 multiplications instead of 9 m^2: 16
instead of 36 for F(2x2), 36 instead of 144 for F(4x4). Summed over input channels, the
elementwise products become one GEMM per transform point p:
M[p] (tiles, C_out) = V[p] (tiles, C_in) @ U[p] (C_in, C_out).

V and M are stored tile by tile, (tiles, points, channels): a tile's transformed values
lie together, and channels are the fastest axis, so the tile transforms work on LANES
channels at once with contiguous loads and stores, which the compiler vectorises (the
planes are first interleaved LANES channels at a time into a zero-padded buffer). The
transposes between this layout and the planes, on the way in and from the 4x4 output
tiles, use AVX2 shuffles in float32 (_transpose.h, eight channels at a time): value by
value they compiled to scalar inserts and extracts. LANES is the vector width of the ISA
level being compiled (_simd.h): 8 float32 values, 16 with AVX-512. V[p] is then the
(tiles, C_in) matrix with row pitch points * round_up(C_in) starting at point p. Channel
pitches are rounded up to LANES; U's extra columns are zero, so M's are too. (Point-major
storage, one contiguous matrix per point, measured no faster.)

Images go through the GEMMs per_block at a time, their tiles one after the other in the
rows, because one small image has too few tiles for a GEMM to run at full speed.
OpenMP runs over these blocks; each thread owns its images' outputs and its workspace
row and runs its own GEMMs, so results do not depend on the thread count. In float32 with
AVX2 or AVX-512 the GEMMs are _gemm_kernel.h's, which reads V and Z where they lie and the
transformed weights from panels of two vectors' width, instead of BLAS, which copied both operands
on every call: against single-threaded OpenBLAS, per pass at 2 threads on airnet's and
NET-M's layers, forward 1.00-1.30x, input gradient 1.02-1.38x, weight gradient
1.00-1.41x faster, the thin (24-64 channel) layers most. float64 keeps BLAS.

In the forward pass (and so the input gradient) with _gemm_kernel.h, the block's products
are computed and transformed back STRIP tiles at a time, across image boundaries, so that
the output transform reads them from L2 rather than L3: per pass 4-23% faster on airnet's
and NET-M's layers, 4-5% per training step. Each strip reads all the transformed weights
again, so a layer whose transformed weights exceed STRIP_WEIGHT_BYTES (256 -> 256
channels) keeps whole blocks, which measured up to 20% faster there.

F(4x4)'s forward pass can also max-pool (2x2, stride 2) each output tile as it transforms
it back, writing the pooled planes and their switches instead of the output (a 4x4 tile
holds four whole windows, since tiles start at multiples of 4): the output is never
stored, nor read again by a pooling pass.

The input gradient is the same computation run on grad_output, with the 180-degree
rotated, channel-transposed kernel (transform_weight with adjoint=True) and padding
2 - pad. The weight gradient is the adjoint of the forward pass: with grad_output's
tiles through Z = A y A^T, the gradient of U[p] is V[p]^T Z[p] summed over tiles (one
GEMM per point per block, over fixed chunks of the batch), and G^T (that sum) G gives
the kernel's. F(4x4) does 0.56 times F(2x2)'s GEMM work here too, and its transforms
write 2.25 instead of 4 values per pixel; at batch 128 on two threads it takes about
the forward pass's time (F(2x2) took 1.6-2.3 times as long).

Measured (float32, batch 64, padding 1, one thread, medians of 7 interleaved runs on a
shared 2-core machine, so +-10%; milliseconds; im2col / F(2x2) / F(4x4); the weight
gradient columns in a later run):

    layer                  forward           input gradient    weight gradient
    32->64 @ 32x32     43.7  33.3  27.7    37.0  32.3  29.7    50.1  38.8  37.3
    64->128 @ 16x16    43.7  23.5  19.6    34.3  23.4  19.9    46.0  31.5  20.7
    128->256 @ 8x8     34.6  21.3  18.6    33.0  20.6  19.9    40.6  24.8  20.8

The transforms take a third to a half of the Winograd time: F(4x4)'s GEMMs do 0.56
times F(2x2)'s work but its transforms cost more per output, and its GEMMs (K = C_in,
36 of them) are thinner. float32 error, max |error| /
max |float64 reference| on 64..256-channel layers (8x8, 16x16; N(0, 1) input, weight
scaled by 1 / sqrt(9 C_in)): im2col 3-5e-7, F(2x2) 2-5e-7, F(4x4) 4-8e-6 (its
transform constants reach 8 and 1/24); float64: F(2x2) ~1e-15, F(4x4) ~1e-14. The
weight gradient, same measure (batches 2-8, 8x8 to 32x32): im2col 2.5-5e-7, F(2x2)
2-7e-7, F(4x4) 1.5-4e-6; at batch 128 (NET-M's layers) F(2x2) 5-6e-7, F(4x4) 6-7e-6;
float64: F(2x2) 0.5-1.4e-15, F(4x4) 5-10e-15.

Shapes: input (N, C_in, H, W), weight (C_out, C_in, 3, 3), transformed weight
(points, C_in, round_up(C_out)), output (N, C_out, out_h, out_w) with
out_h = H + 2 * pad_h - 2 (the bottom/right padding is whatever out_h / out_w imply);
round_up rounds up to a multiple of LANES. See workspace_size for the scratch buffers.
"""
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t
from libc.string cimport memset
from _common cimport (beats, floating, activate, gemm, GEMM_KERNEL, GEMM_ROWS, LANES, PANEL,
                      sgemm_kernel)

# float32 only, eight channels at a time (HALF); float64 keeps the scalar loops.
cdef extern from "_transpose.h" nogil:
    void interleave_8x4 "fastconv_interleave_8x4"(const float* planes, Py_ssize_t plane_stride,
                                                  float* interleaved, Py_ssize_t pitch)
    void store_tile_4x4 "fastconv_store_tile_4x4"(const float* y, Py_ssize_t pitch,
                                                  const float* shift, bint relu, float* out,
                                                  Py_ssize_t row_pitch, Py_ssize_t plane_size)
    void pool_tile_4x4_f32 "fastconv_pool_tile_4x4"(const float* y, Py_ssize_t pitch,
                                                    const float* shift, bint relu,
                                                    float* pooled, int64_t* switches,
                                                    Py_ssize_t pooled_w, Py_ssize_t pooled_size,
                                                    int64_t corner, Py_ssize_t row_pitch,
                                                    Py_ssize_t rows, Py_ssize_t cols)

cdef enum:
    # Transform points per tile: the 4x4 elements of a transformed F(2x2, 3x3) tile, the
    # 6x6 of an F(4x4, 3x3) one.
    POINTS = 16
    POINTS_4X4 = 36
    # Channels _transpose.h moves at once: LANES is one or two such halves.
    HALF = 8
    # Tiles whose products conv2d_forward transforms back as soon as their GEMMs are done,
    # while the products are still in L2 (two of _gemm_kernel.h's blocks of rows).
    STRIP = 2 * GEMM_ROWS
    # The largest transformed weight for which STRIP pays: each strip reads all of it
    # again, which stays cheap only while it stays in L3 between strips.
    STRIP_WEIGHT_BYTES = 6 << 20


cdef inline bint own_gemm(const floating* data) noexcept nogil:
    """Whether point_gemm takes _gemm_kernel.h (float32 with AVX2) for data of this type
    rather than BLAS, which re-packs both operands on every call. The transformed weights
    are then stored in panels."""
    return floating is float and GEMM_KERNEL


cdef inline void point_gemm(bint trans_a, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                            bint accumulate, floating* c, Py_ssize_t ldc) noexcept nogil:
    """Row-major C (m, n) = op(A) @ B, or C += op(A) @ B with accumulate; n a multiple of
    LANES; ldb = 0 for a B stored in panels (see weight_offset), which only
    _gemm_kernel.h reads."""
    if floating is float:
        if own_gemm(a):
            sgemm_kernel(m, n, k, a, 1 if trans_a else lda, lda if trans_a else 1, b, ldb, c,
                         ldc, accumulate)
            return
    gemm(trans_a, False, <int>m, <int>n, <int>k, 1, a, <int>lda, b, <int>ldb, accumulate, c,
         <int>ldc)


cdef inline Py_ssize_t weight_offset(Py_ssize_t row, Py_ssize_t column, Py_ssize_t rows,
                                     Py_ssize_t pitch, bint panels) noexcept nogil:
    """Where element (row, column) of a transformed weight's (rows, pitch) matrix lies:
    row-major, or with panels in blocks of PANEL columns (the last LANES wide when pitch
    is not a multiple of PANEL), each block row-major and contiguous."""
    cdef Py_ssize_t start = column - column % PANEL
    if not panels:
        return row * pitch + column
    return start * rows + row * min(PANEL, pitch - start) + column - start


cdef inline Py_ssize_t tile_points(Py_ssize_t tile) noexcept nogil:
    return (tile + 2) * (tile + 2)


def transform_points(Py_ssize_t tile):
    """Transform points per tile of F(tile x tile, 3x3)."""
    return tile_points(tile)


cdef inline Py_ssize_t lane_pitch(Py_ssize_t channels) noexcept nogil:
    """channels rounded up to a whole number of LANES: the row pitch of V, U and M."""
    return (channels + LANES - 1) // LANES * LANES


# Whether float32 products use _gemm_kernel.h, and so store transformed weights in panels
# (see weight_offset).
FLOAT32_GEMM_KERNEL = bool(GEMM_KERNEL)


def round_up(Py_ssize_t channels):
    """channels rounded up to a whole number of LANES: the transformed weight's row pitch."""
    return lane_pitch(channels)


def workspace_size(Py_ssize_t in_channels, Py_ssize_t out_channels, Py_ssize_t out_h,
                   Py_ssize_t out_w, Py_ssize_t per_block, Py_ssize_t tile):
    """Elements of the workspace row per thread of conv2d_forward (the interleaved padded
    planes, V and M) and of conv2d_backward_weight (the same, Z in M's place).

    The weight gradient's V and Z have LANES more values per tile than the points need:
    its GEMMs walk down their columns, and a tile pitch that is a multiple of 4 KiB would
    put all the rows in the same few L1 cache sets."""
    cdef Py_ssize_t tiles_h = (out_h + tile - 1) // tile, tiles_w = (out_w + tile - 1) // tile
    cdef Py_ssize_t columns = per_block * tiles_h * tiles_w
    return ((tile * tiles_h + 2) * (tile * tiles_w + 2) * LANES
            + columns * (tile_points(tile) * (lane_pitch(in_channels) + lane_pitch(out_channels))
                         + 2 * LANES))


cdef inline void interleave_planes(const floating* planes, Py_ssize_t count, Py_ssize_t height,
                                   Py_ssize_t width, Py_ssize_t pad_h, Py_ssize_t pad_w,
                                   Py_ssize_t padded_h, Py_ssize_t padded_w,
                                   floating* padded) noexcept nogil:
    """padded[r, c, l] = planes[l, r - pad_h, c - pad_w] for l < count inside the planes, 0
    elsewhere: (padded_h, padded_w, LANES)."""
    cdef Py_ssize_t r, h, w, l, start, half
    cdef Py_ssize_t first = min(pad_w, padded_w), last = min(pad_w + width, padded_w)
    cdef floating* row
    cdef const floating* source
    for r in range(padded_h):
        h = r - pad_h
        row = padded + r * padded_w * LANES
        if h < 0 or h >= height:
            memset(row, 0, padded_w * LANES * sizeof(floating))
            continue
        memset(row, 0, first * LANES * sizeof(floating))
        memset(row + last * LANES, 0, (padded_w - last) * LANES * sizeof(floating))
        # Vector transposes for blocks of 4 pixels of full float32 lane groups (a value per
        # lane compiles to scalar inserts), the last block ending at the row's last pixel,
        # overlapping the one before: odd widths (7, 15, 31) went half through the scalar
        # loops, which are left to rows under 4 pixels and partial groups.
        start = first
        if floating is float:
            if count == LANES and last - first >= 4:
                while start < last:
                    start = min(start, last - 4)
                    for half in range(LANES // HALF):
                        interleave_8x4(planes + (half * HALF * height + h) * width - pad_w
                                       + start, height * width,
                                       row + start * LANES + half * HALF, LANES)
                    start = start + 4
        for l in range(count):
            source = planes + (l * height + h) * width - pad_w
            for w in range(start, last):
                row[w * LANES + l] = source[w]
        for l in range(count, LANES):
            for w in range(first, last):
                row[w * LANES + l] = 0


cdef inline void input_tiles(const floating* image, Py_ssize_t channels, Py_ssize_t height,
                             Py_ssize_t width, Py_ssize_t pad_h, Py_ssize_t pad_w,
                             Py_ssize_t tiles_h, Py_ssize_t tiles_w, floating* padded,
                             floating* tiles, Py_ssize_t row_pitch,
                             Py_ssize_t point_pitch) noexcept nogil:
    """tiles[p * point_pitch + t * row_pitch + c] <- (B^T d B)[p] of tile t of channel c,
    for c up to channels rounded up to LANES (zero past channels)."""
    cdef Py_ssize_t padded_h = 2 * tiles_h + 2, padded_w = 2 * tiles_w + 2
    cdef Py_ssize_t pixel = LANES, line = padded_w * LANES
    cdef Py_ssize_t group, first, th, tw, k, l
    cdef const floating* d
    cdef floating* q
    # Local arrays: the compiler knows they alias nothing, so the lane loops vectorise.
    cdef floating r[4][4][LANES]
    cdef floating v[POINTS][LANES]
    for group in range((channels + LANES - 1) // LANES):
        first = group * LANES
        interleave_planes(image + first * height * width, min(LANES, channels - first), height,
                          width, pad_h, pad_w, padded_h, padded_w, padded)
        for th in range(tiles_h):
            for tw in range(tiles_w):
                d = padded + 2 * th * line + 2 * tw * pixel
                for k in range(4):  # B^T d: column k of the tile
                    for l in range(LANES):
                        r[0][k][l] = d[k * pixel + l] - d[2 * line + k * pixel + l]
                        r[1][k][l] = d[line + k * pixel + l] + d[2 * line + k * pixel + l]
                        r[2][k][l] = d[2 * line + k * pixel + l] - d[line + k * pixel + l]
                        r[3][k][l] = d[line + k * pixel + l] - d[3 * line + k * pixel + l]
                for k in range(4):  # (B^T d) B: row k
                    for l in range(LANES):
                        v[4 * k][l] = r[k][0][l] - r[k][2][l]
                        v[4 * k + 1][l] = r[k][1][l] + r[k][2][l]
                        v[4 * k + 2][l] = r[k][2][l] - r[k][1][l]
                        v[4 * k + 3][l] = r[k][1][l] - r[k][3][l]
                q = tiles + (th * tiles_w + tw) * row_pitch + first
                for k in range(POINTS):
                    for l in range(LANES):
                        q[k * point_pitch + l] = v[k][l]


cdef inline void output_tiles(const floating* products, Py_ssize_t channels,
                              Py_ssize_t first_tile, Py_ssize_t last_tile, Py_ssize_t tiles_w,
                              Py_ssize_t row_pitch, Py_ssize_t point_pitch, const floating* bias,
                              bint relu, Py_ssize_t out_h, Py_ssize_t out_w,
                              floating* image) noexcept nogil:
    """image[c] <- A^T m A (+ bias[c]) of tiles first_tile to last_tile - 1 (row-major over
    the image's tiles, tiles_w to a row), rectified with relu, with m[p] of tile t at
    products[p * point_pitch + (t - first_tile) * row_pitch + c]; the last row and column
    of tiles are cropped to out_h x out_w."""
    cdef Py_ssize_t plane_size = out_h * out_w
    cdef Py_ssize_t group, first, count, t, th, tw, oh, ow, k, l
    cdef const floating* m
    cdef floating* out
    cdef floating shift[LANES]
    cdef floating s[2][4][LANES]
    cdef floating y[4][LANES]
    for group in range((channels + LANES - 1) // LANES):
        first = group * LANES
        count = min(LANES, channels - first)
        for l in range(LANES):
            shift[l] = bias[first + l] if bias != NULL and l < count else 0
        for t in range(first_tile, last_tile):
            th = t // tiles_w
            tw = t % tiles_w
            m = products + (t - first_tile) * row_pitch + first
            for k in range(4):  # A^T m: column k of the tile
                for l in range(LANES):
                    s[0][k][l] = (m[k * point_pitch + l] + m[(4 + k) * point_pitch + l]
                                  + m[(8 + k) * point_pitch + l])
                    s[1][k][l] = (m[(4 + k) * point_pitch + l] - m[(8 + k) * point_pitch + l]
                                  - m[(12 + k) * point_pitch + l])
            for k in range(2):  # (A^T m) A: row k
                for l in range(LANES):
                    y[2 * k][l] = activate(s[k][0][l] + s[k][1][l] + s[k][2][l] + shift[l],
                                           relu)
                    y[2 * k + 1][l] = activate(s[k][1][l] - s[k][2][l] - s[k][3][l]
                                               + shift[l], relu)
            oh = 2 * th
            ow = 2 * tw
            out = image + first * plane_size + oh * out_w + ow
            if count == LANES and ow + 1 < out_w and oh + 1 < out_h:
                for l in range(LANES):
                    out[l * plane_size] = y[0][l]
                    out[l * plane_size + 1] = y[1][l]
                    out[l * plane_size + out_w] = y[2][l]
                    out[l * plane_size + out_w + 1] = y[3][l]
                continue
            for l in range(count):
                out[l * plane_size] = y[0][l]
                if ow + 1 < out_w:
                    out[l * plane_size + 1] = y[1][l]
                if oh + 1 < out_h:
                    out[l * plane_size + out_w] = y[2][l]
                    if ow + 1 < out_w:
                        out[l * plane_size + out_w + 1] = y[3][l]


cdef inline void bt6(const floating* x, Py_ssize_t stride, floating* o,
                     Py_ssize_t out_stride) noexcept nogil:
    """o[i * out_stride + l] = (B^T x)[i] (B^T 6x6) for LANES lanes, x[j] at x[j * stride + l]."""
    cdef Py_ssize_t l
    cdef floating x0, x1, x2, x3, x4, x5
    # Constants of the data's type: Cython writes a bare 4 as 4.0, a double, and float32
    # data would be computed in double, converted both ways.
    cdef floating two = 2, four = 4, five = 5
    for l in range(LANES):
        x0 = x[l]
        x1 = x[stride + l]
        x2 = x[2 * stride + l]
        x3 = x[3 * stride + l]
        x4 = x[4 * stride + l]
        x5 = x[5 * stride + l]
        o[l] = four * x0 - five * x2 + x4
        o[out_stride + l] = x3 + x4 - four * (x1 + x2)
        o[2 * out_stride + l] = four * (x1 - x2) + x4 - x3
        o[3 * out_stride + l] = two * (x3 - x1) + x4 - x2
        o[4 * out_stride + l] = two * (x1 - x3) + x4 - x2
        o[5 * out_stride + l] = four * x1 - five * x3 + x5


cdef inline void at6(const floating* m, Py_ssize_t stride, floating* o,
                     Py_ssize_t out_stride) noexcept nogil:
    """o[i * out_stride + l] = (A^T m)[i] (A^T 4x6) for LANES lanes, m[j] at m[j * stride + l]."""
    cdef Py_ssize_t l
    cdef floating m0, m1, m2, m3, m4, m5
    cdef floating two = 2, four = 4, eight = 8  # of the data's type, as in bt6
    for l in range(LANES):
        m0 = m[l]
        m1 = m[stride + l]
        m2 = m[2 * stride + l]
        m3 = m[3 * stride + l]
        m4 = m[4 * stride + l]
        m5 = m[5 * stride + l]
        o[l] = m0 + m1 + m2 + m3 + m4
        o[out_stride + l] = m1 - m2 + two * (m3 - m4)
        o[2 * out_stride + l] = m1 + m2 + four * (m3 + m4)
        o[3 * out_stride + l] = m1 - m2 + eight * (m3 - m4) + m5


cdef inline void a6(const floating* y, Py_ssize_t stride, floating* o,
                    Py_ssize_t out_stride) noexcept nogil:
    """o[i * out_stride + l] = (A y)[i] (A 6x4, the adjoint of at6) for LANES lanes, y[j] at
    y[j * stride + l]."""
    cdef Py_ssize_t l
    cdef floating y0, y1, y2, y3
    for l in range(LANES):
        y0 = y[l]
        y1 = y[stride + l]
        y2 = y[2 * stride + l]
        y3 = y[3 * stride + l]
        o[l] = y0
        o[out_stride + l] = y0 + y1 + y2 + y3
        o[2 * out_stride + l] = y0 - y1 + y2 - y3
        o[3 * out_stride + l] = y0 + 2 * y1 + 4 * y2 + 8 * y3
        o[4 * out_stride + l] = y0 - 2 * y1 + 4 * y2 - 8 * y3
        o[5 * out_stride + l] = y3

cdef inline void transform_tiles_4x4(const floating* image, Py_ssize_t channels,
                                     Py_ssize_t height, Py_ssize_t width, Py_ssize_t pad_h,
                                     Py_ssize_t pad_w, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
                                     bint gradient, floating* padded, floating* tiles,
                                     Py_ssize_t row_pitch, Py_ssize_t point_pitch) noexcept nogil:
    """The 36-point tiles of F(4x4, 3x3), four pixels apart: B^T d B (B^T 6x6) of the 6x6
    input tiles d, or with gradient=True A y A^T (A 6x4) of the 4x4 tiles y of grad_output
    (unpadded), the adjoint of output_tiles_4x4."""
    cdef Py_ssize_t padded_h = 4 * tiles_h + 2, padded_w = 4 * tiles_w + 2
    cdef Py_ssize_t pixel = LANES, line = padded_w * LANES
    cdef Py_ssize_t group, first, th, tw, k, l
    cdef const floating* d
    cdef floating* q
    cdef floating r[6][6][LANES]
    cdef floating v[POINTS_4X4][LANES]
    for group in range((channels + LANES - 1) // LANES):
        first = group * LANES
        interleave_planes(image + first * height * width, min(LANES, channels - first), height,
                          width, pad_h, pad_w, padded_h, padded_w, padded)
        for th in range(tiles_h):
            for tw in range(tiles_w):
                d = padded + 4 * th * line + 4 * tw * pixel
                if gradient:
                    for k in range(4):
                        a6(d + k * pixel, line, &r[0][k][0], 6 * LANES)
                    for k in range(6):
                        a6(&r[k][0][0], LANES, &v[6 * k][0], LANES)
                else:
                    for k in range(6):
                        bt6(d + k * pixel, line, &r[0][k][0], 6 * LANES)
                    for k in range(6):
                        bt6(&r[k][0][0], LANES, &v[6 * k][0], LANES)
                q = tiles + (th * tiles_w + tw) * row_pitch + first
                for k in range(POINTS_4X4):
                    for l in range(LANES):
                        q[k * point_pitch + l] = v[k][l]


cdef inline void input_tiles_4x4(const floating* image, Py_ssize_t channels,
                                 Py_ssize_t height, Py_ssize_t width, Py_ssize_t pad_h,
                                 Py_ssize_t pad_w, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
                                 floating* padded, floating* tiles, Py_ssize_t row_pitch,
                                 Py_ssize_t point_pitch) noexcept nogil:
    """input_tiles for F(4x4, 3x3): 6x6 tiles four pixels apart, (B^T d B) with B^T 6x6."""
    transform_tiles_4x4(image, channels, height, width, pad_h, pad_w, tiles_h, tiles_w, False,
                        padded, tiles, row_pitch, point_pitch)


cdef inline void gradient_tiles_4x4(const floating* gradient, Py_ssize_t channels,
                                    Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t tiles_h,
                                    Py_ssize_t tiles_w, floating* padded, floating* tiles,
                                    Py_ssize_t row_pitch, Py_ssize_t point_pitch) noexcept nogil:
    """gradient_tiles for F(4x4, 3x3): A y A^T (A 6x4) of 4x4 tiles into 36-point tiles."""
    transform_tiles_4x4(gradient, channels, out_h, out_w, 0, 0, tiles_h, tiles_w, True, padded,
                        tiles, row_pitch, point_pitch)

cdef inline void pool_tile_4x4(const floating* y, const floating* shift, bint relu,
                               Py_ssize_t count, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t out_w,
                               Py_ssize_t pooled_h, Py_ssize_t pooled_w, floating* pooled,
                               int64_t* switches) noexcept nogil:
    """The 2x2 max pools (stride 2) of the 4x4 output tile y + shift (rectified with relu,
    laid out as in output_tiles_4x4) at (oh, ow), for count channels, into the pooled
    planes (pooled_h, pooled_w) and their switches, the flat position in the out_w wide
    output plane: the maxima and positions max_pool2d_2x2_forward (_pool.pyx) finds in
    the stored tile. Windows past the pooled planes (an odd last row or column) are left."""
    cdef Py_ssize_t pooled_size = pooled_h * pooled_w
    cdef Py_ssize_t i, j, l, at, corner, top_offset, lower_offset
    cdef const floating* window
    cdef floating top, lower, right
    for i in range(min(2, pooled_h - oh // 2)):
        for j in range(min(2, pooled_w - ow // 2)):
            at = (oh // 2 + i) * pooled_w + ow // 2 + j
            corner = (oh + 2 * i) * out_w + ow + 2 * j
            window = y + (8 * i + 2 * j) * LANES
            for l in range(count):
                top, top_offset = activate(window[l] + shift[l], relu), 0
                right = activate(window[LANES + l] + shift[l], relu)
                if beats(right, top):
                    top, top_offset = right, 1
                lower, lower_offset = activate(window[4 * LANES + l] + shift[l], relu), out_w
                right = activate(window[5 * LANES + l] + shift[l], relu)
                if beats(right, lower):
                    lower, lower_offset = right, out_w + 1
                if beats(lower, top):
                    top, top_offset = lower, lower_offset
                pooled[l * pooled_size + at] = top
                switches[l * pooled_size + at] = corner + top_offset


cdef inline void output_tiles_4x4(const floating* products, Py_ssize_t channels,
                                  Py_ssize_t first_tile, Py_ssize_t last_tile,
                                  Py_ssize_t tiles_w, Py_ssize_t row_pitch,
                                  Py_ssize_t point_pitch, const floating* bias, bint relu,
                                  Py_ssize_t out_h, Py_ssize_t out_w, floating* image,
                                  floating* pooled, int64_t* switches) noexcept nogil:
    """output_tiles for F(4x4, 3x3): A^T m A (A^T 4x6) of 36-point tiles into 4x4 tiles;
    or, with pooled (and switches) not NULL instead of image, into their 2x2 max pools
    (pool_tile_4x4), planes of (out_h // 2, out_w // 2)."""
    cdef Py_ssize_t plane_size = out_h * out_w
    cdef Py_ssize_t pooled_size = (out_h // 2) * (out_w // 2)
    cdef Py_ssize_t group, first, count, t, th, tw, oh, ow, i, j, k, l, at, half
    cdef const floating* m
    cdef floating* out
    cdef floating shift[LANES]
    cdef floating mm[POINTS_4X4][LANES]
    cdef floating s[4][6][LANES]
    cdef floating y[4][4][LANES]
    # Tile by tile, all channels of a tile at once: M's rows are read once, whole cache
    # lines at a time (a lane group covers half a line), not once per group.
    for t in range(first_tile, last_tile):
        th = t // tiles_w
        tw = t % tiles_w
        for group in range((channels + LANES - 1) // LANES):
            first = group * LANES
            count = min(LANES, channels - first)
            for l in range(LANES):
                shift[l] = bias[first + l] if bias != NULL and l < count else 0
            m = products + (t - first_tile) * row_pitch + first
            for k in range(POINTS_4X4):
                for l in range(LANES):
                    mm[k][l] = m[k * point_pitch + l]
            for k in range(6):
                at6(&mm[k][0], 6 * LANES, &s[0][k][0], 6 * LANES)
            for k in range(4):
                at6(&s[k][0][0], LANES, &y[k][0][0], LANES)
            oh = 4 * th
            ow = 4 * tw
            if pooled != NULL:
                if oh // 2 >= out_h // 2 or ow // 2 >= out_w // 2:
                    continue  # an odd output's last tile row or column, all of it cut off
                # Whole float32 lane groups by vector selects and transposes; the scalar
                # loop fills partial groups.
                if floating is float:
                    if count == LANES:
                        for half in range(LANES // HALF):
                            l = half * HALF
                            at = (first + l) * pooled_size + oh // 2 * (out_w // 2) + ow // 2
                            pool_tile_4x4_f32(&y[0][0][l], LANES, shift + l, relu, pooled + at,
                                              switches + at, out_w // 2, pooled_size,
                                              oh * out_w + ow, out_w,
                                              min(2, out_h // 2 - oh // 2),
                                              min(2, out_w // 2 - ow // 2))
                        continue
                pool_tile_4x4(&y[0][0][0], shift, relu, count, oh, ow, out_w, out_h // 2,
                              out_w // 2, pooled + first * pooled_size,
                              switches + first * pooled_size)
                continue
            # Whole float32 tiles of a lane group by vector transposes; the scalar
            # loop crops the last row and column of tiles and fills partial groups.
            if floating is float:
                if count == LANES and oh + 4 <= out_h and ow + 4 <= out_w:
                    for half in range(LANES // HALF):
                        l = half * HALF
                        store_tile_4x4(&y[0][0][l], LANES, shift + l, relu,
                                       image + (first + l) * plane_size + oh * out_w + ow,
                                       out_w, plane_size)
                    continue
            for l in range(count):
                out = image + (first + l) * plane_size
                for i in range(min(4, out_h - oh)):
                    for j in range(min(4, out_w - ow)):
                        out[(oh + i) * out_w + ow + j] = activate(y[i][j][l] + shift[l],
                                                                  relu)


cdef inline void gradient_tiles(const floating* gradient, Py_ssize_t channels,
                                Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t tiles_h,
                                Py_ssize_t tiles_w, floating* padded, floating* tiles,
                                Py_ssize_t row_pitch, Py_ssize_t point_pitch) noexcept nogil:
    """tiles[p * point_pitch + t * row_pitch + c] <- (A y A^T)[p] of the 2x2 tile t of
    gradient channel c (zero past the cropped output and past channels): the adjoint of
    output_tiles, which the weight gradient multiplies with the input tiles."""
    cdef Py_ssize_t pixel = LANES, line = 2 * tiles_w * LANES
    cdef Py_ssize_t group, first, th, tw, k, l
    cdef const floating* y
    cdef floating* q
    cdef floating r[4][2][LANES]
    cdef floating z[POINTS][LANES]
    for group in range((channels + LANES - 1) // LANES):
        first = group * LANES
        interleave_planes(gradient + first * out_h * out_w, min(LANES, channels - first), out_h,
                          out_w, 0, 0, 2 * tiles_h, 2 * tiles_w, padded)
        for th in range(tiles_h):
            for tw in range(tiles_w):
                y = padded + 2 * th * line + 2 * tw * pixel
                for k in range(2):  # A y: column k of the tile
                    for l in range(LANES):
                        r[0][k][l] = y[k * pixel + l]
                        r[1][k][l] = y[k * pixel + l] + y[line + k * pixel + l]
                        r[2][k][l] = y[k * pixel + l] - y[line + k * pixel + l]
                        r[3][k][l] = -y[line + k * pixel + l]
                for k in range(4):  # (A y) A^T: row k
                    for l in range(LANES):
                        z[4 * k][l] = r[k][0][l]
                        z[4 * k + 1][l] = r[k][0][l] + r[k][1][l]
                        z[4 * k + 2][l] = r[k][0][l] - r[k][1][l]
                        z[4 * k + 3][l] = -r[k][1][l]
                q = tiles + (th * tiles_w + tw) * row_pitch + first
                for k in range(POINTS):
                    for l in range(LANES):
                        q[k * point_pitch + l] = z[k][l]


cdef double SIXTH = 1.0 / 6


cdef inline void g_lanes(const double* x, Py_ssize_t stride, double* o, Py_ssize_t out_stride,
                         Py_ssize_t side) noexcept nogil:
    """o[i * out_stride + l] = (G x)[i] for LANES lanes, x[j] at x[j * stride + l], with G
    of F(2x2, 3x3) (side 4, G 4x3) or F(4x4, 3x3) (side 6, G 6x3)."""
    cdef Py_ssize_t l
    cdef double x0, x1, x2
    for l in range(LANES):
        x0 = x[l]
        x1 = x[stride + l]
        x2 = x[2 * stride + l]
        # Multiplications by the reciprocals: vector divisions would take most of the time.
        if side == 6:
            o[l] = 0.25 * x0
            o[out_stride + l] = -SIXTH * (x0 + x1 + x2)
            o[2 * out_stride + l] = -SIXTH * (x0 - x1 + x2)
            o[3 * out_stride + l] = SIXTH * (0.25 * x0 + 0.5 * x1 + x2)
            o[4 * out_stride + l] = SIXTH * (0.25 * x0 - 0.5 * x1 + x2)
            o[5 * out_stride + l] = x2
        else:
            o[l] = x0
            o[out_stride + l] = 0.5 * (x0 + x1 + x2)
            o[2 * out_stride + l] = 0.5 * (x0 - x1 + x2)
            o[3 * out_stride + l] = x2


cdef inline void kernel_transform(const floating* g, Py_ssize_t lane_step, Py_ssize_t count,
                                  Py_ssize_t row_step, Py_ssize_t column_step, Py_ssize_t side,
                                  floating* u, Py_ssize_t point_pitch) noexcept nogil:
    """u[p * point_pitch + l] <- (G g_l G^T)[p] for LANES kernels g_l (zero for l >= count),
    with G of F(2x2, 3x3) (side 4) or F(4x4, 3x3) (side 6), in double; g_l[i, j] is
    g[l * lane_step + i * row_step + j * column_step]. Eight kernels at once, so that
    the arithmetic and the stores are vectors."""
    cdef double kernels[3][3][LANES]
    cdef double columns[6][3][LANES]
    cdef double v[POINTS_4X4][LANES]
    cdef Py_ssize_t i, j, l, p
    for i in range(3):
        for j in range(3):
            for l in range(LANES):
                kernels[i][j][l] = (g[l * lane_step + i * row_step + j * column_step]
                                    if l < count else 0)
    for j in range(3):  # G g: column j
        g_lanes(&kernels[0][j][0], 3 * LANES, &columns[0][j][0], 3 * LANES, side)
    for i in range(side):  # (G g) G^T: row i
        g_lanes(&columns[i][0][0], LANES, &v[side * i][0], LANES, side)
    for p in range(side * side):
        for l in range(LANES):
            u[p * point_pitch + l] = <floating>v[p][l]


cdef inline void gt4(const double* x, Py_ssize_t stride, double* o,
                     Py_ssize_t out_stride) noexcept nogil:
    """o[i * out_stride] = (G^T x)[i] (G^T 3x4, of F(2x2, 3x3)), x[j] at x[j * stride]."""
    o[0] = x[0] + 0.5 * (x[stride] + x[2 * stride])
    o[out_stride] = 0.5 * (x[stride] - x[2 * stride])
    o[2 * out_stride] = 0.5 * (x[stride] + x[2 * stride]) + x[3 * stride]


cdef inline void gt6(const double* x, Py_ssize_t stride, double* o,
                     Py_ssize_t out_stride) noexcept nogil:
    """o[i * out_stride] = (G^T x)[i] (G^T 3x6, of F(4x4, 3x3)), x[j] at x[j * stride]."""
    cdef double x0 = x[0], x1 = x[stride], x2 = x[2 * stride], x3 = x[3 * stride]
    cdef double x4 = x[4 * stride], x5 = x[5 * stride]
    o[0] = x0 / 4 - (x1 + x2) / 6 + (x3 + x4) / 24
    o[out_stride] = (x2 - x1) / 6 + (x3 - x4) / 12
    o[2 * out_stride] = (x3 + x4 - x1 - x2) / 6 + x5


cdef inline void inverse_kernel_transform(const double* u, Py_ssize_t point_pitch,
                                          Py_ssize_t side, floating* g) noexcept nogil:
    """g (3x3, row-major) += G^T u G for u[p * point_pitch] (side x side, row-major), with
    G of F(2x2, 3x3) (side 4) or F(4x4, 3x3) (side 6): the adjoint of kernel_transform."""
    cdef double rows[3][6]
    cdef double row[3]
    cdef Py_ssize_t i, j
    for j in range(side):  # G^T u: column j
        if side == 6:
            gt6(u + j * point_pitch, 6 * point_pitch, &rows[0][j], 6)
        else:
            gt4(u + j * point_pitch, 4 * point_pitch, &rows[0][j], 6)
    for i in range(3):  # (G^T u) G: row i
        if side == 6:
            gt6(&rows[i][0], 1, row, 1)
        else:
            gt4(&rows[i][0], 1, row, 1)
        for j in range(3):
            g[3 * i + j] += <floating>row[j]


def transform_weight(const floating[:, :, :, ::1] weight, floating[:, :, ::1] transformed,
                     bint adjoint, Py_ssize_t tile, int n_threads):
    """transformed <- G g G^T of every 3x3 kernel g of weight (C_out, C_in, 3, 3), with
    F(tile x tile, 3x3)'s G (tile 2 or 4).

    adjoint=False: transformed (points, C_in, round_up(C_out)) from weight[o, i], for the
    forward pass. adjoint=True: transformed (points, C_out, round_up(C_in)) from
    weight[o, i] rotated by 180 degrees, the kernel whose convolution with grad_output is
    the input gradient. The columns past C_out (C_in) are zero. Each point's matrix is
    row-major, or in float32 with AVX2 stored in panels (see weight_offset), as
    conv2d_forward reads it.
    """
    cdef Py_ssize_t rows = transformed.shape[1], pitch = transformed.shape[2]
    cdef Py_ssize_t columns = weight.shape[1] if adjoint else weight.shape[0]
    cdef Py_ssize_t point_pitch = rows * pitch
    cdef Py_ssize_t row, group, column
    cdef floating* u = &transformed[0, 0, 0]
    cdef bint panels = own_gemm(u)
    # Consecutive columns: kernels weight[row, column + l] (adjoint) or weight[column + l, row].
    cdef Py_ssize_t lane_step = 9 if adjoint else weight.shape[1] * 9
    cdef const floating* kernel
    if pitch != lane_pitch(columns):
        raise ValueError("transform_weight: transformed's last axis must be round_up(columns)")
    with nogil:
        # A thread owns rows of the transformed matrices. Both layouts keep a lane group
        # of a row contiguous; the lanes past the columns come out zero.
        for row in prange(rows, num_threads=n_threads, schedule="static"):
            for group in range(pitch // LANES):
                column = group * LANES
                # The rotated kernel is the original read backwards from its last tap.
                kernel = &weight[row, column, 2, 2] if adjoint else &weight[column, row, 0, 0]
                kernel_transform(kernel, lane_step, min(LANES, columns - column),
                                 -3 if adjoint else 3, -1 if adjoint else 1, tile + 2,
                                 u + weight_offset(row, column, rows, pitch, panels), point_pitch)


def output_transform(const floating[:, :, ::1] products, const floating[::1] bias, bint relu,
                     floating[:, :, ::1] image, Py_ssize_t tile):
    """image (C, out_h, out_w) <- A^T m A + bias (bias may be None), rectified with relu,
    for the tiles m of products (tiles, points, round_up(C)), row-major over the
    ceil(out_h / tile) x ceil(out_w / tile) tiles, with F(tile x tile, 3x3)'s A (tile 2
    or 4): conv2d_forward's last step for one image, callable alone so that tests can
    feed it values no GEMM produces, such as -0.0."""
    cdef Py_ssize_t channels = image.shape[0], out_h = image.shape[1], out_w = image.shape[2]
    cdef Py_ssize_t tiles_h = (out_h + tile - 1) // tile, tiles_w = (out_w + tile - 1) // tile
    cdef Py_ssize_t row_pitch = products.shape[1] * products.shape[2]
    cdef const floating* bias_data = &bias[0] if bias is not None else NULL
    with nogil:
        if tile == 4:
            output_tiles_4x4(&products[0, 0, 0], channels, 0, tiles_h * tiles_w, tiles_w, row_pitch,
                             products.shape[2], bias_data, relu, out_h, out_w, &image[0, 0, 0],
                             NULL, NULL)
        else:
            output_tiles(&products[0, 0, 0], channels, 0, tiles_h * tiles_w, tiles_w, row_pitch,
                         products.shape[2], bias_data, relu, out_h, out_w, &image[0, 0, 0])


def conv2d_forward(const floating[:, :, :, ::1] input, const floating[:, :, ::1] transformed_weight,
                   const floating[::1] bias, bint relu, floating[:, :, :, ::1] output,
                   Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t tile, Py_ssize_t per_block,
                   floating[:, ::1] workspace, int n_threads,
                   floating[:, :, :, ::1] pooled=None, int64_t[:, :, :, ::1] switches=None):
    """output <- conv2d(input, weight) + bias (bias may be None), rectified with relu, by
    F(tile x tile, 3x3) (tile 2 or 4), with weight given as transform_weight's transform
    for that tile; workspace rows of workspace_size(...) elements. Bias and ReLU go onto
    each tile as it is transformed back.

    With pooled and switches (tile 4 only; output None), the output's 2x2 max pools
    (stride 2) and their switches instead, as max_pool2d_2x2_forward gives them: the
    output is never stored. The output is then (H + 2 pad_h - 2) x (W + 2 pad_w - 2)
    and must be at least 2 x 2, with at least one image."""
    cdef Py_ssize_t batch = input.shape[0], in_channels = input.shape[1]
    cdef Py_ssize_t height = input.shape[2], width = input.shape[3]
    cdef bint pooling = pooled is not None
    if pooling and (tile != 4 or output is not None or switches is None
                    or any(switches.shape[k] != pooled.shape[k] for k in range(4))
                    or batch == 0 or pooled.shape[2] == 0 or pooled.shape[3] == 0):
        raise ValueError("conv2d_forward: pooling takes tile 4, no output, switches shaped "
                         "as pooled, at least one image and a 2 x 2 output")
    cdef Py_ssize_t out_channels = pooled.shape[1] if pooling else output.shape[1]
    cdef Py_ssize_t out_h = height + 2 * pad_h - 2 if pooling else output.shape[2]
    cdef Py_ssize_t out_w = width + 2 * pad_w - 2 if pooling else output.shape[3]
    cdef Py_ssize_t image_size = out_channels * out_h * out_w
    cdef Py_ssize_t pooled_image = out_channels * (out_h // 2) * (out_w // 2)
    cdef floating* output_data = NULL if pooling else &output[0, 0, 0, 0]
    cdef floating* pooled_data = &pooled[0, 0, 0, 0] if pooling else NULL
    cdef int64_t* switch_data = &switches[0, 0, 0, 0] if pooling else NULL
    cdef Py_ssize_t in_pitch = lane_pitch(in_channels), out_pitch = transformed_weight.shape[2]
    cdef Py_ssize_t points = tile_points(tile)
    cdef Py_ssize_t tiles_h = (out_h + tile - 1) // tile, tiles_w = (out_w + tile - 1) // tile
    cdef Py_ssize_t tiles = tiles_h * tiles_w
    cdef Py_ssize_t padded_size = (tile * tiles_h + 2) * (tile * tiles_w + 2) * LANES
    cdef Py_ssize_t n_blocks = (batch + per_block - 1) // per_block
    cdef const floating* bias_data = &bias[0] if bias is not None else NULL
    cdef Py_ssize_t block, first, count, columns, b, p, start, rows, t, stop
    # Strips need _gemm_kernel.h: BLAS would copy the weights on every call.
    cdef Py_ssize_t strip = per_block * tiles
    if (own_gemm(&transformed_weight[0, 0, 0])
            and points * in_pitch * out_pitch * sizeof(floating) <= STRIP_WEIGHT_BYTES):
        strip = STRIP
    cdef floating* padded
    cdef floating* transformed_input
    cdef floating* products
    with nogil:
        for block in prange(n_blocks, num_threads=n_threads, schedule="static"):
            first = block * per_block
            count = min(per_block, batch - first)
            columns = count * tiles
            padded = &workspace[threadid(), 0]
            transformed_input = padded + padded_size
            products = transformed_input + columns * points * in_pitch
            for b in range(count):
                if tile == 4:
                    input_tiles_4x4(&input[first + b, 0, 0, 0], in_channels, height, width,
                                    pad_h, pad_w, tiles_h, tiles_w, padded,
                                    transformed_input + b * tiles * points * in_pitch,
                                    points * in_pitch, in_pitch)
                else:
                    input_tiles(&input[first + b, 0, 0, 0], in_channels, height, width, pad_h,
                                pad_w, tiles_h, tiles_w, padded,
                                transformed_input + b * tiles * points * in_pitch,
                                points * in_pitch, in_pitch)
            start = 0
            while start < columns:
                rows = min(strip, columns - start)
                for p in range(points):
                    point_gemm(False, rows, out_pitch, in_channels,
                               transformed_input + start * points * in_pitch + p * in_pitch,
                               points * in_pitch, &transformed_weight[p, 0, 0],
                               0 if own_gemm(products) else out_pitch, False,
                               products + p * out_pitch, points * out_pitch)
                t = start
                while t < start + rows:
                    b = t // tiles
                    stop = min((b + 1) * tiles, start + rows)
                    if tile == 4:
                        output_tiles_4x4(products + (t - start) * points * out_pitch,
                                         out_channels, t - b * tiles, stop - b * tiles, tiles_w,
                                         points * out_pitch, out_pitch, bias_data, relu, out_h,
                                         out_w, output_data + (first + b) * image_size,
                                         pooled_data + (first + b) * pooled_image if pooling
                                         else NULL,
                                         switch_data + (first + b) * pooled_image if pooling
                                         else NULL)
                    else:
                        output_tiles(products + (t - start) * points * out_pitch, out_channels,
                                     t - b * tiles, stop - b * tiles, tiles_w,
                                     points * out_pitch, out_pitch, bias_data, relu, out_h,
                                     out_w, output_data + (first + b) * image_size)
                    t = stop
                start = start + rows


def conv2d_backward_weight(const floating[:, :, :, ::1] grad_output,
                           const floating[:, :, :, ::1] input,
                           floating[:, :, :, ::1] transformed_partials, Py_ssize_t pad_h,
                           Py_ssize_t pad_w, Py_ssize_t tile, Py_ssize_t per_block,
                           floating[:, ::1] workspace, int n_threads):
    """transformed_partials[:, k] <- the transformed weight gradient of chunk k of the
    batch, by F(tile x tile, 3x3) (tile 2 or 4); every chunk must hold an image.

    The gradient of G g G^T at point p is the sum over tiles of V[p]^T Z[p], with Z the
    grad_output tiles through gradient_tiles: one GEMM per point per block of images,
    summed into partials shaped (C_in, n_chunks, points, round_up(C_out)), one per fixed
    chunk of consecutive images, so the sums do not depend on the thread count. Input
    channel first, so that inverse_weight, which turns them into the weight gradient,
    reads each channel's partials as one contiguous run.
    """
    cdef Py_ssize_t batch = input.shape[0], in_channels = input.shape[1]
    cdef Py_ssize_t height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = grad_output.shape[1], out_h = grad_output.shape[2]
    cdef Py_ssize_t out_w = grad_output.shape[3]
    cdef Py_ssize_t in_pitch = lane_pitch(in_channels), out_pitch = lane_pitch(out_channels)
    cdef Py_ssize_t points = tile_points(tile)
    cdef Py_ssize_t tiles_h = (out_h + tile - 1) // tile, tiles_w = (out_w + tile - 1) // tile
    cdef Py_ssize_t tiles = tiles_h * tiles_w
    cdef Py_ssize_t padded_size = (tile * tiles_h + 2) * (tile * tiles_w + 2) * LANES
    cdef Py_ssize_t n_chunks = transformed_partials.shape[1]
    cdef Py_ssize_t partial_pitch = n_chunks * points * out_pitch
    cdef Py_ssize_t chunk, start, first, last, count, columns, b, p
    # Tile pitches of V and Z: see workspace_size.
    cdef Py_ssize_t v_pitch = points * in_pitch + LANES, z_pitch = points * out_pitch + LANES
    cdef floating* padded
    cdef floating* transformed_input
    cdef floating* transformed_gradient
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            padded = &workspace[threadid(), 0]
            transformed_input = padded + padded_size
            start = chunk * batch // n_chunks
            first = start
            last = (chunk + 1) * batch // n_chunks
            while first < last:
                count = min(per_block, last - first)
                columns = count * tiles
                transformed_gradient = transformed_input + per_block * tiles * v_pitch
                for b in range(count):
                    if tile == 4:
                        input_tiles_4x4(&input[first + b, 0, 0, 0], in_channels, height, width,
                                        pad_h, pad_w, tiles_h, tiles_w, padded,
                                        transformed_input + b * tiles * v_pitch,
                                        v_pitch, in_pitch)
                        gradient_tiles_4x4(&grad_output[first + b, 0, 0, 0], out_channels,
                                           out_h, out_w, tiles_h, tiles_w, padded,
                                           transformed_gradient + b * tiles * z_pitch,
                                           z_pitch, out_pitch)
                    else:
                        input_tiles(&input[first + b, 0, 0, 0], in_channels, height, width,
                                    pad_h, pad_w, tiles_h, tiles_w, padded,
                                    transformed_input + b * tiles * v_pitch,
                                    v_pitch, in_pitch)
                        gradient_tiles(&grad_output[first + b, 0, 0, 0], out_channels, out_h,
                                       out_w, tiles_h, tiles_w, padded,
                                       transformed_gradient + b * tiles * z_pitch,
                                       z_pitch, out_pitch)
                for p in range(points):
                    point_gemm(True, in_channels, out_pitch, columns,
                               transformed_input + p * in_pitch, v_pitch,
                               transformed_gradient + p * out_pitch, z_pitch,
                               first != start, &transformed_partials[0, chunk, p, 0],
                               partial_pitch)
                first = first + count


def inverse_weight(const floating[:, :, :, ::1] transformed_partials,
                   floating[:, :, :, ::1] grad_weight, double[:, ::1] sums, int n_threads):
    """grad_weight (C_out, C_in, 3, 3) += G^T u G, with u the partials (C_in, n_chunks,
    points, round_up(C_out)) summed over chunks in double, in a fixed order whatever the
    thread count, and G that of F(2x2, 3x3) (16 points) or F(4x4, 3x3) (36).

    sums: a workspace row of points * round_up(C_out) doubles per thread, where each input
    channel's partials are summed along contiguous rows before the strided inversion.
    """
    cdef Py_ssize_t n_chunks = transformed_partials.shape[1]
    cdef Py_ssize_t points = transformed_partials.shape[2], pitch = transformed_partials.shape[3]
    cdef Py_ssize_t out_channels = grad_weight.shape[0], in_channels = grad_weight.shape[1]
    cdef Py_ssize_t i, o, p, k
    cdef double* u
    cdef const floating* row
    with nogil:
        for i in prange(in_channels, num_threads=n_threads, schedule="static"):
            u = &sums[threadid(), 0]
            for p in range(points):
                row = &transformed_partials[i, 0, p, 0]
                for o in range(out_channels):
                    u[p * pitch + o] = row[o]
            for k in range(1, n_chunks):
                for p in range(points):
                    row = &transformed_partials[i, k, p, 0]
                    for o in range(out_channels):
                        u[p * pitch + o] += row[o]
            # A constant side, so that the compiler unrolls the inlined transform.
            if points == POINTS_4X4:
                for o in range(out_channels):
                    inverse_kernel_transform(u + o, pitch, 6, &grad_weight[o, i, 0, 0])
            else:
                for o in range(out_channels):
                    inverse_kernel_transform(u + o, pitch, 4, &grad_weight[o, i, 0, 0])
