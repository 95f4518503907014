"""Pure-NumPy implementations of every op: the oracle for tests and the baseline for benchmarks.

Written for clarity, vectorised where that stays readable. Never imported by the fast path.
"""
import numpy as np

from fastconv._checks import (check_bias, check_conv2d, check_conv_transpose2d, check_grad_output,
                              float_arrays)


def _padded(input, geometry, kernel_h, kernel_w):
    """input zero-padded so every window of the output lies inside it."""
    g = geometry
    height, width = input.shape[2:]
    bottom = (g.out_h - 1) * g.stride_h + g.dilation_h * (kernel_h - 1) + 1 - height - g.pad_h
    right = (g.out_w - 1) * g.stride_w + g.dilation_w * (kernel_w - 1) + 1 - width - g.pad_w
    return np.pad(input, ((0, 0), (0, 0), (g.pad_h, max(bottom, 0)), (g.pad_w, max(right, 0))))


def _tap(array, geometry, i, j):
    """The (N, C, H_out, W_out) view of array that kernel tap (i, j) reads."""
    g = geometry
    top, left = i * g.dilation_h, j * g.dilation_w
    return array[:, :, top:top + (g.out_h - 1) * g.stride_h + 1:g.stride_h,
                 left:left + (g.out_w - 1) * g.stride_w + 1:g.stride_w]


