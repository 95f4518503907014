/* Transposes between NCHW planes and _winograd.pyx's interleaved layout (LANES float32
   channels per pixel, channels fastest, pitch = LANES apart), eight channels at a time:
   the 16-lane levels call them for each half of a lane group. Written one value per
   lane, they compile to scalar inserts and extracts; AVX2 moves whole vectors through
   registers instead. Without AVX2 the plain loops compute the same bits: data only
   moves, and the ReLU is rectify's formula from _common.pxd. */
#ifndef FASTCONV_TRANSPOSE_H
#define FASTCONV_TRANSPOSE_H
#include <stddef.h>
#include <stdint.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

/* interleaved[pitch * k + l] = planes[l * plane_stride + k] for k < 4, l < 8: four pixels
   of eight channel planes into four pixels' lanes. Four rather than eight pixels, so that
   rows of 7 or 15 pixels are covered by overlapping blocks. */
static inline void fastconv_interleave_8x4(const float *planes, ptrdiff_t plane_stride,
                                           float *interleaved, ptrdiff_t pitch) {
#ifdef __AVX2__
    /* Channel l in the low half of register l % 4, channel l + 4 in its high half. */
    __m256 r[4], t0, t1, t2, t3;
    int l;
    for (l = 0; l < 4; l++) {
        __m128 low = _mm_loadu_ps(planes + l * plane_stride);
        r[l] = _mm256_insertf128_ps(_mm256_castps128_ps256(low),
                                    _mm_loadu_ps(planes + (l + 4) * plane_stride), 1);
    }
    /* Pairs of channels per pixel, then quadruples: pixel k's eight channels. */
    t0 = _mm256_unpacklo_ps(r[0], r[1]);
    t1 = _mm256_unpackhi_ps(r[0], r[1]);
    t2 = _mm256_unpacklo_ps(r[2], r[3]);
    t3 = _mm256_unpackhi_ps(r[2], r[3]);
    _mm256_storeu_ps(interleaved, _mm256_shuffle_ps(t0, t2, 0x44));
    _mm256_storeu_ps(interleaved + pitch, _mm256_shuffle_ps(t0, t2, 0xEE));
    _mm256_storeu_ps(interleaved + 2 * pitch, _mm256_shuffle_ps(t1, t3, 0x44));
    _mm256_storeu_ps(interleaved + 3 * pitch, _mm256_shuffle_ps(t1, t3, 0xEE));
#else
    ptrdiff_t k, l;
    for (k = 0; k < 4; k++)
        for (l = 0; l < 8; l++)
            interleaved[pitch * k + l] = planes[l * plane_stride + k];
#endif
}

/* out[l * plane_size + i * row_pitch + j] = x, or rectify(x) with relu, for
   x = y[pitch * (4 * i + j) + l] + shift[l], i, j < 4, l < 8: a 4x4 output tile of eight
   channels, interleaved, into eight planes. */
static inline void fastconv_store_tile_4x4(const float *y, ptrdiff_t pitch, const float *shift,
                                           int relu, float *out, ptrdiff_t row_pitch,
                                           ptrdiff_t plane_size) {
#ifdef __AVX2__
    const __m256 bias = _mm256_loadu_ps(shift), zero = _mm256_setzero_ps();
    __m256 c[4];
    ptrdiff_t i, j;
    for (i = 0; i < 4; i++) {
        for (j = 0; j < 4; j++) {
            c[j] = _mm256_add_ps(_mm256_loadu_ps(y + pitch * (4 * i + j)), bias);
            /* rectify: x <= 0 (false for NaN, true for -0.0) clears the bits to +0.0. */
            if (relu)
                c[j] = _mm256_andnot_ps(_mm256_cmp_ps(c[j], zero, _CMP_LE_OQ), c[j]);
        }
        /* Channels l and l + 4 of the row end up in the two halves of register l. */
        __m256 t0 = _mm256_unpacklo_ps(c[0], c[1]), t1 = _mm256_unpackhi_ps(c[0], c[1]);
        __m256 t2 = _mm256_unpacklo_ps(c[2], c[3]), t3 = _mm256_unpackhi_ps(c[2], c[3]);
        __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                       _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
        float *row = out + i * row_pitch;
        for (j = 0; j < 4; j++) {
            _mm_storeu_ps(row + j * plane_size, _mm256_castps256_ps128(u[j]));
            _mm_storeu_ps(row + (j + 4) * plane_size, _mm256_extractf128_ps(u[j], 1));
        }
    }
#else
    ptrdiff_t i, j, l;
    float x;
    for (l = 0; l < 8; l++)
        for (i = 0; i < 4; i++)
            for (j = 0; j < 4; j++) {
                x = y[pitch * (4 * i + j) + l] + shift[l];
                out[l * plane_size + i * row_pitch + j] = relu && x <= 0 ? 0 : x;
            }
#endif
}

