# cython: boundscheck=False, wraparound=False, cdivision=True
"""Convolution as im2col + GEMM, forward and backward.

OpenMP runs over images (forward) or fixed chunks of images (backward); every thread
owns its images' outputs and its column buffer, and calls a single-threaded BLAS.
Shapes: input (N, C_in, H, W), weight (C_out, C_in / groups, kH, kW),
output (N, C_out, out_h, out_w). workspace has one row of at least
C_in / groups * kH * kW * out_h * out_w elements per thread.
"""
from cython.parallel cimport prange, threadid
from _common cimport floating, gemm
from _im2col cimport im2col_image, col2im_image


cdef inline bint reads_input_as_columns(Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                                        Py_ssize_t stride_h, Py_ssize_t stride_w,
                                        Py_ssize_t pad_h, Py_ssize_t pad_w,
                                        Py_ssize_t height, Py_ssize_t width,
                                        Py_ssize_t out_h, Py_ssize_t out_w) noexcept nogil:
    # A 1x1 kernel at stride 1 without padding: the image (C, H*W) already is its column matrix.
    return (kernel_h == 1 and kernel_w == 1 and stride_h == 1 and stride_w == 1
            and pad_h == 0 and pad_w == 0 and out_h == height and out_w == width)


def conv2d_forward(const floating[:, :, :, ::1] input, const floating[:, :, :, ::1] weight,
                   const floating[::1] bias, floating[:, :, :, ::1] output,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                   Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups,
                   floating[:, ::1] workspace, int n_threads):
    """output <- conv2d(input, weight) + bias (bias may be None)."""
    cdef Py_ssize_t batch = input.shape[0], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef int rows = group_in * kernel_h * kernel_w, pixels = out_h * out_w
    cdef bint has_bias = bias is not None
    cdef bint direct_columns = reads_input_as_columns(kernel_h, kernel_w, stride_h, stride_w,
                                                      pad_h, pad_w, height, width, out_h, out_w)
    cdef Py_ssize_t n, g, c, p
    cdef const floating* columns
    cdef floating* out_plane
    cdef floating beta
    with nogil:
        for n in prange(batch, num_threads=n_threads, schedule="static"):
            for g in range(groups):
                if direct_columns:
                    columns = &input[n, g * group_in, 0, 0]
                else:
                    im2col_image(&input[n, g * group_in, 0, 0], group_in, height, width,
                                 kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                 dilation_h, dilation_w, out_h, out_w, &workspace[threadid(), 0])
                    columns = &workspace[threadid(), 0]
                beta = 0
                if has_bias:
                    beta = 1
                    for c in range(g * group_out, (g + 1) * group_out):
                        out_plane = &output[n, c, 0, 0]
                        for p in range(pixels):
                            out_plane[p] = bias[c]
                gemm(False, False, <int>group_out, pixels, rows, <floating>1,
                     &weight[g * group_out, 0, 0, 0], rows, columns, pixels,
                     beta, &output[n, g * group_out, 0, 0], pixels)


def conv2d_backward(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] input,
                    const floating[:, :, :, ::1] weight, floating[:, :, :, ::1] grad_input,
                    floating[:, :, ::1] grad_weight_partials, Py_ssize_t n_chunks,
                    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                    Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups,
                    floating[:, ::1] workspace, int n_threads):
    """grad_input += conv2d input gradient; grad_weight_partials[k] += weight gradient of chunk k.

    The batch is cut into n_chunks fixed chunks of consecutive images, chunk k adding its
    weight gradient into grad_weight_partials[k] (shape (n_chunks, C_out, C_in/groups*kH*kW)),
    so the result does not depend on the thread count. Either output may be None, and
    input may be None when grad_weight_partials is (the transposed convolution's forward).
    """
    cdef Py_ssize_t batch = grad_output.shape[0], height, width
    if input is None:
        height, width = grad_input.shape[2], grad_input.shape[3]
    else:
        height, width = input.shape[2], input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef int rows = group_in * kernel_h * kernel_w, pixels = out_h * out_w
    cdef bint want_input = grad_input is not None, want_weight = grad_weight_partials is not None
    cdef bint direct_columns = reads_input_as_columns(kernel_h, kernel_w, stride_h, stride_w,
                                                      pad_h, pad_w, height, width, out_h, out_w)
    cdef Py_ssize_t chunk, n, g
    cdef const floating* columns
    cdef const floating* grad_plane
    cdef floating* buffer
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            buffer = &workspace[threadid(), 0]
            for n in range(chunk * batch // n_chunks, (chunk + 1) * batch // n_chunks):
                for g in range(groups):
                    grad_plane = &grad_output[n, g * group_out, 0, 0]
                    if want_weight:
                        if direct_columns:
                            columns = &input[n, g * group_in, 0, 0]
                        else:
                            im2col_image(&input[n, g * group_in, 0, 0], group_in, height, width,
                                         kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                         dilation_h, dilation_w, out_h, out_w, buffer)
                            columns = buffer
                        gemm(False, True, <int>group_out, rows, pixels, <floating>1,
                             grad_plane, pixels, columns, pixels, <floating>1,
                             &grad_weight_partials[chunk, g * group_out, 0], rows)
                    if want_input:
                        if direct_columns:
                            gemm(True, False, rows, pixels, <int>group_out, <floating>1,
                                 &weight[g * group_out, 0, 0, 0], rows, grad_plane, pixels,
                                 <floating>1, &grad_input[n, g * group_in, 0, 0], pixels)
                        else:
                            gemm(True, False, rows, pixels, <int>group_out, <floating>1,
                                 &weight[g * group_out, 0, 0, 0], rows, grad_plane, pixels,
                                 <floating>0, buffer, pixels)
                            col2im_image(buffer, group_in, height, width, kernel_h, kernel_w,
                                         stride_h, stride_w, pad_h, pad_w, dilation_h,
                                         dilation_w, out_h, out_w, &grad_input[n, g * group_in, 0, 0])
