/* A register-blocked float32 GEMM for the Winograd stage's many small products.

   OpenBLAS copies ("packs") both operands of every call into its own layout before it
   multiplies. The Winograd GEMMs are thin (K = 24 to 256 channels, or 128 tiles for
   the weight gradient) and there are 36 of them per block of tiles, so the copies cost
   several times the arithmetic. This kernel reads the operands where they lie: each
   6 x 16 block of C stays in twelve AVX registers while one row of B (two vectors) and
   six broadcast values of A go by per step of K. B's 16-column panel is reused by every
   block of rows, so it stays in L1; A's rows come from L2.

   Results are summed in a fixed order (K ascending), whatever the thread count. */
#ifndef FASTCONV_GEMM_KERNEL_H
#define FASTCONV_GEMM_KERNEL_H
#include <stddef.h>
#ifdef __AVX2__
#include <immintrin.h>
#define FASTCONV_GEMM_KERNEL 1

/* C[r, 8v + l] (+)= sum over p of A(r, p) B[p, 8v + l], for r < rows, v < vectors, with
   A(r, p) = a[r * a_row + p * a_step]. Inlined with constant rows and vectors, so that
   the unused accumulators vanish; named variables rather than an array, which GCC kept
   in memory. */
#define FASTCONV_GEMM_STEP(r)                                                             \
    if (rows > r) {                                                                       \
        x = _mm256_broadcast_ss(a + r * a_row + p * a_step);                             \
        acc##r##0 = _mm256_fmadd_ps(x, row0, acc##r##0);                                 \
        if (vectors > 1)                                                                  \
            acc##r##1 = _mm256_fmadd_ps(x, row1, acc##r##1);                             \
    }