#ifdef __AVX2__
/* Lanes where challenger takes best's place in a max pooling window: _common.pxd's beats,
   best is not NaN and not best >= challenger (so a NaN challenger wins). */
static inline __m256 fastconv_beats(__m256 challenger, __m256 best) {
    return _mm256_andnot_ps(_mm256_cmp_ps(best, challenger, _CMP_GE_OQ),
                            _mm256_cmp_ps(best, best, _CMP_EQ_OQ));
}
#endif

/* The 2x2 max pools (stride 2) of a whole 4x4 output tile of eight channels, x = y[pitch
   * (4 i + j) + l] + shift[l] (rectified with relu) as fastconv_store_tile_4x4 takes it:
   window (p, q) of channel l into pooled[l * pooled_size + p * pooled_w + q] and the flat
   position of its maximum in the output plane, corner + (2 p + i) row_pitch + 2 q + j for
   the chosen (i, j), into switches at the same place; chosen as _pool.pyx's
   max_pool_2x2_run chooses (top pair, bottom pair, then the two winners). Only windows
   p < rows, q < cols (1 or 2: an odd output's last tiles) are stored. row_pitch + 1 must
   fit an int. */
static inline void fastconv_pool_tile_4x4(const float *y, ptrdiff_t pitch, const float *shift,
                                          int relu, float *pooled, int64_t *switches,
                                          ptrdiff_t pooled_w, ptrdiff_t pooled_size,
                                          int64_t corner, ptrdiff_t row_pitch, ptrdiff_t rows,
                                          ptrdiff_t cols) {
#ifdef __AVX2__
    const __m256 bias = _mm256_loadu_ps(shift), zero = _mm256_setzero_ps();
    const __m128i first = _mm_set1_epi64x(corner);
    __m256 value[4], x[4], top, lower, m;
    __m256i offset[4], top_offset, lower_offset;
    int w, k, start, r, q, h;
    for (w = 0; w < 4; w++) {
        /* Window w = 2 p + q: its pixels in row-major order, and their offsets. */
        start = (int)(2 * (w / 2) * row_pitch + 2 * (w % 2));
        for (k = 0; k < 4; k++) {
            x[k] = _mm256_add_ps(_mm256_loadu_ps(y + pitch * (4 * (2 * (w / 2) + k / 2)
                                                              + 2 * (w % 2) + k % 2)), bias);
            if (relu)
                x[k] = _mm256_andnot_ps(_mm256_cmp_ps(x[k], zero, _CMP_LE_OQ), x[k]);
        }
        m = fastconv_beats(x[1], x[0]);
        top = _mm256_blendv_ps(x[0], x[1], m);
        top_offset = _mm256_blendv_epi8(_mm256_set1_epi32(start), _mm256_set1_epi32(start + 1),
                                        _mm256_castps_si256(m));
        m = fastconv_beats(x[3], x[2]);
        lower = _mm256_blendv_ps(x[2], x[3], m);
        lower_offset = _mm256_blendv_epi8(_mm256_set1_epi32(start + (int)row_pitch),
                                          _mm256_set1_epi32(start + (int)row_pitch + 1),
                                          _mm256_castps_si256(m));
        m = fastconv_beats(lower, top);
        value[w] = _mm256_blendv_ps(top, lower, m);
        offset[w] = _mm256_blendv_epi8(top_offset, lower_offset, _mm256_castps_si256(m));
    }
    /* Per pooled row r, the (q = 0, q = 1) pairs of channels 4 h + 2 t + {0, 1} in the
       low and high 64 bits of half h of pairs[r][t]. */
    __m256 pairs[2][2] = {{_mm256_unpacklo_ps(value[0], value[1]),
                           _mm256_unpackhi_ps(value[0], value[1])},
                          {_mm256_unpacklo_ps(value[2], value[3]),
                           _mm256_unpackhi_ps(value[2], value[3])}};
    __m256i offset_pairs[2][2] = {{_mm256_unpacklo_epi32(offset[0], offset[1]),
                                   _mm256_unpackhi_epi32(offset[0], offset[1])},
                                  {_mm256_unpacklo_epi32(offset[2], offset[3]),
                                   _mm256_unpackhi_epi32(offset[2], offset[3])}};
    for (r = 0; r < rows; r++)
        for (q = 0; q < 2; q++)
            for (h = 0; h < 2; h++) {
                __m128 v = h ? _mm256_extractf128_ps(pairs[r][q], 1)
                             : _mm256_castps256_ps128(pairs[r][q]);
                __m128i o = h ? _mm256_extracti128_si256(offset_pairs[r][q], 1)
                              : _mm256_castsi256_si128(offset_pairs[r][q]);
                __m128i low = _mm_add_epi64(_mm_cvtepi32_epi64(o), first);
                __m128i high = _mm_add_epi64(_mm_cvtepi32_epi64(_mm_unpackhi_epi64(o, o)),
                                             first);
                ptrdiff_t at = (4 * h + 2 * q) * pooled_size + r * pooled_w;
                if (cols == 2) {
                    _mm_storel_pi((__m64 *)(pooled + at), v);
                    _mm_storeh_pi((__m64 *)(pooled + at + pooled_size), v);
                    _mm_storeu_si128((__m128i *)(switches + at), low);
                    _mm_storeu_si128((__m128i *)(switches + at + pooled_size), high);
                } else {
                    _mm_store_ss(pooled + at, v);
                    _mm_store_ss(pooled + at + pooled_size, _mm_movehl_ps(v, v));
                    _mm_storel_epi64((__m128i *)(switches + at), low);
                    _mm_storel_epi64((__m128i *)(switches + at + pooled_size), high);
                }
            }
#else
    ptrdiff_t p, q, l, k, chosen;
    float x[4], best;
    for (p = 0; p < rows; p++)
        for (q = 0; q < cols; q++)
            for (l = 0; l < 8; l++) {
                for (k = 0; k < 4; k++) {
                    x[k] = y[pitch * (4 * (2 * p + k / 2) + 2 * q + k % 2) + l] + shift[l];
                    x[k] = relu && x[k] <= 0 ? 0 : x[k];
                }
                /* Pairs, then the pairs' winners: (best, chosen) as in max_pool_2x2_run. */
                k = x[0] == x[0] && !(x[0] >= x[1]);
                best = x[k];
                chosen = k;
                k = 2 + (x[2] == x[2] && !(x[2] >= x[3]));
                if (best == best && !(best >= x[k])) {
                    best = x[k];
                    chosen = k;
                }
                pooled[l * pooled_size + p * pooled_w + q] = best;
                switches[l * pooled_size + p * pooled_w + q] =
                    corner + (2 * p + chosen / 2) * row_pitch + 2 * q + chosen % 2;
            }
#endif
}

#endif
