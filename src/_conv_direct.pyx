# cython: boundscheck=False, wraparound=False, cdivision=True
"""Direct convolution (no column matrix): for depthwise layers and few input channels.

Each task first copies the input planes it reads into a zero-padded buffer of
padded_h x padded_w pixels, so no inner loop tests a boundary. At stride 1 an output
plane laid out with the padded row pitch turns every kernel tap into one long axpy
(or dot product) over the whole plane; the padded_w - out_w columns past each row's
end are computed and dropped (forward) or held at zero (backward). Other strides run
the same taps row by row.

Shapes: input (N, C_in, H, W), weight (C_out, C_in / groups, kH, kW),
output (N, C_out, out_h, out_w); pad_h / pad_w are the top / left padding, with
padded_h = (out_h - 1) * stride_h + dilation_h * (kH - 1) + 1 and likewise padded_w.
"""
from cython.parallel cimport prange, threadid
from libc.string cimport memset, memcpy
from _common cimport floating, clamp, dot, pad_plane, rectify_run


cdef inline void unpad_add(const floating* padded, Py_ssize_t padded_h, Py_ssize_t padded_w,
                           Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t height,
                           Py_ssize_t width, floating* plane) noexcept nogil:
    """plane[h, w] += padded[h + pad_h, w + pad_w]: the adjoint of pad_plane."""
    cdef Py_ssize_t h, w
    cdef Py_ssize_t w_end = clamp(padded_w - pad_w, 0, width)
    for h in range(clamp(padded_h - pad_h, 0, height)):
        for w in range(w_end):
            plane[h * width + w] += padded[(h + pad_h) * padded_w + w + pad_w]


cdef inline void pitch_plane(const floating* plane, Py_ssize_t rows, Py_ssize_t width,
                             Py_ssize_t pitch, floating* pitched) noexcept nogil:
    """pitched[r, c] = plane[r, c] for c < width and 0 up to the pitch."""
    cdef Py_ssize_t r
    for r in range(rows):
        memcpy(pitched + r * pitch, plane + r * width, width * sizeof(floating))
        memset(pitched + r * pitch + width, 0, (pitch - width) * sizeof(floating))


def conv2d_forward(const floating[:, :, :, ::1] input, const floating[:, :, :, ::1] weight,
                   const floating[::1] bias, bint relu, floating[:, :, :, ::1] output,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                   Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups,
                   floating[:, ::1] workspace, int n_threads):
    """output <- conv2d(input, weight) + bias (bias may be None), rectified with relu.

    A thread owns one (image, group) at a time, and rectifies each output plane as soon
    as it is complete, while it is still in cache. workspace: one row per thread of
    C_in / groups * padded_h * padded_w + out_h * padded_w elements.
    """
    cdef Py_ssize_t batch = input.shape[0], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t padded_h = (out_h - 1) * stride_h + dilation_h * (kernel_h - 1) + 1
    cdef Py_ssize_t padded_w = (out_w - 1) * stride_w + dilation_w * (kernel_w - 1) + 1
    cdef Py_ssize_t plane_size = padded_h * padded_w
    cdef Py_ssize_t length = (out_h - 1) * padded_w + out_w
    cdef bint flat = stride_h == 1 and stride_w == 1, has_bias = bias is not None
    cdef Py_ssize_t task, n, g, co, ci, i, j, oh, ow, q
    cdef floating tap, start
    cdef floating* padded
    cdef floating* pitched
    cdef floating* out_row
    cdef const floating* source
    with nogil:
        for task in prange(batch * groups, num_threads=n_threads, schedule="static"):
            n = task // groups
            g = task % groups
            padded = &workspace[threadid(), 0]
            pitched = padded + group_in * plane_size
            for ci in range(group_in):
                pad_plane(&input[n, g * group_in + ci, 0, 0], height, width, pad_h, pad_w,
                          padded_h, padded_w, padded + ci * plane_size)
            for co in range(g * group_out, (g + 1) * group_out):
                start = bias[co] if has_bias else 0
                if flat:
                    for q in range(length):
                        pitched[q] = start
                    for ci in range(group_in):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                tap = weight[co, ci, i, j]
                                source = (padded + ci * plane_size + i * dilation_h * padded_w
                                          + j * dilation_w)
                                for q in range(length):
                                    pitched[q] += tap * source[q]
                    for oh in range(out_h):
                        memcpy(&output[n, co, oh, 0], pitched + oh * padded_w,
                               out_w * sizeof(floating))
                else:
                    for q in range(out_h * out_w):
                        (&output[n, co, 0, 0])[q] = start
                    for ci in range(group_in):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                tap = weight[co, ci, i, j]
                                for oh in range(out_h):
                                    out_row = &output[n, co, oh, 0]
                                    source = (padded + ci * plane_size
                                              + (oh * stride_h + i * dilation_h) * padded_w
                                              + j * dilation_w)
                                    for ow in range(out_w):
                                        out_row[ow] += tap * source[ow * stride_w]
                if relu:
                    rectify_run(&output[n, co, 0, 0], out_h * out_w)


