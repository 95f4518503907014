"""Argument validation, one function per op family, shared by forward and backward.

Nothing reaches a kernel without passing through here: every array comes back
C-contiguous with one float dtype, every geometry as checked ints.
"""
from typing import NamedTuple

import numpy as np

from fastconv._shapes import (conv_output_size, conv_transpose_output_size, pair,
                              pool_output_size, same_padding, scaled_size, unpool_output_size)

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_arrays(fn, **arrays):
    """The arrays as C-contiguous ndarrays of one float dtype (None passes through)."""
    out = {}
    for name, value in arrays.items():
        if value is None:
            out[name] = None
            continue
        array = np.asarray(value)
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {array.dtype}")
        # Not np.ascontiguousarray, which turns a 0-d array into shape (1,) and so
        # would misreport the shape in the rank error that follows.
        out[name] = np.asarray(array, order="C")
    dtypes = {name: a.dtype for name, a in out.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{fn}: all arrays must share one dtype, got {listed}")
    return out


ACTIVATIONS = (None, "relu")


# What native_batch_norm can apply in its own pass.
BATCH_NORM_ACTIVATIONS = (None, "relu", "gelu", "gelu_tanh")


def check_activation(fn, activation, allowed=ACTIVATIONS):
    """activation, checked to be one of allowed (conv2d's ACTIVATIONS by default)."""
    if not (activation is None or isinstance(activation, str)) or activation not in allowed:
        raise ValueError(f"{fn}: activation must be one of {allowed}, got {activation!r}")
    return activation


def check_rank(fn, name, array, rank, layout):
    if array.ndim != rank:
        raise ValueError(f"{fn}: expected {rank}-D {name} {layout}, got shape {array.shape}")


def positive_pair(fn, name, value):
    h, w = pair(value, name, fn)
    if h < 1 or w < 1:
        raise ValueError(f"{fn}: {name} must be positive, got {value!r}")
    return h, w


class ConvGeometry(NamedTuple):
    """A checked conv2d geometry; pad_* are the top/left padding, out_* imply the rest."""
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dilation_h: int
    dilation_w: int
    groups: int
    out_h: int
    out_w: int

    def kernel_args(self):
        return (self.stride_h, self.stride_w, self.pad_h, self.pad_w,
                self.dilation_h, self.dilation_w, self.groups)


def check_conv2d(fn, input, weight, stride, padding, dilation, groups):
    """Validate conv2d arguments (arrays already through float_arrays) and return the geometry."""
    check_rank(fn, "input", input, 4, "(N, C_in, H, W)")
    check_rank(fn, "weight", weight, 4, "(C_out, C_in / groups, kH, kW)")
    check_groups(fn, groups, input.shape[1], weight.shape[0], input, weight)
    batch, in_channels, height, width = input.shape
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    if group_in * groups != in_channels:
        raise ValueError(f"{fn}: weight {weight.shape} expects C_in / groups = {group_in}, "
                         f"but input {input.shape} with groups={groups} gives "
                         f"{in_channels // groups}")
    check_kernel(fn, weight)
    stride_h, stride_w = positive_pair(fn, "stride", stride)
    dilation_h, dilation_w = positive_pair(fn, "dilation", dilation)
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0), (0, 0)
        elif padding == "same":
            if (stride_h, stride_w) != (1, 1):
                raise ValueError(f"{fn}: padding='same' is not supported for strided "
                                 f"convolutions, got stride {stride!r}")
            pads = same_padding(kernel_h, dilation_h), same_padding(kernel_w, dilation_w)
        else:
            raise ValueError(f"{fn}: padding must be 'same', 'valid', an int or a pair, "
                             f"got {padding!r}")
    else:
        pad_h, pad_w = non_negative_pair(fn, "padding", padding)
        pads = (pad_h, pad_h), (pad_w, pad_w)
    out_h = conv_output_size(height, kernel_h, stride_h, *pads[0], dilation_h)
    out_w = conv_output_size(width, kernel_w, stride_w, *pads[1], dilation_w)
    check_output_size(fn, (height, width), padding, (kernel_h, kernel_w),
                      (dilation_h, dilation_w), (out_h, out_w))
    return ConvGeometry(stride_h, stride_w, pads[0][0], pads[1][0], dilation_h, dilation_w,
                        groups, out_h, out_w)


