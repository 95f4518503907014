"""Pure-NumPy implementations of every op: the oracle for tests and the baseline for benchmarks.

Written for clarity, vectorised where that stays readable. Never imported by the fast path.
"""
import numpy as np

from fastconv._checks import (check_activation, check_adaptive_pool2d, check_bias, check_conv2d,
                              check_conv_transpose2d, check_divisor_override, check_grad_output,
                              check_interpolate, check_pool2d, check_rank, check_same_shape,
                              check_switches, check_unpool2d, check_unpool2d_backward,
                              float_arrays, shape_tuple)


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


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           activation=None):
    """Reference torch.nn.functional.conv2d: one einsum per kernel tap; activation="relu"
    then applies relu."""
    arrays = float_arrays("conv2d", input=input, weight=weight, bias=bias)
    input, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    g = check_conv2d("conv2d", input, weight, stride, padding, dilation, groups)
    check_bias("conv2d", bias, weight.shape[0])
    check_activation("conv2d", activation)
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
    if activation == "relu":
        output = relu(output)
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


def relu(input):
    """Reference torch.nn.functional.relu."""
    return np.maximum(float_arrays("relu", input=input)["input"], 0)


def relu_backward(grad_output, output):
    """Reference gradient of relu, given its output."""
    arrays = float_arrays("relu_backward", grad_output=grad_output, output=output)
    check_same_shape("relu_backward", "grad_output", arrays["grad_output"], "output",
                     arrays["output"])
    return arrays["grad_output"] * (arrays["output"] > 0)


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


# --- pooling ---------------------------------------------------------------------------
# The window taps (i, j) of a pooling geometry are strided views, as for conv2d; a tap that
# falls into the padding reads the zero padding of _padded.

def _taps(array, geometry):
    """The (kH * kW, N, C, H_out, W_out) stack of every tap's view, in row-major tap order."""
    g = geometry
    return np.stack([_tap(array, g, i, j) for i in range(g.kernel_h) for j in range(g.kernel_w)])


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Reference max_pool2d -> (output, indices): the taps stacked, then the first maximum."""
    input = float_arrays("max_pool2d", input=input)["input"]
    g = check_pool2d("max_pool2d", input.shape, kernel_size, stride, padding, dilation,
                     ceil_mode)
    height, width = input.shape[2:]
    inside = _taps(_padded(np.ones((1, 1, height, width), bool), g, g.kernel_h, g.kernel_w), g)
    position = np.arange(height * width).reshape(1, 1, height, width)
    positions = _taps(_padded(position, g, g.kernel_h, g.kernel_w), g)
    values = np.where(inside, _taps(_padded(input, g, g.kernel_h, g.kernel_w), g), -np.inf)
    output = values.max(axis=0)
    # The first tap inside the input holding the maximum, or the first NaN if there is
    # one; padding never wins, not even against a window of -inf.
    nan_window = np.isnan(output)
    hit = inside & ((values == output) | (np.isnan(values) & nan_window))
    first = hit.argmax(axis=0)
    indices = np.take_along_axis(np.broadcast_to(positions, values.shape), first[None], 0)[0]
    return output.astype(input.dtype), indices.astype(np.int64)


def max_pool2d_backward(grad_output, indices, input_shape):
    """Reference gradient of max_pool2d: grad_output summed into the switches' positions."""
    fn = "max_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    indices, input_shape = check_switches(fn, grad_output, indices, input_shape)
    return _scatter_add(grad_output, indices, input_shape)


def _scatter_add(values, indices, shape):
    """An array of shape with values[n, c].flat summed into plane (n, c) at indices[n, c]."""
    batch, channels, height, width = shape
    plane_start = np.arange(batch * channels).reshape(batch, channels, 1, 1) * (height * width)
    total = np.bincount((plane_start + indices).ravel(), weights=values.ravel(),
                        minlength=batch * channels * height * width)
    return total.reshape(shape).astype(values.dtype)


