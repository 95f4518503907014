/* A register-blocked float32 GEMM for the Winograd stage's many small products.

   OpenBLAS copies ("packs") both operands of every call into its own layout before it
   multiplies. The Winograd GEMMs are thin (K = 24 to 256 channels, or 128 tiles for
   the weight gradient) and there are 36 of them per block of tiles, so the copies cost
   several times the arithmetic. This kernel reads the operands where they lie: each
   ROWS x PANEL block of C (two vectors a row) stays in registers while one row of B (two
   vectors) and ROWS broadcast values of A go by per step of K. B's panel is reused by
   every block of rows, so it stays in L1; A's rows come from L2.

   Written once over _simd.h's vectors and compiled per ISA level: 6 x 16 in AVX2's 16
   registers, 12 x 32 in AVX-512's 32, whose 24 accumulators hide the FMA latency of two
   units. Results are summed in a fixed order (K ascending), whatever the thread count. */
#ifndef FASTCONV_GEMM_KERNEL_H
#define FASTCONV_GEMM_KERNEL_H
#include <stddef.h>
#include "_simd.h"

#if FASTCONV_LANES == 8
#define FASTCONV_GEMM_ROWS 6
#else
#define FASTCONV_GEMM_ROWS 12
#endif

#if defined(__GNUC__) && defined(__AVX2__) && defined(__FMA__)
#define FASTCONV_GEMM_KERNEL 1

/* Accumulator r of vector v, for r < 12: named variables rather than an array, which GCC
   kept in memory. Inlined with constant rows and vectors, the unused ones vanish. */
#define FASTCONV_GEMM_EACH_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define FASTCONV_GEMM_DECLARE(r)                                                          \
    fastconv_vector acc##r##_0 = zero, acc##r##_1 = zero;                                 \
    const float *a##r = a_rows && rows > r ? a + a_rows[r] : a;
/* C[r, :] (+)= sum over p of A(r, p) B[p, :], A(r, p) = a[r * a_row + p * a_step] or
   a[a_rows[r] + p]: the scalar times a vector broadcasts it, and the sum contracts into
   a fused multiply-add. */
#define FASTCONV_GEMM_STEP(r)                                                             \
    if (rows > r) {                                                                       \
        x = a_rows ? a##r[p] : a[r * a_row + p * a_step];                                 \
        acc##r##_0 += x * row0;                                                           \
        if (vectors > 1)                                                                  \
            acc##r##_1 += x * row1;                                                       \
    }