def check_conv_transpose2d(fn, input, weight, stride, padding, output_padding, groups, dilation):
    """Validate conv_transpose2d arguments and return the geometry of the matching conv2d,
    whose out_h / out_w are the transposed convolution's input size."""
    check_rank(fn, "input", input, 4, "(N, C_in, H, W)")
    check_rank(fn, "weight", weight, 4, "(C_in, C_out / groups, kH, kW)")
    batch, in_channels, height, width = input.shape
    check_groups(fn, groups, in_channels, weight.shape[1] * groups, input, weight)
    if weight.shape[0] != in_channels:
        raise ValueError(f"{fn}: weight {weight.shape} expects C_in = {weight.shape[0]}, "
                         f"got input {input.shape}")
    check_kernel(fn, weight)
    kernel_h, kernel_w = weight.shape[2:]
    stride_h, stride_w = positive_pair(fn, "stride", stride)
    dilation_h, dilation_w = positive_pair(fn, "dilation", dilation)
    pad_h, pad_w = non_negative_pair(fn, "padding", padding)
    extra_h, extra_w = non_negative_pair(fn, "output_padding", output_padding)
    if extra_h >= max(stride_h, dilation_h) or extra_w >= max(stride_w, dilation_w):
        raise ValueError(f"{fn}: output_padding must be smaller than either stride or "
                         f"dilation, got output_padding {output_padding!r}, stride {stride!r}, "
                         f"dilation {dilation!r}")
    size_h = conv_transpose_output_size(height, kernel_h, stride_h, pad_h, extra_h, dilation_h)
    size_w = conv_transpose_output_size(width, kernel_w, stride_w, pad_w, extra_w, dilation_w)
    if size_h < 1 or size_w < 1:
        raise ValueError(f"{fn}: given input size ({height}x{width}), kernel ({kernel_h}x"
                         f"{kernel_w}), stride {stride!r}, padding {padding!r} and dilation "
                         f"{dilation!r}, calculated output size ({size_h}x{size_w}) is too small")
    return ConvGeometry(stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups,
                        height, width), (size_h, size_w)


def check_groups(fn, groups, in_channels, out_channels, input, weight):
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{fn}: groups must be positive, got {groups!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{fn}: groups={groups} must divide both C_in={in_channels} and "
                         f"C_out={out_channels} (input {input.shape}, weight {weight.shape})")


def check_kernel(fn, weight):
    if min(weight.shape) < 1:
        raise ValueError(f"{fn}: channels and kernel size must be positive, got weight "
                         f"{weight.shape}")


def non_negative_pair(fn, name, value):
    h, w = pair(value, name, fn)
    if h < 0 or w < 0:
        raise ValueError(f"{fn}: {name} must be non-negative, got {value!r}")
    return h, w


def check_output_size(fn, input_size, padding, kernel, dilation, output_size):
    if min(output_size) < 1:
        dilated = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        raise ValueError(
            f"{fn}: given input size ({input_size[0]}x{input_size[1]}), padding {padding!r} "
            f"and dilated kernel size ({dilated[0]}x{dilated[1]}), calculated output size "
            f"({output_size[0]}x{output_size[1]}) is too small")


def check_bias(fn, bias, channels):
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"{fn}: expected bias of shape ({channels},), got {bias.shape}")


# The activations conv2d can apply to its output while it is still in cache.
def check_same_shape(fn, first_name, first, second_name, second):
    if first.shape != second.shape:
        raise ValueError(f"{fn}: {first_name} and {second_name} must have the same shape, "
                         f"got {first.shape} and {second.shape}")


