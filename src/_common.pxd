# The fused float type and the small inline helpers every kernel shares.
from cython cimport floating
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "_dot.h" nogil:
    double fastconv_dot_float(const float* a, const float* b, Py_ssize_t b_stride, Py_ssize_t n)
    double fastconv_dot_double(const double* a, const double* b, Py_ssize_t b_stride, Py_ssize_t n)
    double fastconv_sum_float(const float* a, Py_ssize_t n)
    double fastconv_sum_double(const double* a, Py_ssize_t n)


# The vector width of the ISA level being compiled (see _simd.h).
cdef extern from "_simd.h" nogil:
    enum: LANES "FASTCONV_LANES"
    # Columns per block of the GEMM kernel's panel-stored B (ldb = 0).
    enum: PANEL "FASTCONV_PANEL"


# _gemm_kernel.h's float32 GEMM (AVX2 and FMA only: GEMM_KERNEL is 0 without them).
cdef extern from "_gemm_kernel.h" nogil:
    enum: GEMM_KERNEL "FASTCONV_GEMM_KERNEL"
    # Rows of C per block of the kernel.
    enum: GEMM_ROWS "FASTCONV_GEMM_ROWS"
    void sgemm_kernel "fastconv_sgemm"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                                       Py_ssize_t a_row, Py_ssize_t a_step, const float* b,
                                       Py_ssize_t ldb, float* c, Py_ssize_t ldc, bint accumulate)
    void sgemm_kernel_rows_b "fastconv_sgemm_rows_b"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                                     const float* a, Py_ssize_t a_row,
                                                     const float* x, const Py_ssize_t* rows,
                                                     float* c, Py_ssize_t ldc)
    void sgemm_kernel_rows_a "fastconv_sgemm_rows_a"(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                                     const float* x, const Py_ssize_t* rows,
                                                     const float* b, float* c, Py_ssize_t ldc)


cdef extern from "_gelu.h" nogil:
    void fastconv_gelu_f32(const float* x, float* y, Py_ssize_t n, bint approximate)
    void fastconv_gelu_f64(const double* x, double* y, Py_ssize_t n, bint approximate)
    void fastconv_gelu_backward_f32(const float* grad_output, const float* x, float* grad_input,
                                    Py_ssize_t n, bint approximate)
    void fastconv_gelu_backward_f64(const double* grad_output, const double* x,
                                    double* grad_input, Py_ssize_t n, bint approximate)


cdef inline double dot(const floating* a, const floating* b, Py_ssize_t b_stride,
                       Py_ssize_t n) noexcept nogil:
    """sum(a[i] * b[i * b_stride] for i < n), in double."""
    if floating is float:
        return fastconv_dot_float(a, b, b_stride, n)
    else:
        return fastconv_dot_double(a, b, b_stride, n)


cdef inline double total(const floating* a, Py_ssize_t n) noexcept nogil:
    """sum(a[i] for i < n), in double."""
    if floating is float:
        return fastconv_sum_float(a, n)
    else:
        return fastconv_sum_double(a, n)


cdef inline floating rectify(floating x) noexcept nogil:
    """max(x, 0) as np.maximum(x, 0) computes it: x <= 0 is false for NaN, so NaN passes
    through, and -0.0 becomes +0.0."""
    return 0 if x <= 0 else x


cdef inline floating activate(floating x, bint relu) noexcept nogil:
    """The convolution epilogue's activation: rectify(x) with relu, else x."""
    return rectify(x) if relu else x


cdef inline bint beats(floating challenger, floating best) noexcept nogil:
    """Whether challenger, which comes after best in window order, takes its place: it is
    larger, or it is NaN and best is not. This finds max pooling's first maximum or first
    NaN (_pool.pyx's window_argmax) however the window is grouped, so a 2x2 window may
    compare its rows first."""
    return best == best and not best >= challenger


cdef inline void rectify_run(floating* values, Py_ssize_t n) noexcept nogil:
    """values[i] <- rectify(values[i]) for i < n."""
    cdef Py_ssize_t i
    for i in range(n):
        values[i] = rectify(values[i])


cdef inline Py_ssize_t floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Floor division for b > 0 (C division truncates toward zero)."""
    cdef Py_ssize_t q = a // b
    if (a % b != 0) and (a < 0):
        q -= 1
    return q


cdef inline Py_ssize_t clamp(Py_ssize_t v, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    return lo if v < lo else (hi if v > hi else v)


cdef inline void pad_plane(const floating* plane, Py_ssize_t height, Py_ssize_t width,
                           Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t padded_h,
                           Py_ssize_t padded_w, floating* padded) noexcept nogil:
    """padded[r, c] = plane[r - pad_h, c - pad_w] inside the plane, 0 outside."""
    cdef Py_ssize_t r, h
    cdef Py_ssize_t left = clamp(pad_w, 0, padded_w)
    cdef Py_ssize_t right = clamp(pad_w + width, left, padded_w)
    for r in range(padded_h):
        h = r - pad_h
        if h < 0 or h >= height:
            memset(padded + r * padded_w, 0, padded_w * sizeof(floating))
            continue
        memset(padded + r * padded_w, 0, left * sizeof(floating))
        memcpy(padded + r * padded_w + left, plane + h * width + left - pad_w,
               (right - left) * sizeof(floating))
        memset(padded + r * padded_w + right, 0, (padded_w - right) * sizeof(floating))


# Outputs o whose input index o * stride + offset lies in [0, size) form the range
# [first_valid(...), end_valid(...)). Two functions returning values rather than one
# writing through pointers, so that prange sees the assignments and makes them private.
cdef inline Py_ssize_t first_valid(Py_ssize_t offset, Py_ssize_t stride,
                                   Py_ssize_t n_out) noexcept nogil:
    return clamp(-floor_div(offset, stride), 0, n_out)


cdef inline Py_ssize_t end_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size,
                                 Py_ssize_t n_out) noexcept nogil:
    return clamp(floor_div(size - 1 - offset, stride) + 1, first_valid(offset, stride, n_out),
                 n_out)


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C (m, n) = alpha * op(A) @ op(B) + beta * C.

    BLAS is column-major, so this computes C^T = op(B)^T op(A)^T.
    """
    cdef char op_a = b'T' if trans_a else b'N'
    cdef char op_b = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&op_b, &op_a, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&op_b, &op_a, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)


cdef inline void gelu(const floating* x, floating* y, Py_ssize_t n,
                      bint approximate) noexcept nogil:
    """y[i] <- GELU(x[i]) for i < n (y may be x): exact, or its tanh form with approximate."""
    if floating is float:
        fastconv_gelu_f32(x, y, n, approximate)
    else:
        fastconv_gelu_f64(x, y, n, approximate)


cdef inline void gelu_gradient(const floating* grad_output, const floating* x,
                               floating* grad_input, Py_ssize_t n,
                               bint approximate) noexcept nogil:
    """grad_input[i] <- grad_output[i] * GELU'(x[i]) for i < n (grad_input may be x)."""
    if floating is float:
        fastconv_gelu_backward_f32(grad_output, x, grad_input, n, approximate)
    else:
        fastconv_gelu_backward_f64(grad_output, x, grad_input, n, approximate)
