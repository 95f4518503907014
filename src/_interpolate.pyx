# cython: boundscheck=False, wraparound=False, cdivision=True
"""Upsampling and resizing (interpolate) with PyTorch's source-index rules, and backward.

Modes "nearest" (PyTorch's legacy rule, floor(dst * scale) in single precision) and
"bilinear". scale_h / scale_w are the user's scale factors, or 0 when the sizes define
the scale. Each def kernel runs one prange over the N * C planes and calls a cdef function
for one plane; a thread owns whole output planes, or whole grad_input planes for the
backward scatters, so results do not depend on the thread count. The backward kernels
overwrite grad_input, zeroing each plane just before scattering into it (see _pool.pyx).
Shapes: input (N, C, H, W), output (N, C, out_h, out_w).
"""
from cython.parallel cimport prange
from libc.math cimport floor, floorf
from libc.string cimport memset
from _common cimport floating


cdef inline float nearest_ratio(Py_ssize_t size, Py_ssize_t out_size,
                                double scale) noexcept nogil:
    # PyTorch computes this scale in float whatever the dtype.
    if scale > 0:
        return <float>(1.0 / scale)
    return (<float>size) / (<float>out_size)


cdef inline Py_ssize_t nearest_source(Py_ssize_t dst, Py_ssize_t size, Py_ssize_t out_size,
                                      float ratio) noexcept nogil:
    """The input index output index dst copies (PyTorch's nearest_idx)."""
    if out_size == size:
        return dst
    if out_size == 2 * size:
        return dst >> 1
    return min(<Py_ssize_t>floorf(dst * ratio), size - 1)


cdef inline double linear_ratio(Py_ssize_t size, Py_ssize_t out_size, bint align_corners,
                                double scale) noexcept nogil:
    # PyTorch computes this in the dtype's precision; for float32 a float division of the
    # sizes equals the double division rounded to float, so the caller may round.
    if align_corners:
        return (size - 1) / <double>(out_size - 1) if out_size > 1 else 0
    if scale > 0:
        return 1.0 / scale
    return size / <double>out_size


cdef inline void linear_source(Py_ssize_t dst, Py_ssize_t size, Py_ssize_t out_size,
                               bint align_corners, floating ratio, Py_ssize_t* index0,
                               Py_ssize_t* index1, floating* lambda1) noexcept nogil:
    """Output index dst reads index0 with weight 1 - lambda1 and index1 with weight lambda1."""
    cdef floating source
    if out_size == size:
        index0[0] = dst
        index1[0] = dst
        lambda1[0] = 0
        return
    if align_corners:
        source = ratio * dst
    else:
        source = ratio * (dst + <floating>0.5) - <floating>0.5
        if source < 0:
            source = 0
    index0[0] = min(<Py_ssize_t>floor(source), size - 1)
    index1[0] = index0[0] + 1 if index0[0] < size - 1 else index0[0]
    lambda1[0] = min(max(source - index0[0], <floating>0), <floating>1)


# --- one plane ------------------------------------------------------------------------

cdef void nearest_plane(const floating* input, Py_ssize_t height, Py_ssize_t width,
                        floating* output, Py_ssize_t out_h, Py_ssize_t out_w,
                        double scale_h, double scale_w) noexcept nogil:
    cdef float ratio_h = nearest_ratio(height, out_h, scale_h)
    cdef float ratio_w = nearest_ratio(width, out_w, scale_w)
    cdef Py_ssize_t oh, ow
    cdef const floating* row
    for oh in range(out_h):
        row = input + nearest_source(oh, height, out_h, ratio_h) * width
        for ow in range(out_w):
            output[oh * out_w + ow] = row[nearest_source(ow, width, out_w, ratio_w)]


cdef void nearest_backward_plane(const floating* grad_output, Py_ssize_t out_h,
                                 Py_ssize_t out_w, floating* grad_input, Py_ssize_t height,
                                 Py_ssize_t width, double scale_h, double scale_w) noexcept nogil:
    cdef float ratio_h = nearest_ratio(height, out_h, scale_h)
    cdef float ratio_w = nearest_ratio(width, out_w, scale_w)
    cdef Py_ssize_t oh, ow
    cdef floating* row
    memset(grad_input, 0, height * width * sizeof(floating))
    for oh in range(out_h):
        row = grad_input + nearest_source(oh, height, out_h, ratio_h) * width
        for ow in range(out_w):
            row[nearest_source(ow, width, out_w, ratio_w)] += grad_output[oh * out_w + ow]