def check_grad_output(fn, grad_output, expected):
    if grad_output.shape != tuple(expected):
        raise ValueError(f"{fn}: expected grad_output of shape {tuple(expected)}, "
                         f"got {grad_output.shape}")


# Pooling, unpooling and interpolation. Their backward passes take input_shape instead of
# the input, so these checks work on shapes.

def check_planes(fn, name, shape):
    """A 4-D (N, C, H, W) shape with non-empty planes; an empty batch is allowed."""
    if len(shape) != 4:
        raise ValueError(f"{fn}: expected 4-D {name} (N, C, H, W), got shape {tuple(shape)}")
    if shape[0] < 0 or min(shape[1:]) < 1:
        raise ValueError(f"{fn}: expected {name} (N, C, H, W) with positive C, H and W, "
                         f"got shape {tuple(shape)}")


def shape_tuple(fn, name, value):
    """A user-given (N, C, H, W) shape as a checked tuple of ints."""
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be a sequence (N, C, H, W), got {value!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in shape):
        raise TypeError(f"{fn}: {name} must be a sequence of ints, got {value!r}")
    shape = tuple(int(v) for v in shape)
    check_planes(fn, name, shape)
    return shape


class PoolGeometry(NamedTuple):
    """A checked max_pool2d / avg_pool2d geometry; pad_* are the padding on each side."""
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dilation_h: int
    dilation_w: int
    out_h: int
    out_w: int

    def kernel_args(self):
        return (self.kernel_h, self.kernel_w, self.stride_h, self.stride_w,
                self.pad_h, self.pad_w, self.dilation_h, self.dilation_w)