#define FASTCONV_GEMM_STORE(r)                                                            \
    if (rows > r) {                                                                       \
        float *out = c + r * ldc;                                                         \
        fastconv_store(out, accumulate ? fastconv_load(out) + acc##r##_0 : acc##r##_0);   \
        if (vectors > 1)                                                                  \
            fastconv_store(out + FASTCONV_LANES, accumulate                               \
                           ? fastconv_load(out + FASTCONV_LANES) + acc##r##_1 : acc##r##_1); \
    }

/* A's row r is at a + r * a_row, its values a_step apart, or with a_rows, contiguous from
   a + a_rows[r]; B's row p is at b + p * ldb, or with b_rows at b + b_rows[p]. The
   callers pass a constant NULL for the offsets they do not use, which folds the choices
   away. */
static inline __attribute__((always_inline)) void fastconv_gemm_block(
        const int rows, const int vectors, ptrdiff_t k, const float *a, const ptrdiff_t *a_rows,
        ptrdiff_t a_row, ptrdiff_t a_step, const float *b, ptrdiff_t ldb,
        const ptrdiff_t *b_rows, float *c, ptrdiff_t ldc, int accumulate) {
    const fastconv_vector zero = {0};
    fastconv_vector row0, row1 = zero;
    float x;
    ptrdiff_t p;
    FASTCONV_GEMM_EACH_ROW(FASTCONV_GEMM_DECLARE)
    for (p = 0; p < k; p++) {
        const float *row = b_rows ? b + b_rows[p] : b + p * ldb;
        row0 = fastconv_load(row);
        if (vectors > 1)
            row1 = fastconv_load(row + FASTCONV_LANES);
        FASTCONV_GEMM_EACH_ROW(FASTCONV_GEMM_STEP)
    }
    FASTCONV_GEMM_EACH_ROW(FASTCONV_GEMM_STORE)
}
#undef FASTCONV_GEMM_DECLARE
#undef FASTCONV_GEMM_STEP
#undef FASTCONV_GEMM_STORE

#define FASTCONV_GEMM_CASE(r)                                                             \
    case r + 1:                                                                           \
        if (r < FASTCONV_GEMM_ROWS) {                                                     \
            if (vectors == 2)                                                             \
                fastconv_gemm_block(r + 1, 2, k, a, a_rows, a_row, a_step, b, ldb,        \
                                    b_rows, c, ldc, accumulate);                          \
            else                                                                          \
                fastconv_gemm_block(r + 1, 1, k, a, a_rows, a_row, a_step, b, ldb,        \
                                    b_rows, c, ldc, accumulate);                          \
        }                                                                                 \
        break;

/* fastconv_gemm_block for rows from 1 to ROWS and 1 or 2 vectors known only at run time. */
static inline __attribute__((always_inline)) void fastconv_gemm_rows(
        int rows, int vectors, ptrdiff_t k, const float *a, const ptrdiff_t *a_rows,
        ptrdiff_t a_row, ptrdiff_t a_step, const float *b, ptrdiff_t ldb,
        const ptrdiff_t *b_rows, float *c, ptrdiff_t ldc, int accumulate) {
    switch (rows) {
        FASTCONV_GEMM_EACH_ROW(FASTCONV_GEMM_CASE)
    }
}
#undef FASTCONV_GEMM_CASE
#undef FASTCONV_GEMM_EACH_ROW

/* Fetches rows first to first + count - 1 (those below k) of the panel at b, rows pitch
   apart, into L1. With B walked down its columns (the Winograd weight gradient's Z, a
   row 37 KB after the last for 256 channels, a new page each time), the hardware
   prefetchers do not follow, and each panel's first block of rows waited on L3 row by
   row; fetched while the panel before is multiplied, the rows are there when needed. */
static inline void fastconv_prefetch_rows(const float *b, ptrdiff_t pitch, ptrdiff_t first,
                                          ptrdiff_t count, ptrdiff_t k) {
    ptrdiff_t p, line;
    for (p = first; p < first + count && p < k; p++) {
        /* Each 64-byte line of the row, and its last, where a row does not start on one. */
        for (line = 0; line < FASTCONV_PANEL; line += 16)
            __builtin_prefetch(b + p * pitch + line, 0, 3);
        __builtin_prefetch(b + p * pitch + FASTCONV_PANEL - 1, 0, 3);
    }
}

/* C (m x n) = A B, or C += A B with accumulate: A(r, p) = a[r * a_row + p * a_step]
   (m x k; a_step = 1 for a row-major A, a_row = 1 for a transposed one), C row-major with
   row pitch ldc, n a multiple of LANES. B (k x n) is row-major with row pitch ldb, or
   with ldb = 0 stored in panels: the columns in blocks of PANEL (the last block LANES
   wide when n is not a multiple of PANEL), each block row-major and contiguous, so that
   a block's rows do not land in the same few cache sets as a large power-of-two pitch
   would place them. */
static inline void fastconv_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                  ptrdiff_t a_row, ptrdiff_t a_step, const float *b,
                                  ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate) {
    /* Rows of the next panel each block of rows fetches: all of them over the panel. */
    ptrdiff_t blocks = (m + FASTCONV_GEMM_ROWS - 1) / FASTCONV_GEMM_ROWS;
    ptrdiff_t ahead = blocks ? (k + blocks - 1) / blocks : 0;
    ptrdiff_t i, j;
    for (j = 0; j < n; j += FASTCONV_PANEL) {
        int vectors = n - j >= FASTCONV_PANEL ? 2 : 1;
        const float *panel = ldb ? b + j : b + j * k;
        for (i = 0; i < m; i += FASTCONV_GEMM_ROWS) {
            if (ldb && j + FASTCONV_PANEL < n)
                fastconv_prefetch_rows(panel + FASTCONV_PANEL, ldb,
                                       i / FASTCONV_GEMM_ROWS * ahead, ahead, k);
            fastconv_gemm_rows(m - i < FASTCONV_GEMM_ROWS ? (int)(m - i) : FASTCONV_GEMM_ROWS,
                               vectors, k, a + i * a_row, NULL, a_row, a_step, panel,
                               ldb ? ldb : vectors * FASTCONV_LANES, NULL, c + i * ldc + j, ldc,
                               accumulate);
        }
    }
}

/* The implicit-GEMM convolution's products (see _conv_gemm.pyx), whose column matrix's
   rows are runs of zero-padded input planes, read where they lie at the offsets rows[]
   from x. fastconv_sgemm_rows_b: C (m x n) = A X for a row-major A (m x k, row pitch
   a_row), X's row p at x + rows[p], n a multiple of PANEL (the forward pass).
   fastconv_sgemm_rows_a: C (m x n) += X B, X's row r at x + rows[r], B stored in panels
   (as fastconv_sgemm's ldb = 0), n a multiple of LANES (the weight gradient). */
static inline void fastconv_sgemm_rows_b(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                         ptrdiff_t a_row, const float *x, const ptrdiff_t *rows,
                                         float *c, ptrdiff_t ldc) {
    ptrdiff_t i, j;
    for (j = 0; j < n; j += FASTCONV_PANEL)
        for (i = 0; i < m; i += FASTCONV_GEMM_ROWS)
            fastconv_gemm_rows(m - i < FASTCONV_GEMM_ROWS ? (int)(m - i) : FASTCONV_GEMM_ROWS, 2,
                               k, a + i * a_row, NULL, a_row, 1, x + j, 0, rows,
                               c + i * ldc + j, ldc, 0);
}

static inline void fastconv_sgemm_rows_a(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x,
                                         const ptrdiff_t *rows, const float *b, float *c,
                                         ptrdiff_t ldc) {
    ptrdiff_t i, j;
    for (j = 0; j < n; j += FASTCONV_PANEL) {
        int vectors = n - j >= FASTCONV_PANEL ? 2 : 1;
        for (i = 0; i < m; i += FASTCONV_GEMM_ROWS)
            fastconv_gemm_rows(m - i < FASTCONV_GEMM_ROWS ? (int)(m - i) : FASTCONV_GEMM_ROWS,
                               vectors, k, x, rows + i, 0, 1, b + j * k,
                               vectors * FASTCONV_LANES, NULL, c + i * ldc + j, ldc, 1);
    }
}
#else
#define FASTCONV_GEMM_KERNEL 0
/* Never called: without AVX2 and FMA the kernels call BLAS. */
static inline void fastconv_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                  ptrdiff_t a_row, ptrdiff_t a_step, const float *b,
                                  ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate) {}
static inline void fastconv_sgemm_rows_b(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                                         ptrdiff_t a_row, const float *x, const ptrdiff_t *rows,
                                         float *c, ptrdiff_t ldc) {}
static inline void fastconv_sgemm_rows_a(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *x,
                                         const ptrdiff_t *rows, const float *b, float *c,
                                         ptrdiff_t ldc) {}
#endif
#endif