cdef void bilinear_plane(const floating* input, Py_ssize_t height, Py_ssize_t width,
                         floating* output, Py_ssize_t out_h, Py_ssize_t out_w, bint align_corners,
                         floating ratio_h, floating ratio_w) noexcept nogil:
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1
    cdef floating lambda_h, lambda_w
    cdef const floating* row0
    cdef const floating* row1
    for oh in range(out_h):
        linear_source(oh, height, out_h, align_corners, ratio_h, &h0, &h1, &lambda_h)
        row0 = input + h0 * width
        row1 = input + h1 * width
        for ow in range(out_w):
            linear_source(ow, width, out_w, align_corners, ratio_w, &w0, &w1, &lambda_w)
            output[oh * out_w + ow] = (
                (1 - lambda_h) * ((1 - lambda_w) * row0[w0] + lambda_w * row0[w1])
                + lambda_h * ((1 - lambda_w) * row1[w0] + lambda_w * row1[w1]))


cdef void bilinear_backward_plane(const floating* grad_output, Py_ssize_t out_h,
                                  Py_ssize_t out_w, floating* grad_input, Py_ssize_t height,
                                  Py_ssize_t width, bint align_corners, floating ratio_h,
                                  floating ratio_w) noexcept nogil:
    cdef Py_ssize_t oh, ow, h0, h1, w0, w1
    cdef floating lambda_h, lambda_w, gradient
    cdef floating* row0
    cdef floating* row1
    memset(grad_input, 0, height * width * sizeof(floating))
    for oh in range(out_h):
        linear_source(oh, height, out_h, align_corners, ratio_h, &h0, &h1, &lambda_h)
        row0 = grad_input + h0 * width
        row1 = grad_input + h1 * width
        for ow in range(out_w):
            linear_source(ow, width, out_w, align_corners, ratio_w, &w0, &w1, &lambda_w)
            gradient = grad_output[oh * out_w + ow]
            row0[w0] += (1 - lambda_h) * (1 - lambda_w) * gradient
            row0[w1] += (1 - lambda_h) * lambda_w * gradient
            row1[w0] += lambda_h * (1 - lambda_w) * gradient
            row1[w1] += lambda_h * lambda_w * gradient


# --- kernels: one prange over the N * C planes -----------------------------------------

def nearest_forward(const floating[:, :, :, ::1] input, floating[:, :, :, ::1] output,
                    double scale_h, double scale_w, int n_threads):
    """output <- interpolate(input, mode="nearest") at output's size."""
    cdef Py_ssize_t channels = input.shape[1], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(input.shape[0] * channels, num_threads=n_threads, schedule="static"):
            n = plane // channels
            c = plane % channels
            nearest_plane(&input[n, c, 0, 0], height, width, &output[n, c, 0, 0], out_h, out_w,
                          scale_h, scale_w)


def nearest_backward(const floating[:, :, :, ::1] grad_output, floating[:, :, :, ::1] grad_input,
                     double scale_h, double scale_w, int n_threads):
    """grad_input <- the input gradient of interpolate(mode="nearest")."""
    cdef Py_ssize_t channels = grad_input.shape[1]
    cdef Py_ssize_t height = grad_input.shape[2], width = grad_input.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(grad_input.shape[0] * channels, num_threads=n_threads,
                            schedule="static"):
            n = plane // channels
            c = plane % channels
            nearest_backward_plane(&grad_output[n, c, 0, 0], out_h, out_w,
                                   &grad_input[n, c, 0, 0], height, width, scale_h, scale_w)


def bilinear_forward(const floating[:, :, :, ::1] input, floating[:, :, :, ::1] output,
                     bint align_corners, double scale_h, double scale_w, int n_threads):
    """output <- interpolate(input, mode="bilinear", align_corners) at output's size."""
    cdef Py_ssize_t channels = input.shape[1], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef floating ratio_h = <floating>linear_ratio(height, out_h, align_corners, scale_h)
    cdef floating ratio_w = <floating>linear_ratio(width, out_w, align_corners, scale_w)
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(input.shape[0] * channels, num_threads=n_threads, schedule="static"):
            n = plane // channels
            c = plane % channels
            bilinear_plane(&input[n, c, 0, 0], height, width, &output[n, c, 0, 0], out_h, out_w,
                           align_corners, ratio_h, ratio_w)


def bilinear_backward(const floating[:, :, :, ::1] grad_output,
                      floating[:, :, :, ::1] grad_input, bint align_corners, double scale_h,
                      double scale_w, int n_threads):
    """grad_input <- the input gradient of interpolate(mode="bilinear", align_corners)."""
    cdef Py_ssize_t channels = grad_input.shape[1]
    cdef Py_ssize_t height = grad_input.shape[2], width = grad_input.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef floating ratio_h = <floating>linear_ratio(height, out_h, align_corners, scale_h)
    cdef floating ratio_w = <floating>linear_ratio(width, out_w, align_corners, scale_w)
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(grad_input.shape[0] * channels, num_threads=n_threads,
                            schedule="static"):
            n = plane // channels
            c = plane % channels
            bilinear_backward_plane(&grad_output[n, c, 0, 0], out_h, out_w,
                                    &grad_input[n, c, 0, 0], height, width, align_corners,
                                    ratio_h, ratio_w)
