# cython: boundscheck=False, wraparound=False, cdivision=True
"""Python entry points to im2col / col2im, so tests can call the verbs directly."""
from _common cimport floating
from _im2col cimport im2col_image, col2im_image


def im2col(const floating[:, :, ::1] image, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
           Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t out_h, Py_ssize_t out_w,
           floating[:, ::1] col):
    """col (C * kH * kW, >= out_h * out_w) <- patches of image (C, H, W), in each row's first
    out_h * out_w elements."""
    with nogil:
        im2col_image(&image[0, 0, 0], image.shape[0], image.shape[1], image.shape[2],
                     kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                     dilation_h, dilation_w, out_h, out_w, &col[0, 0], col.shape[1])


def col2im(const floating[:, ::1] col, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
           Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t out_h, Py_ssize_t out_w,
           floating[:, :, ::1] image):
    """image (C, H, W) += the first out_h * out_w columns of col scattered back to their pixels."""
    with nogil:
        col2im_image(&col[0, 0], image.shape[0], image.shape[1], image.shape[2],
                     kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                     dilation_h, dilation_w, out_h, out_w, &image[0, 0, 0], col.shape[1])