#define FASTCONV_GEMM_STORE(r, v)                                                         \
    if (rows > r && vectors > v) {                                                        \
        float *out = c + r * ldc + 8 * v;                                                 \
        _mm256_storeu_ps(out, accumulate ? _mm256_add_ps(_mm256_loadu_ps(out), acc##r##v) \
                                         : acc##r##v);                                    \
    }

static inline __attribute__((always_inline)) void fastconv_gemm_block(
        const int rows, const int vectors, ptrdiff_t k, const float *a, ptrdiff_t a_row,
        ptrdiff_t a_step, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
        int accumulate) {
    __m256 acc00 = _mm256_setzero_ps(), acc01 = acc00, acc10 = acc00, acc11 = acc00;
    __m256 acc20 = acc00, acc21 = acc00, acc30 = acc00, acc31 = acc00;
    __m256 acc40 = acc00, acc41 = acc00, acc50 = acc00, acc51 = acc00;
    __m256 row0, row1 = acc00, x;
    ptrdiff_t p;
    for (p = 0; p < k; p++) {
        row0 = _mm256_loadu_ps(b + p * ldb);
        if (vectors > 1)
            row1 = _mm256_loadu_ps(b + p * ldb + 8);
        FASTCONV_GEMM_STEP(0) FASTCONV_GEMM_STEP(1) FASTCONV_GEMM_STEP(2)
        FASTCONV_GEMM_STEP(3) FASTCONV_GEMM_STEP(4) FASTCONV_GEMM_STEP(5)
    }
    FASTCONV_GEMM_STORE(0, 0) FASTCONV_GEMM_STORE(0, 1) FASTCONV_GEMM_STORE(1, 0)
    FASTCONV_GEMM_STORE(1, 1) FASTCONV_GEMM_STORE(2, 0) FASTCONV_GEMM_STORE(2, 1)
    FASTCONV_GEMM_STORE(3, 0) FASTCONV_GEMM_STORE(3, 1) FASTCONV_GEMM_STORE(4, 0)
    FASTCONV_GEMM_STORE(4, 1) FASTCONV_GEMM_STORE(5, 0) FASTCONV_GEMM_STORE(5, 1)
}
#undef FASTCONV_GEMM_STEP
#undef FASTCONV_GEMM_STORE

#define FASTCONV_GEMM_ROWS(rows, vectors)                                                 \
    case rows:                                                                            \
        fastconv_gemm_block(rows, vectors, k, a, a_row, a_step, b, ldb, c, ldc, accumulate); \
        break;

/* fastconv_gemm_block for rows from 1 to 6 known only at run time. */
static inline void fastconv_gemm_rows(int rows, const int vectors, ptrdiff_t k, const float *a,
                                      ptrdiff_t a_row, ptrdiff_t a_step, const float *b,
                                      ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate) {
    if (vectors == 2) {
        switch (rows) {
            FASTCONV_GEMM_ROWS(6, 2) FASTCONV_GEMM_ROWS(5, 2) FASTCONV_GEMM_ROWS(4, 2)
            FASTCONV_GEMM_ROWS(3, 2) FASTCONV_GEMM_ROWS(2, 2) FASTCONV_GEMM_ROWS(1, 2)
        }
    } else {
        switch (rows) {
            FASTCONV_GEMM_ROWS(6, 1) FASTCONV_GEMM_ROWS(5, 1) FASTCONV_GEMM_ROWS(4, 1)
            FASTCONV_GEMM_ROWS(3, 1) FASTCONV_GEMM_ROWS(2, 1) FASTCONV_GEMM_ROWS(1, 1)
        }
    }
}
#undef FASTCONV_GEMM_ROWS

/* Fetches rows first to first + count - 1 (those below k) of the 16 columns at b, rows
   pitch apart, into L1. With B walked down its columns (the Winograd weight gradient's Z,
   a row 37 KB after the last for 256 channels, a new page each time), the hardware
   prefetchers do not follow, and each panel's first block of rows waited on L3 row by
   row; fetched while the panel before is multiplied, the rows are there when needed. */
static inline void fastconv_prefetch_rows(const float *b, ptrdiff_t pitch, ptrdiff_t first,
                                          ptrdiff_t count, ptrdiff_t k) {
    ptrdiff_t p;
    for (p = first; p < first + count && p < k; p++) {
        _mm_prefetch((const char *)(b + p * pitch), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + p * pitch + 15), _MM_HINT_T0);
    }
}

/* C (m x n) = A B, or C += A B with accumulate: A(r, p) = a[r * a_row + p * a_step]
   (m x k; a_step = 1 for a row-major A, a_row = 1 for a transposed one), C row-major with
   row pitch ldc, n a multiple of 8. B (k x n) is row-major with row pitch ldb, or with
   ldb = 0 stored in panels: the columns in blocks of 16 (the last block 8 wide when n is
   not a multiple of 16), each block row-major and contiguous, so that a block's rows do
   not land in the same few cache sets as a large power-of-two pitch would place them. */
static inline void fastconv_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                  ptrdiff_t a_row, ptrdiff_t a_step, const float *b,
                                  ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate) {
    /* Rows of the next panel each block of rows fetches: all of them over the panel. */
    ptrdiff_t blocks = (m + 5) / 6, ahead = blocks ? (k + blocks - 1) / blocks : 0;
    ptrdiff_t i, j;
    for (j = 0; j < n; j += 16) {
        int vectors = n - j >= 16 ? 2 : 1;
        const float *panel = ldb ? b + j : b + j * k;
        for (i = 0; i < m; i += 6) {
            if (ldb && j + 16 < n)
                fastconv_prefetch_rows(panel + 16, ldb, i / 6 * ahead, ahead, k);
            fastconv_gemm_rows(m - i < 6 ? (int)(m - i) : 6, vectors, k, a + i * a_row, a_row,
                               a_step, panel, ldb ? ldb : 8 * vectors, c + i * ldc + j, ldc,
                               accumulate);
        }
    }
}
#else
#define FASTCONV_GEMM_KERNEL 0
static inline void fastconv_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                  ptrdiff_t a_row, ptrdiff_t a_step, const float *b,
                                  ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate) {
    /* Never called: without AVX2 _winograd.pyx calls BLAS. */
}
#endif
#endif
