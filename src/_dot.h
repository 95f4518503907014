/* Dot products summed in double, vectorised by OpenMP SIMD. The lanes make the
   summation order fixed for a given build, independent of the thread count. */
#ifndef FASTCONV_DOT_H
#define FASTCONV_DOT_H
#include <stddef.h>

static inline double fastconv_dot_float(const float *a, const float *b, ptrdiff_t b_stride,
                                        ptrdiff_t n) {
    double total = 0;
    ptrdiff_t i;
    if (b_stride == 1) {
        #pragma omp simd reduction(+:total)
        for (i = 0; i < n; i++) total += (double)a[i] * b[i];
    } else {
        #pragma omp simd reduction(+:total)
        for (i = 0; i < n; i++) total += (double)a[i] * b[i * b_stride];
    }
    return total;
}

static inline double fastconv_dot_double(const double *a, const double *b, ptrdiff_t b_stride,
                                         ptrdiff_t n) {
    double total = 0;
    ptrdiff_t i;
    if (b_stride == 1) {
        #pragma omp simd reduction(+:total)
        for (i = 0; i < n; i++) total += a[i] * b[i];
    } else {
        #pragma omp simd reduction(+:total)
        for (i = 0; i < n; i++) total += a[i] * b[i * b_stride];
    }
    return total;
}
#endif