def conv2d_backward_input(const floating[:, :, :, ::1] grad_output,
                          const floating[:, :, :, ::1] weight, floating[:, :, :, ::1] grad_input,
                          Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                          Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                          Py_ssize_t groups, floating[:, ::1] workspace, int n_threads):
    """grad_input += the input gradient.

    A thread owns one (image, group) at a time and scatters each tap into a padded
    gradient plane. workspace: one row per thread of
    C_out / groups * out_h * padded_w + padded_h * padded_w elements.
    """
    cdef Py_ssize_t batch = grad_input.shape[0], height = grad_input.shape[2]
    cdef Py_ssize_t width = grad_input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t padded_h = (out_h - 1) * stride_h + dilation_h * (kernel_h - 1) + 1
    cdef Py_ssize_t padded_w = (out_w - 1) * stride_w + dilation_w * (kernel_w - 1) + 1
    cdef Py_ssize_t pitched_size = out_h * padded_w
    cdef Py_ssize_t length = (out_h - 1) * padded_w + out_w
    cdef bint flat = stride_h == 1 and stride_w == 1
    cdef Py_ssize_t task, n, g, co, ci, i, j, oh, ow, q
    cdef floating tap
    cdef floating* pitched
    cdef floating* padded
    cdef floating* target
    cdef const floating* out_row
    with nogil:
        for task in prange(batch * groups, num_threads=n_threads, schedule="static"):
            n = task // groups
            g = task % groups
            pitched = &workspace[threadid(), 0]
            padded = pitched + group_out * pitched_size
            if flat:
                for co in range(group_out):
                    pitch_plane(&grad_output[n, g * group_out + co, 0, 0], out_h, out_w,
                                padded_w, pitched + co * pitched_size)
            for ci in range(group_in):
                memset(padded, 0, padded_h * padded_w * sizeof(floating))
                for co in range(group_out):
                    for i in range(kernel_h):
                        for j in range(kernel_w):
                            tap = weight[g * group_out + co, ci, i, j]
                            if flat:
                                target = padded + i * dilation_h * padded_w + j * dilation_w
                                out_row = pitched + co * pitched_size
                                for q in range(length):
                                    target[q] += tap * out_row[q]
                                continue
                            for oh in range(out_h):
                                target = (padded + (oh * stride_h + i * dilation_h) * padded_w
                                          + j * dilation_w)
                                out_row = &grad_output[n, g * group_out + co, oh, 0]
                                for ow in range(out_w):
                                    target[ow * stride_w] += tap * out_row[ow]
                unpad_add(padded, padded_h, padded_w, pad_h, pad_w, height, width,
                          &grad_input[n, g * group_in + ci, 0, 0])


def conv2d_backward_weight(const floating[:, :, :, ::1] grad_output,
                           const floating[:, :, :, ::1] input, floating[:, :, :, ::1] grad_weight,
                           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                           Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                           Py_ssize_t groups, floating[:, ::1] workspace, double[:, ::1] totals,
                           int n_threads):
    """grad_weight += the weight gradient, each tap's sum taken in double.

    A thread owns output channels, so the sums run over the batch in a fixed order.
    workspace: one row per thread of C_in / groups * padded_h * padded_w
    + out_h * padded_w elements; totals: one row per thread of C_in / groups * kH * kW.
    """
    cdef Py_ssize_t batch = input.shape[0], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = grad_weight.shape[0], group_in = grad_weight.shape[1]
    cdef Py_ssize_t kernel_h = grad_weight.shape[2], kernel_w = grad_weight.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t padded_h = (out_h - 1) * stride_h + dilation_h * (kernel_h - 1) + 1
    cdef Py_ssize_t padded_w = (out_w - 1) * stride_w + dilation_w * (kernel_w - 1) + 1
    cdef Py_ssize_t plane_size = padded_h * padded_w, taps = kernel_h * kernel_w
    cdef Py_ssize_t length = (out_h - 1) * padded_w + out_w
    cdef bint flat = stride_h == 1 and stride_w == 1
    cdef Py_ssize_t co, g, n, ci, i, j, oh, t
    cdef floating* padded
    cdef floating* pitched
    cdef double* total
    cdef const floating* source
    with nogil:
        for co in prange(out_channels, num_threads=n_threads, schedule="static"):
            g = co // group_out
            padded = &workspace[threadid(), 0]
            pitched = padded + group_in * plane_size
            total = &totals[threadid(), 0]
            for t in range(group_in * taps):
                total[t] = 0
            for n in range(batch):
                for ci in range(group_in):
                    pad_plane(&input[n, g * group_in + ci, 0, 0], height, width, pad_h, pad_w,
                              padded_h, padded_w, padded + ci * plane_size)
                if flat:
                    pitch_plane(&grad_output[n, co, 0, 0], out_h, out_w, padded_w, pitched)
                for ci in range(group_in):
                    for i in range(kernel_h):
                        for j in range(kernel_w):
                            t = ci * taps + i * kernel_w + j
                            source = padded + ci * plane_size + i * dilation_h * padded_w + j * dilation_w
                            if flat:
                                total[t] += dot(pitched, source, 1, length)
                                continue
                            for oh in range(out_h):
                                total[t] += dot(&grad_output[n, co, oh, 0],
                                                source + oh * stride_h * padded_w, stride_w, out_w)
            for t in range(group_in * taps):
                (&grad_weight[co, 0, 0, 0])[t] += <floating>total[t]
