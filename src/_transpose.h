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

/* interleaved[8 * k + l] = planes[l * plane_stride + k] for k, l < 8: eight pixels of
   eight channel planes into eight pixel vectors. */
static inline void fastconv_interleave_8x8(const float *planes, ptrdiff_t plane_stride,
                                           float *interleaved) {
#ifdef __AVX2__
    __m256 r0 = _mm256_loadu_ps(planes), r1 = _mm256_loadu_ps(planes + plane_stride);
    __m256 r2 = _mm256_loadu_ps(planes + 2 * plane_stride);
    __m256 r3 = _mm256_loadu_ps(planes + 3 * plane_stride);
    __m256 r4 = _mm256_loadu_ps(planes + 4 * plane_stride);
    __m256 r5 = _mm256_loadu_ps(planes + 5 * plane_stride);
    __m256 r6 = _mm256_loadu_ps(planes + 6 * plane_stride);
    __m256 r7 = _mm256_loadu_ps(planes + 7 * plane_stride);
    /* Pairs of channels per pixel (pixels k and k + 4 in the two 128-bit halves),
       then quadruples, then the halves swapped across registers. */
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(interleaved, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(interleaved + 8, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(interleaved + 16, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(interleaved + 24, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(interleaved + 32, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(interleaved + 40, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(interleaved + 48, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(interleaved + 56, _mm256_permute2f128_ps(s3, s7, 0x31));
#else
    ptrdiff_t k, l;
    for (k = 0; k < 8; k++)
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
