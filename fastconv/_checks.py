"""Argument validation, one function per op family, shared by forward and backward.

Nothing reaches a kernel without passing through here: every array comes back
C-contiguous with one float dtype, every geometry as checked ints.
"""
from typing import NamedTuple

import numpy as np

from fastconv._shapes import (conv_output_size, conv_transpose_output_size, pair,
                              same_padding)

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


def check_grad_output(fn, grad_output, expected):
    if grad_output.shape != tuple(expected):
        raise ValueError(f"{fn}: expected grad_output of shape {tuple(expected)}, "
                         f"got {grad_output.shape}")