def _avg_pool_divisors(geometry, height, width, count_include_pad, divisor_override):
    """(H_out, W_out) divisors: window sizes clipped to input + padding, or to the input."""
    g = geometry

    def lengths(size, kernel, stride, pad, n_out):
        start = np.arange(n_out) * stride - pad
        end = np.minimum(start + kernel, size + pad)
        if count_include_pad:
            return end - start
        return np.minimum(end, size) - np.maximum(start, 0)

    if divisor_override:
        return np.full((g.out_h, g.out_w), divisor_override)
    return np.outer(lengths(height, g.kernel_h, g.stride_h, g.pad_h, g.out_h),
                    lengths(width, g.kernel_w, g.stride_w, g.pad_w, g.out_w))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Reference avg_pool2d: the zero-padded taps summed in double, over the divisors."""
    input = float_arrays("avg_pool2d", input=input)["input"]
    g = check_pool2d("avg_pool2d", input.shape, kernel_size, stride, padding, 1, ceil_mode)
    divisor_override = check_divisor_override("avg_pool2d", divisor_override)
    total = _taps(_padded(input, g, g.kernel_h, g.kernel_w), g).sum(axis=0, dtype=np.float64)
    divisors = _avg_pool_divisors(g, *input.shape[2:], count_include_pad, divisor_override)
    return (total / divisors).astype(input.dtype)


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Reference gradient of avg_pool2d: each window's share added back through every tap."""
    fn = "avg_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    input_shape = shape_tuple(fn, "input_shape", input_shape)
    g = check_pool2d(fn, input_shape, kernel_size, stride, padding, 1, ceil_mode)
    divisor_override = check_divisor_override(fn, divisor_override)
    check_grad_output(fn, grad_output, (*input_shape[:2], g.out_h, g.out_w))
    height, width = input_shape[2:]
    share = grad_output / _avg_pool_divisors(g, height, width, count_include_pad,
                                             divisor_override)
    grad_padded = _padded(np.zeros(input_shape, grad_output.dtype), g, g.kernel_h, g.kernel_w)
    for i in range(g.kernel_h):
        for j in range(g.kernel_w):
            _tap(grad_padded, g, i, j)[...] += share
    return np.ascontiguousarray(grad_padded[:, :, g.pad_h:g.pad_h + height,
                                            g.pad_w:g.pad_w + width])