def check_pool2d(fn, input_shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate pooling arguments for an input of input_shape and return the geometry.

    stride=None means stride=kernel_size; the padding may be at most half the dilated
    kernel, as PyTorch requires.
    """
    check_planes(fn, "input", input_shape)
    kernel_h, kernel_w = positive_pair(fn, "kernel_size", kernel_size)
    if stride is None:
        stride_h, stride_w = kernel_h, kernel_w
    else:
        stride_h, stride_w = positive_pair(fn, "stride", stride)
    dilation_h, dilation_w = positive_pair(fn, "dilation", dilation)
    pad_h, pad_w = pair(padding, "padding", fn)
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"{fn}: padding must be non-negative, got {padding!r}")
    effective_h = dilation_h * (kernel_h - 1) + 1
    effective_w = dilation_w * (kernel_w - 1) + 1
    if pad_h > effective_h // 2 or pad_w > effective_w // 2:
        raise ValueError(f"{fn}: padding should be at most half of the effective kernel size, "
                         f"got padding {padding!r} with kernel_size {kernel_size!r} and "
                         f"dilation {dilation!r} (effective kernel {effective_h}x{effective_w})")
    height, width = input_shape[2:]
    out_h = pool_output_size(height, kernel_h, stride_h, pad_h, dilation_h, ceil_mode)
    out_w = pool_output_size(width, kernel_w, stride_w, pad_w, dilation_w, ceil_mode)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{fn}: given input size ({height}x{width}), padding {padding!r} and effective "
            f"kernel size ({effective_h}x{effective_w}), calculated output size "
            f"({out_h}x{out_w}) is too small")
    for axis, size, kernel, step, pad, dilation, n_out in (
            ("H", height, kernel_h, stride_h, pad_h, dilation_h, out_h),
            ("W", width, kernel_w, stride_w, pad_w, dilation_w, out_w)):
        # A dilated window starting in the padding can step over a small input entirely;
        # it would have no element to take (PyTorch returns an invalid index there).
        for o in range(n_out):
            start = o * step - pad
            if start >= 0:
                break
            if start + (-start + dilation - 1) // dilation * dilation >= size:
                raise ValueError(f"{fn}: window {o} along {axis} holds no input element: "
                                 f"input size {size}, kernel {kernel}, dilation {dilation}, "
                                 f"padding {pad}")
    return PoolGeometry(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                        dilation_h, dilation_w, out_h, out_w)


def check_divisor_override(fn, divisor_override):
    if divisor_override is None:
        return 0
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
        raise TypeError(f"{fn}: divisor_override must be an int or None, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError(f"{fn}: divisor_override must not be zero")
    return int(divisor_override)


def check_indices(fn, indices, shape, plane_h, plane_w):
    """int64 indices of this shape, each a flat position h * W + w in a plane_h x plane_w plane."""
    indices = np.asarray(indices)
    if indices.dtype != np.int64:
        raise TypeError(f"{fn}: indices must be int64, got dtype {indices.dtype}")
    if indices.shape != tuple(shape):
        raise ValueError(f"{fn}: expected indices of shape {tuple(shape)}, got {indices.shape}")
    # Viewed as unsigned, negative indices become huge: one max() checks both bounds.
    if indices.size and int(indices.view(np.uint64).max()) >= plane_h * plane_w:
        raise ValueError(f"{fn}: indices must lie in [0, {plane_h * plane_w}) for "
                         f"{plane_h}x{plane_w} planes, got values in "
                         f"[{indices.min()}, {indices.max()}]")
    return np.ascontiguousarray(indices)


def check_switches(fn, grad_output, indices, input_shape):
    """The backward of max pooling: grad_output and its argmax indices into input_shape planes.

    Returns (indices, input_shape), checked.
    """
    input_shape = shape_tuple(fn, "input_shape", input_shape)
    check_rank(fn, "grad_output", grad_output, 4, "(N, C, H_out, W_out)")
    if grad_output.shape[:2] != input_shape[:2]:
        raise ValueError(f"{fn}: grad_output {grad_output.shape} and input_shape {input_shape} "
                         f"disagree on (N, C)")
    indices = check_indices(fn, indices, grad_output.shape, *input_shape[2:])
    return indices, input_shape


def check_adaptive_pool2d(fn, input_shape, output_size):
    """(out_h, out_w) from output_size: an int or an (h, w) pair, None keeping the input size."""
    check_planes(fn, "input", input_shape)
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        out_h, out_w = output_size
    else:
        out_h = out_w = output_size
    out_h = input_shape[2] if out_h is None else out_h
    out_w = input_shape[3] if out_w is None else out_w
    out_h, out_w = pair((out_h, out_w), "output_size", fn)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{fn}: output_size must be positive, got {output_size!r}")
    return out_h, out_w


def check_unpool2d(fn, input, indices, kernel_size, stride, padding, output_size):
    """Validate max_unpool2d arguments; return (indices, out_h, out_w).

    The default output size inverts max pooling's: (in - 1) * stride - 2 * padding + kernel.
    An explicit output_size ((H, W) or (N, C, H, W)) must lie strictly within one stride of it.
    """
    check_rank(fn, "input", input, 4, "(N, C, H, W)")
    check_planes(fn, "input", input.shape)
    kernel = positive_pair(fn, "kernel_size", kernel_size)
    strides = kernel if stride is None else positive_pair(fn, "stride", stride)
    pads = pair(padding, "padding", fn)
    if min(pads) < 0:
        raise ValueError(f"{fn}: padding must be non-negative, got {padding!r}")
    default = tuple(unpool_output_size(size, k, s, p)
                    for size, k, s, p in zip(input.shape[2:], kernel, strides, pads))
    if output_size is None:
        out_h, out_w = default
    else:
        size = tuple(output_size)
        if len(size) == 4:
            if tuple(size[:2]) != input.shape[:2]:
                raise ValueError(f"{fn}: output_size {output_size!r} disagrees with input "
                                 f"{input.shape} on (N, C)")
            size = size[2:]
        if len(size) != 2:
            raise ValueError(f"{fn}: output_size must be (H, W) or (N, C, H, W), "
                             f"got {output_size!r}")
        out_h, out_w = pair(size, "output_size", fn)
        for axis, value, base, step in zip("HW", (out_h, out_w), default, strides):
            if not base - step < value < base + step:
                raise ValueError(f"{fn}: invalid output_size {output_size!r}: {axis} must lie "
                                 f"strictly between {base - step} and {base + step} for input "
                                 f"{input.shape}, kernel_size {kernel_size!r}, stride "
                                 f"{stride!r} and padding {padding!r}")
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{fn}: given input {input.shape}, calculated output size "
                         f"({out_h}x{out_w}) is too small")
    indices = check_indices(fn, indices, input.shape, out_h, out_w)
    return indices, out_h, out_w



def check_unpool2d_backward(fn, grad_output, indices):
    """max_unpool2d's backward: indices (N, C, H, W) into the planes of grad_output."""
    check_rank(fn, "grad_output", grad_output, 4, "(N, C, H_out, W_out)")
    check_planes(fn, "grad_output", grad_output.shape)
    shape = np.shape(indices)
    if len(shape) != 4 or shape[:2] != grad_output.shape[:2]:
        raise ValueError(f"{fn}: expected 4-D indices (N, C, H, W) with grad_output's "
                         f"(N, C) = {grad_output.shape[:2]}, got shape {shape}")
    return check_indices(fn, indices, shape, *grad_output.shape[2:])

INTERPOLATE_MODES = ("nearest", "bilinear")


class InterpolateGeometry(NamedTuple):
    """A checked interpolate call; scale_* is the user's scale factor, 0.0 for none."""
    mode: str
    align_corners: bool
    out_h: int
    out_w: int
    scale_h: float
    scale_w: float


def _scale_pair(fn, scale_factor):
    if isinstance(scale_factor, (tuple, list)) and len(scale_factor) == 2:
        scales = tuple(scale_factor)
    else:
        scales = (scale_factor, scale_factor)
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
            raise TypeError(f"{fn}: scale_factor must be a number or a pair of numbers, "
                            f"got {scale_factor!r}")
        if not 0 < s < float("inf"):
            raise ValueError(f"{fn}: scale_factor must be positive and finite, "
                             f"got {scale_factor!r}")
    return float(scales[0]), float(scales[1])


def check_interpolate(fn, input_shape, size, scale_factor, mode, align_corners,
                      recompute_scale_factor):
    """Validate interpolate arguments for an input of input_shape and return the geometry.

    With scale_factor the output size is floor(size * scale_factor) and, unless
    recompute_scale_factor, the source indices use 1 / scale_factor, as PyTorch does.
    """
    check_planes(fn, "input", input_shape)
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"{fn}: mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{fn}: align_corners can only be set with mode='bilinear', "
                         f"got align_corners={align_corners!r} with mode={mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{fn}: exactly one of size and scale_factor must be given, "
                         f"got size={size!r} and scale_factor={scale_factor!r}")
    height, width = input_shape[2:]
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{fn}: recompute_scale_factor is not meaningful with an "
                             f"explicit size")
        out_h, out_w = pair(size, "size", fn)
        scale_h = scale_w = 0.0
    else:
        scale_h, scale_w = _scale_pair(fn, scale_factor)
        out_h, out_w = scaled_size(height, scale_h), scaled_size(width, scale_w)
        if recompute_scale_factor:
            scale_h = scale_w = 0.0
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{fn}: input and output sizes should be greater than 0, got input "
                         f"({height}x{width}) and output ({out_h}x{out_w})")
    return InterpolateGeometry(mode, bool(align_corners), out_h, out_w, scale_h, scale_w)


def check_batch_norm(fn, input, channel_arrays):
    """input (N, C, *) with more than one value per channel; per-channel arrays of shape (C,)."""
    if input.ndim < 2:
        raise ValueError(f"{fn}: expected input (N, C, *), got shape {input.shape}")
    channels = input.shape[1]
    for name, array in channel_arrays.items():
        if array is not None and np.shape(array) != (channels,):
            raise ValueError(f"{fn}: expected {name} of shape ({channels},) for input "
                             f"{input.shape}, got {np.shape(array)}")
