/* Dot products summed in double. Sixteen running sums, added in a fixed order at the
   end, keep four vector accumulators busy (one would wait on its own latency) and make
   the result independent of the thread count. */
#ifndef FASTCONV_DOT_H
#define FASTCONV_DOT_H
#include <stddef.h>

#define FASTCONV_DOT_LANES 16

#define FASTCONV_DEFINE_DOT(name, type)                                                    \
static inline double name(const type *a, const type *b, ptrdiff_t b_stride, ptrdiff_t n) { \
    double lanes[FASTCONV_DOT_LANES] = {0};                                                    \
    double total = 0;                                                                      \
    ptrdiff_t i = 0, j;                                                                    \
    if (b_stride == 1) {                                                                   \
        for (; i + FASTCONV_DOT_LANES <= n; i += FASTCONV_DOT_LANES)                               \
            for (j = 0; j < FASTCONV_DOT_LANES; j++)                                           \
                lanes[j] += (double)a[i + j] * b[i + j];                                   \
    } else {                                                                               \
        for (; i + FASTCONV_DOT_LANES <= n; i += FASTCONV_DOT_LANES)                               \
            for (j = 0; j < FASTCONV_DOT_LANES; j++)                                           \
                lanes[j] += (double)a[i + j] * b[(i + j) * b_stride];                      \
    }                                                                                      \
    for (; i < n; i++)                                                                     \
        total += (double)a[i] * b[i * b_stride];                                           \
    for (j = 0; j < FASTCONV_DOT_LANES; j++)                                                   \
        total += lanes[j];                                                                 \
    return total;                                                                          \
}

FASTCONV_DEFINE_DOT(fastconv_dot_float, float)
FASTCONV_DEFINE_DOT(fastconv_dot_double, double)

#define FASTCONV_DEFINE_SUM(name, type)                                                    \
static inline double name(const type *a, ptrdiff_t n) {                                    \
    double lanes[FASTCONV_DOT_LANES] = {0};                                                    \
    double total = 0;                                                                      \
    ptrdiff_t i = 0, j;                                                                    \
    for (; i + FASTCONV_DOT_LANES <= n; i += FASTCONV_DOT_LANES)                                   \
        for (j = 0; j < FASTCONV_DOT_LANES; j++)                                               \
            lanes[j] += a[i + j];                                                          \
    for (; i < n; i++)                                                                     \
        total += a[i];                                                                     \
    for (j = 0; j < FASTCONV_DOT_LANES; j++)                                                   \
        total += lanes[j];                                                                 \
    return total;                                                                          \
}

FASTCONV_DEFINE_SUM(fastconv_sum_float, float)
FASTCONV_DEFINE_SUM(fastconv_sum_double, double)

#endif