def _adaptive_windows(size, out_size):
    """[(start, end)] of each output: floor(i * size / out) to ceil((i + 1) * size / out)."""
    return [(i * size // out_size, -(-(i + 1) * size // out_size)) for i in range(out_size)]


def adaptive_avg_pool2d(input, output_size):
    """Reference adaptive_avg_pool2d: one window mean (in double) per output position."""
    input = float_arrays("adaptive_avg_pool2d", input=input)["input"]
    out_h, out_w = check_adaptive_pool2d("adaptive_avg_pool2d", input.shape, output_size)
    output = np.empty((*input.shape[:2], out_h, out_w), input.dtype)
    for oh, (top, bottom) in enumerate(_adaptive_windows(input.shape[2], out_h)):
        for ow, (left, right) in enumerate(_adaptive_windows(input.shape[3], out_w)):
            output[:, :, oh, ow] = input[:, :, top:bottom, left:right].mean(axis=(2, 3),
                                                                            dtype=np.float64)
    return output


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """Reference gradient of adaptive_avg_pool2d: each output's share spread over its window."""
    fn = "adaptive_avg_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    input_shape = shape_tuple(fn, "input_shape", input_shape)
    check_rank(fn, "grad_output", grad_output, 4, "(N, C, H_out, W_out)")
    out_h, out_w = check_adaptive_pool2d(fn, input_shape, grad_output.shape[2:])
    check_grad_output(fn, grad_output, (*input_shape[:2], out_h, out_w))
    grad_input = np.zeros(input_shape, grad_output.dtype)
    for oh, (top, bottom) in enumerate(_adaptive_windows(input_shape[2], out_h)):
        for ow, (left, right) in enumerate(_adaptive_windows(input_shape[3], out_w)):
            size = (bottom - top) * (right - left)
            grad_input[:, :, top:bottom, left:right] += grad_output[:, :, oh, ow, None, None] / size
    return grad_input


def adaptive_max_pool2d(input, output_size):
    """Reference adaptive_max_pool2d -> (output, indices): np.argmax over each window.

    np.argmax returns the first maximum, or the first NaN, as max_pool2d requires.
    """
    input = float_arrays("adaptive_max_pool2d", input=input)["input"]
    out_h, out_w = check_adaptive_pool2d("adaptive_max_pool2d", input.shape, output_size)
    batch, channels, height, width = input.shape
    output = np.empty((batch, channels, out_h, out_w), input.dtype)
    indices = np.empty((batch, channels, out_h, out_w), np.int64)
    for oh, (top, bottom) in enumerate(_adaptive_windows(height, out_h)):
        for ow, (left, right) in enumerate(_adaptive_windows(width, out_w)):
            window = input[:, :, top:bottom, left:right].reshape(batch, channels, -1)
            first = window.argmax(axis=2)
            output[:, :, oh, ow] = np.take_along_axis(window, first[..., None], 2)[..., 0]
            rows, columns = np.divmod(first, right - left)
            indices[:, :, oh, ow] = (top + rows) * width + left + columns
    return output, indices


def adaptive_max_pool2d_backward(grad_output, indices, input_shape):
    """Reference gradient of adaptive_max_pool2d: the scatter of max_pool2d_backward."""
    fn = "adaptive_max_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    indices, input_shape = check_switches(fn, grad_output, indices, input_shape)
    return _scatter_add(grad_output, indices, input_shape)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Reference max_unpool2d: zeros, then each input written at its index in its plane."""
    fn = "max_unpool2d"
    input = float_arrays(fn, input=input)["input"]
    indices, out_h, out_w = check_unpool2d(fn, input, indices, kernel_size, stride, padding,
                                           output_size)
    batch, channels = input.shape[:2]
    output = np.zeros((batch, channels, out_h * out_w), input.dtype)
    plane_start = np.arange(batch * channels).reshape(batch, channels, 1, 1) * (out_h * out_w)
    # A 1-D fancy assignment writes in order, so of repeated indices the last one wins.
    output.reshape(-1)[(plane_start + indices).ravel()] = input.ravel()
    return output.reshape(batch, channels, out_h, out_w)


def max_unpool2d_backward(grad_output, indices):
    """Reference gradient of max_unpool2d: grad_output read back at the indices."""
    fn = "max_unpool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    indices = check_unpool2d_backward(fn, grad_output, indices)
    batch, channels = indices.shape[:2]
    planes = grad_output.reshape(batch, channels, -1)
    return np.take_along_axis(planes, indices.reshape(batch, channels, -1), 2).reshape(
        indices.shape)


# --- interpolation ---------------------------------------------------------------------
# Both modes are separable linear maps: output = A_h @ input @ A_w.T with one (out, in)
# matrix per axis, and the gradient is A_h.T @ grad_output @ A_w.

def _nearest_sources(size, out_size, scale):
    """PyTorch's legacy nearest source index of every output index, in single precision."""
    dst = np.arange(out_size)
    if out_size == size:
        return dst
    if out_size == 2 * size:
        return dst // 2
    ratio = np.float32(1.0 / scale) if scale else np.float32(size) / np.float32(out_size)
    return np.minimum(np.floor(dst.astype(np.float32) * ratio).astype(np.int64), size - 1)


def _linear_matrix(size, out_size, scale, align_corners, dtype):
    """The (out_size, size) bilinear weights along one axis, in the precision of dtype."""
    real = np.dtype(dtype).type
    matrix = np.zeros((out_size, size), dtype)
    if out_size == size:
        np.fill_diagonal(matrix, 1)
        return matrix
    dst = np.arange(out_size).astype(dtype)
    if align_corners:
        ratio = real(size - 1) / real(out_size - 1) if out_size > 1 else real(0)
        source = ratio * dst
    else:
        ratio = real(1.0 / scale) if scale else real(size) / real(out_size)
        source = np.maximum(ratio * (dst + real(0.5)) - real(0.5), 0)
    index0 = np.minimum(np.floor(source).astype(np.int64), size - 1)
    index1 = np.minimum(index0 + 1, size - 1)
    weight1 = np.clip(source - index0, 0, 1)
    rows = np.arange(out_size)
    matrix[rows, index0] = 1 - weight1
    matrix[rows, index1] += weight1
    return matrix


def _interpolation_matrices(geometry, height, width, dtype):
    g = geometry
    if g.mode == "nearest":
        return (np.eye(height, dtype=dtype)[_nearest_sources(height, g.out_h, g.scale_h)],
                np.eye(width, dtype=dtype)[_nearest_sources(width, g.out_w, g.scale_w)])
    return (_linear_matrix(height, g.out_h, g.scale_h, g.align_corners, dtype),
            _linear_matrix(width, g.out_w, g.scale_w, g.align_corners, dtype))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Reference interpolate: nearest by indexing, bilinear as A_h @ input @ A_w.T."""
    fn = "interpolate"
    input = float_arrays(fn, input=input)["input"]
    g = check_interpolate(fn, input.shape, size, scale_factor, mode, align_corners,
                          recompute_scale_factor)
    height, width = input.shape[2:]
    if g.mode == "nearest":
        rows = _nearest_sources(height, g.out_h, g.scale_h)
        columns = _nearest_sources(width, g.out_w, g.scale_w)
        return np.ascontiguousarray(input[:, :, rows[:, None], columns[None, :]])
    along_h, along_w = _interpolation_matrices(g, height, width, input.dtype)
    return np.ascontiguousarray(along_h @ input @ along_w.T)


def interpolate_backward(grad_output, input_shape, size=None, scale_factor=None, mode="nearest",
                         align_corners=None, recompute_scale_factor=None):
    """Reference gradient of interpolate: A_h.T @ grad_output @ A_w."""
    fn = "interpolate_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    input_shape = shape_tuple(fn, "input_shape", input_shape)
    g = check_interpolate(fn, input_shape, size, scale_factor, mode, align_corners,
                          recompute_scale_factor)
    check_grad_output(fn, grad_output, (*input_shape[:2], g.out_h, g.out_w))
    along_h, along_w = _interpolation_matrices(g, *input_shape[2:], grad_output.dtype)
    return np.ascontiguousarray(along_h.T @ grad_output @ along_w)
