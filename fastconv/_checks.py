"""Argument validation, one function per op family, shared by forward and backward.

Nothing reaches a kernel without passing through here: every array comes back
C-contiguous with one float dtype, every geometry as checked ints.
"""
from typing import NamedTuple

import numpy as np

from fastconv._shapes import conv_output_size, pair, same_padding

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
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{fn}: groups must be positive, got {groups!r}")
    batch, in_channels, height, width = input.shape
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{fn}: groups={groups} must divide both C_in={in_channels} and "
                         f"C_out={out_channels} (input {input.shape}, weight {weight.shape})")
    if group_in * groups != in_channels:
        raise ValueError(f"{fn}: weight {weight.shape} expects C_in / groups = {group_in}, "
                         f"but input {input.shape} with groups={groups} gives "
                         f"{in_channels // groups}")
    if min(in_channels, out_channels, kernel_h, kernel_w) < 1:
        raise ValueError(f"{fn}: channels and kernel size must be positive, got input "
                         f"{input.shape} and weight {weight.shape}")
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
        pad_h, pad_w = pair(padding, "padding", fn)
        if pad_h < 0 or pad_w < 0:
            raise ValueError(f"{fn}: padding must be non-negative, got {padding!r}")
        pads = (pad_h, pad_h), (pad_w, pad_w)
    out_h = conv_output_size(height, kernel_h, stride_h, *pads[0], dilation_h)
    out_w = conv_output_size(width, kernel_w, stride_w, *pads[1], dilation_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{fn}: given input size ({height}x{width}), padding {padding!r} and dilated kernel "
            f"size ({dilation_h * (kernel_h - 1) + 1}x{dilation_w * (kernel_w - 1) + 1}), "
            f"calculated output size ({out_h}x{out_w}) is too small")
    return ConvGeometry(stride_h, stride_w, pads[0][0], pads[1][0], dilation_h, dilation_w,
                        groups, out_h, out_w)


def check_bias(fn, bias, channels):
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"{fn}: expected bias of shape ({channels},), got {bias.shape}")


def check_grad_output(fn, grad_output, expected):
    if grad_output.shape != tuple(expected):
        raise ValueError(f"{fn}: expected grad_output of shape {tuple(expected)}, "
                         f"got {grad_output.shape}")
