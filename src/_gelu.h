/* GELU, forward and backward: float32 in loops the compiler vectorises, float64 by libm.

   libm's erff, expf and tanhf are scalar calls, which left the element-wise loops an
   order of magnitude slower than the arithmetic around them. Here exp comes from a
   range reduction and a polynomial (Cephes' expf coefficients, within 2 ulp), and erf
   from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), with no branches, so that each
   loop compiles to AVX2 code (ivdep: the output may be the input, which GCC's run-time
   overlap check would otherwise send to a scalar loop). The results stay within 1e-6 of
   float64 GELU times max(1, |x|). NaN and infinities give what the formulas give in NumPy: the factor x
   (x in the derivative) carries them. */
#ifndef FASTCONV_GELU_H
#define FASTCONV_GELU_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for x <= 0, all that GELU needs: 0 below -87.3 (the normal range), and for
   -inf and NaN too, which the callers multiply by x. The limits are integer
   comparisons: GCC does not vectorise float comparisons, which trap on NaN. */
static inline float fastconv_exp_nonpositive(float x) {
    float n, r, p;
    int32_t magnitude, biased;
    /* x = -min(|x|, 104) */
    x = -x;
    memcpy(&magnitude, &x, sizeof x);
    magnitude = magnitude < 0x42d00000 ? magnitude : 0x42d00000;
    memcpy(&x, &magnitude, sizeof x);
    x = -x;
    n = rintf(x * 1.44269504088896341f);
    biased = (int32_t)n + 127;
    /* x - n ln 2, with ln 2 in two parts so that the product is exact. */
    r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    /* 2^n, or 0 below the normal range. */
    biased = (biased > 0 ? biased : 0) << 23;
    memcpy(&r, &biased, sizeof r);
    return p * r;
}

/* erf(x / sqrt(2)) and, in *gauss, exp(-x^2 / 2), which its derivative needs too. */
static inline float fastconv_erf_scaled(float x, float *gauss) {
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / fmaf(0.3275911f, z, 1.0f);
    float poly = 1.061405429f;
    poly = fmaf(poly, t, -1.453152027f);
    poly = fmaf(poly, t, 1.421413741f);
    poly = fmaf(poly, t, -0.284496736f);
    poly = fmaf(poly, t, 0.254829592f);
    *gauss = fastconv_exp_nonpositive(-z * z);
    return copysignf(1.0f - poly * t * *gauss, x);
}

/* tanh(sqrt(2 / pi) (x + 0.044715 x^3)), the tanh approximation's inner function, from
   tanh(u) = sign(u) (1 - e) / (1 + e) with e = exp(-2 |u|). */
static inline float fastconv_gelu_tanh_inner(float x) {
    float u = 0.79788456080286536f * fmaf(0.044715f * x, x * x, x);
    float e = fastconv_exp_nonpositive(-2.0f * fabsf(u));
    return copysignf((1.0f - e) / (1.0f + e), u);
}

/* y = x Phi(x), Phi the standard normal CDF (approximate: its tanh form). */
static inline void fastconv_gelu_f32(const float *x, float *y, ptrdiff_t n, int approximate) {
    ptrdiff_t i;
    float gauss;
    if (approximate) {
        _Pragma("GCC ivdep")
        for (i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + fastconv_gelu_tanh_inner(x[i]));
    } else {
        _Pragma("GCC ivdep")
        for (i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + fastconv_erf_scaled(x[i], &gauss));
    }
}

/* grad_input = grad_output * d/dx (x Phi(x)): Phi(x) + x phi(x), or the tanh form's
   derivative. */
static inline void fastconv_gelu_backward_f32(const float *grad_output, const float *x,
                                              float *grad_input, ptrdiff_t n,
                                              int approximate) {
    ptrdiff_t i;
    float gauss, t, cdf;
    if (approximate) {
        _Pragma("GCC ivdep")
        for (i = 0; i < n; i++) {
            t = fastconv_gelu_tanh_inner(x[i]);
            grad_input[i] = grad_output[i] * (0.5f * (1.0f + t) + 0.5f * x[i] * (1.0f - t * t)
                                              * 0.79788456080286536f
                                              * fmaf(0.134145f * x[i], x[i], 1.0f));
        }
    } else {
        _Pragma("GCC ivdep")
        for (i = 0; i < n; i++) {
            cdf = 0.5f * (1.0f + fastconv_erf_scaled(x[i], &gauss));
            grad_input[i] = grad_output[i] * fmaf(x[i] * 0.39894228040143268f, gauss, cdf);
        }
    }
}
/* The same in float64, by libm (exact to rounding). */
static inline double fastconv_gelu_tanh_inner_f64(double x) {
    return tanh(0.79788456080286536 * (x + 0.044715 * x * x * x));
}

static inline void fastconv_gelu_f64(const double *x, double *y, ptrdiff_t n, int approximate) {
    ptrdiff_t i;
    _Pragma("GCC ivdep")
    for (i = 0; i < n; i++)
        y[i] = 0.5 * x[i] * (1.0 + (approximate ? fastconv_gelu_tanh_inner_f64(x[i])
                                                : erf(x[i] * 0.70710678118654752)));
}

static inline void fastconv_gelu_backward_f64(const double *grad_output, const double *x,
                                              double *grad_input, ptrdiff_t n,
                                              int approximate) {
    ptrdiff_t i;
    double t, derivative;
    _Pragma("GCC ivdep")
    for (i = 0; i < n; i++) {
        if (approximate) {
            t = fastconv_gelu_tanh_inner_f64(x[i]);
            derivative = 0.5 * (1.0 + t) + 0.5 * x[i] * (1.0 - t * t) * 0.79788456080286536
                         * (1.0 + 0.134145 * x[i] * x[i]);
        } else {
            derivative = 0.5 * (1.0 + erf(x[i] * 0.70710678118654752))
                         + x[i] * exp(-0.5 * x[i] * x[i]) * 0.39894228040143268;
        }
        grad_input[i] = grad_output[i] * derivative;
    }
}
#endif
