# cython: boundscheck=False, wraparound=False, cdivision=True
"""Direct convolution (no column matrix): for depthwise layers and few input channels.

Each kernel tap (c, i, j) is one scalar times a shifted row, so the inner loops are
contiguous axpys over output (or input) rows that the compiler vectorises.
Shapes: input (N, C_in, H, W), weight (C_out, C_in / groups, kH, kW),
output (N, C_out, out_h, out_w); pad_h / pad_w are the top / left padding.
"""
from cython.parallel cimport prange, threadid
from _common cimport floating, first_valid, end_valid


def conv2d_forward(const floating[:, :, :, ::1] input, const floating[:, :, :, ::1] weight,
                   const floating[::1] bias, floating[:, :, :, ::1] output,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                   Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int n_threads):
    """output <- conv2d(input, weight) + bias (bias may be None); a thread owns (n, c_out) planes."""
    cdef Py_ssize_t batch = input.shape[0], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef bint has_bias = bias is not None
    cdef Py_ssize_t plane, n, co, ci, i, j, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, offset_w
    cdef floating tap
    cdef floating* out_row
    cdef const floating* in_row
    with nogil:
        for plane in prange(batch * out_channels, num_threads=n_threads, schedule="static"):
            n = plane // out_channels
            co = plane % out_channels
            for oh in range(out_h * out_w):
                (&output[n, co, 0, 0])[oh] = bias[co] if has_bias else 0
            for ci in range(group_in):
                for i in range(kernel_h):
                    oh_lo = first_valid(i * dilation_h - pad_h, stride_h, out_h)
                    oh_hi = end_valid(i * dilation_h - pad_h, stride_h, height, out_h)
                    for j in range(kernel_w):
                        tap = weight[co, ci, i, j]
                        offset_w = j * dilation_w - pad_w
                        ow_lo = first_valid(offset_w, stride_w, out_w)
                        ow_hi = end_valid(offset_w, stride_w, width, out_w)
                        for oh in range(oh_lo, oh_hi):
                            out_row = &output[n, co, oh, 0]
                            in_row = &input[n, (co // group_out) * group_in + ci,
                                            oh * stride_h + i * dilation_h - pad_h, 0] + offset_w
                            if stride_w == 1:
                                for ow in range(ow_lo, ow_hi):
                                    out_row[ow] += tap * in_row[ow]
                            else:
                                for ow in range(ow_lo, ow_hi):
                                    out_row[ow] += tap * in_row[ow * stride_w]


def conv2d_backward_input(const floating[:, :, :, ::1] grad_output,
                          const floating[:, :, :, ::1] weight, floating[:, :, :, ::1] grad_input,
                          Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                          Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                          Py_ssize_t groups, int n_threads):
    """grad_input += the input gradient; a thread owns (n, c_in) planes of grad_input."""
    cdef Py_ssize_t batch = grad_input.shape[0], in_channels = grad_input.shape[1]
    cdef Py_ssize_t height = grad_input.shape[2], width = grad_input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t plane, n, c, ci, co, i, j, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, offset_w
    cdef floating tap
    cdef floating* in_row
    cdef const floating* out_row
    with nogil:
        for plane in prange(batch * in_channels, num_threads=n_threads, schedule="static"):
            n = plane // in_channels
            c = plane % in_channels
            ci = c % group_in
            for co in range((c // group_in) * group_out, (c // group_in + 1) * group_out):
                for i in range(kernel_h):
                    oh_lo = first_valid(i * dilation_h - pad_h, stride_h, out_h)
                    oh_hi = end_valid(i * dilation_h - pad_h, stride_h, height, out_h)
                    for j in range(kernel_w):
                        tap = weight[co, ci, i, j]
                        offset_w = j * dilation_w - pad_w
                        ow_lo = first_valid(offset_w, stride_w, out_w)
                        ow_hi = end_valid(offset_w, stride_w, width, out_w)
                        for oh in range(oh_lo, oh_hi):
                            out_row = &grad_output[n, co, oh, 0]
                            in_row = &grad_input[n, c, oh * stride_h + i * dilation_h - pad_h, 0] + offset_w
                            if stride_w == 1:
                                for ow in range(ow_lo, ow_hi):
                                    in_row[ow] += tap * out_row[ow]
                            else:
                                for ow in range(ow_lo, ow_hi):
                                    in_row[ow * stride_w] += tap * out_row[ow]


def conv2d_backward_weight(const floating[:, :, :, ::1] grad_output,
                           const floating[:, :, :, ::1] input, floating[:, :, :, ::1] grad_weight,
                           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                           Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                           Py_ssize_t groups, double[:, ::1] lanes, int n_threads):
    """grad_weight += the weight gradient; a thread owns output channels.

    Each tap's sum runs in double over lanes (one row of lanes per thread, out_w wide):
    lane ow accumulates column ow of every row, so the inner loop is an elementwise
    multiply-add the compiler vectorises, and the lanes are summed once at the end.
    """
    cdef Py_ssize_t batch = input.shape[0], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = grad_weight.shape[0], group_in = grad_weight.shape[1]
    cdef Py_ssize_t kernel_h = grad_weight.shape[2], kernel_w = grad_weight.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t co, ci, i, j, n, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, offset_w
    cdef double total
    cdef double* lane
    cdef const floating* out_row
    cdef const floating* in_row
    with nogil:
        for co in prange(out_channels, num_threads=n_threads, schedule="static"):
            lane = &lanes[threadid(), 0]
            for ci in range(group_in):
                for i in range(kernel_h):
                    oh_lo = first_valid(i * dilation_h - pad_h, stride_h, out_h)
                    oh_hi = end_valid(i * dilation_h - pad_h, stride_h, height, out_h)
                    for j in range(kernel_w):
                        offset_w = j * dilation_w - pad_w
                        ow_lo = first_valid(offset_w, stride_w, out_w)
                        ow_hi = end_valid(offset_w, stride_w, width, out_w)
                        for ow in range(out_w):
                            lane[ow] = 0
                        for n in range(batch):
                            for oh in range(oh_lo, oh_hi):
                                out_row = &grad_output[n, co, oh, 0]
                                in_row = &input[n, (co // group_out) * group_in + ci,
                                                oh * stride_h + i * dilation_h - pad_h, 0] + offset_w
                                if stride_w == 1:
                                    for ow in range(ow_lo, ow_hi):
                                        lane[ow] += <double>out_row[ow] * in_row[ow]
                                else:
                                    for ow in range(ow_lo, ow_hi):
                                        lane[ow] += <double>out_row[ow] * in_row[ow * stride_w]
                        total = 0
                        for ow in range(ow_lo, ow_hi):
                            total = total + lane[ow]
                        grad_weight[co, ci, i, j] += <floating>total