def _grouped(array, groups):
    """(N, C, ...) -> (N, groups, C / groups, ...)"""
    return array.reshape(array.shape[0], groups, array.shape[1] // groups, *array.shape[2:])


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Reference torch.nn.functional.conv2d: one einsum per kernel tap."""
    arrays = float_arrays("conv2d", input=input, weight=weight, bias=bias)
    input, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    g = check_conv2d("conv2d", input, weight, stride, padding, dilation, groups)
    check_bias("conv2d", bias, weight.shape[0])
    out_channels, _, kernel_h, kernel_w = weight.shape
    padded = _padded(input, g, kernel_h, kernel_w)
    weight_grouped = weight.reshape(groups, out_channels // groups, *weight.shape[1:])
    output = np.zeros((input.shape[0], groups, out_channels // groups, g.out_h, g.out_w),
                      input.dtype)
    for i in range(kernel_h):
        for j in range(kernel_w):
            output += np.einsum("ngchw,goc->ngohw", _grouped(_tap(padded, g, i, j), groups),
                                weight_grouped[:, :, :, i, j])
    output = output.reshape(input.shape[0], out_channels, g.out_h, g.out_w)
    if bias is not None:
        output += bias[None, :, None, None]
    return output


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True)):
    """Reference gradients of conv2d: (grad_input, grad_weight, grad_bias)."""
    fn = "conv2d_backward"
    arrays = float_arrays(fn, grad_output=grad_output, input=input, weight=weight)
    grad_output, input, weight = arrays["grad_output"], arrays["input"], arrays["weight"]
    g = check_conv2d(fn, input, weight, stride, padding, dilation, groups)
    out_channels, _, kernel_h, kernel_w = weight.shape
    check_grad_output(fn, grad_output, (input.shape[0], out_channels, g.out_h, g.out_w))
    padded = _padded(input, g, kernel_h, kernel_w)
    grad_padded = np.zeros_like(padded)
    grad_weight = np.zeros_like(weight)
    weight_grouped = weight.reshape(groups, out_channels // groups, *weight.shape[1:])
    grad_weight_grouped = grad_weight.reshape(weight_grouped.shape)
    grad_grouped = _grouped(grad_output, groups)
    for i in range(kernel_h):
        for j in range(kernel_w):
            grad_weight_grouped[:, :, :, i, j] = np.einsum(
                "ngohw,ngchw->goc", grad_grouped, _grouped(_tap(padded, g, i, j), groups))
            _grouped(_tap(grad_padded, g, i, j), groups)[...] += np.einsum(
                "ngohw,goc->ngchw", grad_grouped, weight_grouped[:, :, :, i, j])
    height, width = input.shape[2:]
    grad_input = grad_padded[:, :, g.pad_h:g.pad_h + height, g.pad_w:g.pad_w + width]
    grad_bias = grad_output.sum(axis=(0, 2, 3))
    results = (np.ascontiguousarray(grad_input), grad_weight, grad_bias)
    return tuple(r if m else None for r, m in zip(results, output_mask))


def _transpose_taps(geometry, size, kernel_h, kernel_w):
    """Padded output canvas size of a transposed convolution (before cropping padding)."""
    g = geometry
    return (max(size[0] + 2 * g.pad_h, (g.out_h - 1) * g.stride_h + g.dilation_h * (kernel_h - 1) + 1),
            max(size[1] + 2 * g.pad_w, (g.out_w - 1) * g.stride_w + g.dilation_w * (kernel_w - 1) + 1))


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Reference torch.nn.functional.conv_transpose2d: each input pixel scatters its
    kernel-weighted copy onto a padded canvas, one einsum per kernel tap; the padding is
    then cropped off."""
    fn = "conv_transpose2d"
    arrays = float_arrays(fn, input=input, weight=weight, bias=bias)
    input, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    g, size = check_conv_transpose2d(fn, input, weight, stride, padding, output_padding,
                                     groups, dilation)
    in_channels, group_out, kernel_h, kernel_w = weight.shape
    check_bias(fn, bias, group_out * groups)
    canvas = np.zeros((input.shape[0], group_out * groups,
                       *_transpose_taps(g, size, kernel_h, kernel_w)), input.dtype)
    weight_grouped = weight.reshape(groups, in_channels // groups, group_out, kernel_h, kernel_w)
    for i in range(kernel_h):
        for j in range(kernel_w):
            _grouped(_tap(canvas, g, i, j), groups)[...] += np.einsum(
                "ngchw,gco->ngohw", _grouped(input, groups), weight_grouped[:, :, :, i, j])
    output = canvas[:, :, g.pad_h:g.pad_h + size[0], g.pad_w:g.pad_w + size[1]]
    if bias is not None:
        output = output + bias[None, :, None, None]
    return np.ascontiguousarray(output)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, output_mask=(True, True, True)):
    """Reference gradients of conv_transpose2d: (grad_input, grad_weight, grad_bias)."""
    fn = "conv_transpose2d_backward"
    arrays = float_arrays(fn, grad_output=grad_output, input=input, weight=weight)
    grad_output, input, weight = arrays["grad_output"], arrays["input"], arrays["weight"]
    g, size = check_conv_transpose2d(fn, input, weight, stride, padding, output_padding,
                                     groups, dilation)
    in_channels, group_out, kernel_h, kernel_w = weight.shape
    check_grad_output(fn, grad_output, (input.shape[0], group_out * groups, *size))
    canvas = np.zeros((input.shape[0], group_out * groups,
                       *_transpose_taps(g, size, kernel_h, kernel_w)), input.dtype)
    canvas[:, :, g.pad_h:g.pad_h + size[0], g.pad_w:g.pad_w + size[1]] = grad_output
    weight_grouped = weight.reshape(groups, in_channels // groups, group_out, kernel_h, kernel_w)
    grad_input = np.zeros_like(input)
    grad_weight = np.zeros_like(weight)
    grad_weight_grouped = grad_weight.reshape(weight_grouped.shape)
    for i in range(kernel_h):
        for j in range(kernel_w):
            tap = _grouped(_tap(canvas, g, i, j), groups)
            _grouped(grad_input, groups)[...] += np.einsum(
                "ngohw,gco->ngchw", tap, weight_grouped[:, :, :, i, j])
            grad_weight_grouped[:, :, :, i, j] = np.einsum(
                "ngohw,ngchw->gco", tap, _grouped(input, groups))
    grad_bias = grad_output.sum(axis=(0, 2, 3))
    results = (grad_input, grad_weight, grad_bias)
    return tuple(r if m else None for r, m in zip(results, output_mask))
