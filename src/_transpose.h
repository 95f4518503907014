/* Transposes between NCHW planes and _winograd.pyx's interleaved layout (8 float32
   channels per vector, channels fastest). Written one value per lane, they compile to
   scalar inserts and extracts; AVX2 moves whole vectors through registers instead.
   Without AVX2 the plain loops compute the same bits: data only moves, and the ReLU is
   rectify's formula from _common.pxd. */
#ifndef FASTCONV_TRANSPOSE_H
#define FASTCONV_TRANSPOSE_H
#include <stddef.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

/* interleaved[8 * k + l] = planes[l * plane_stride + k] for k < 4, l < 8: four pixels of
   eight channel planes into four pixel vectors. Four rather than eight pixels, so that
   rows of 7 or 15 pixels are covered by overlapping blocks. */
static inline void fastconv_interleave_8x4(const float *planes, ptrdiff_t plane_stride,
                                           float *interleaved) {
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
    _mm256_storeu_ps(interleaved + 8, _mm256_shuffle_ps(t0, t2, 0xEE));
    _mm256_storeu_ps(interleaved + 16, _mm256_shuffle_ps(t1, t3, 0x44));
    _mm256_storeu_ps(interleaved + 24, _mm256_shuffle_ps(t1, t3, 0xEE));
#else
    ptrdiff_t k, l;
    for (k = 0; k < 4; k++)
        for (l = 0; l < 8; l++)
            interleaved[8 * k + l] = planes[l * plane_stride + k];
#endif
}

/* out[l * plane_size + i * row_pitch + j] = x, or rectify(x) with relu, for
   x = y[8 * (4 * i + j) + l] + shift[l], i, j < 4, l < 8: a 4x4 output tile of eight
   channels, interleaved, into eight planes. */
static inline void fastconv_store_tile_4x4(const float *y, const float *shift, int relu,
                                           float *out, ptrdiff_t row_pitch,
                                           ptrdiff_t plane_size) {
#ifdef __AVX2__
    const __m256 bias = _mm256_loadu_ps(shift), zero = _mm256_setzero_ps();
    __m256 c[4];
    ptrdiff_t i, j;
    for (i = 0; i < 4; i++) {
        for (j = 0; j < 4; j++) {
            c[j] = _mm256_add_ps(_mm256_loadu_ps(y + 8 * (4 * i + j)), bias);
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
                x = y[8 * (4 * i + j) + l] + shift[l];
                out[l * plane_size + i * row_pitch + j] = relu && x <= 0 ? 0 : x;
            }
#endif
}

#endif
