# im2col and col2im for one image: the two verbs the GEMM convolutions are built from.
# col has one row per (channel, kernel row, kernel column) and one column per output
# pixel, so the GEMM with the (C_out, C_in * kH * kW) weight matrix yields NCHW output.
# Rows are row_pitch elements apart, so several images' columns can sit side by side.
# pad_h / pad_w are the top / left padding; the bottom / right padding is whatever
# out_h / out_w imply, which also covers PyTorch's asymmetric padding="same".
from libc.string cimport memset
from _common cimport floating, first_valid, end_valid


cdef inline void im2col_image(const floating* image, Py_ssize_t channels, Py_ssize_t height,
                              Py_ssize_t width, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                              Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                              Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                              Py_ssize_t out_h, Py_ssize_t out_w, floating* col,
                              Py_ssize_t row_pitch) noexcept nogil:
    cdef Py_ssize_t c, i, j, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, offset_w
    cdef const floating* src
    cdef floating* row = col
    for c in range(channels):
        for i in range(kernel_h):
            oh_lo = first_valid(i * dilation_h - pad_h, stride_h, out_h)
            oh_hi = end_valid(i * dilation_h - pad_h, stride_h, height, out_h)
            for j in range(kernel_w):
                offset_w = j * dilation_w - pad_w
                ow_lo = first_valid(offset_w, stride_w, out_w)
                ow_hi = end_valid(offset_w, stride_w, width, out_w)
                memset(row, 0, oh_lo * out_w * sizeof(floating))
                for oh in range(oh_lo, oh_hi):
                    src = image + (c * height + oh * stride_h + i * dilation_h - pad_h) * width + offset_w
                    for ow in range(ow_lo):
                        row[oh * out_w + ow] = 0
                    if stride_w == 1:
                        for ow in range(ow_lo, ow_hi):
                            row[oh * out_w + ow] = src[ow]
                    else:
                        for ow in range(ow_lo, ow_hi):
                            row[oh * out_w + ow] = src[ow * stride_w]
                    for ow in range(ow_hi, out_w):
                        row[oh * out_w + ow] = 0
                memset(row + oh_hi * out_w, 0, (out_h - oh_hi) * out_w * sizeof(floating))
                row += row_pitch


cdef inline void col2im_image(const floating* col, Py_ssize_t channels, Py_ssize_t height,
                              Py_ssize_t width, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                              Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                              Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                              Py_ssize_t out_h, Py_ssize_t out_w, floating* image,
                              Py_ssize_t row_pitch) noexcept nogil:
    """Adds each column entry back to the pixel it was copied from (image += col2im)."""
    cdef Py_ssize_t c, i, j, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, offset_w
    cdef floating* dst
    cdef const floating* row = col
    for c in range(channels):
        for i in range(kernel_h):
            oh_lo = first_valid(i * dilation_h - pad_h, stride_h, out_h)
            oh_hi = end_valid(i * dilation_h - pad_h, stride_h, height, out_h)
            for j in range(kernel_w):
                offset_w = j * dilation_w - pad_w
                ow_lo = first_valid(offset_w, stride_w, out_w)
                ow_hi = end_valid(offset_w, stride_w, width, out_w)
                for oh in range(oh_lo, oh_hi):
                    dst = image + (c * height + oh * stride_h + i * dilation_h - pad_h) * width + offset_w
                    if stride_w == 1:
                        for ow in range(ow_lo, ow_hi):
                            dst[ow] += row[oh * out_w + ow]
                    else:
                        for ow in range(ow_lo, ow_hi):
                            dst[ow * stride_w] += row[oh * out_w + ow]
                row += row_pitch
