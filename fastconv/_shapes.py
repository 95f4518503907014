"""Output-size arithmetic: the only place it lives."""
import operator

import numpy as np


def pair(value, name, fn):
    """An int or an (h, w) pair of ints as an (h, w) tuple."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        h, w = value
    else:
        h = w = value
    try:
        if isinstance(h, (bool, np.bool_)) or isinstance(w, (bool, np.bool_)):
            raise TypeError
        # operator.index admits ints and NumPy integers, not floats or strings.
        return operator.index(h), operator.index(w)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}") from None


def conv_output_size(size, kernel, stride, pad_begin, pad_end, dilation):
    """floor((size + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride) + 1"""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation):
    """(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1"""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def same_padding(kernel, dilation):
    """(begin, end) padding that keeps the size at stride 1; PyTorch puts the odd pixel at the end."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def pool_output_size(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling output size.

    floor((size + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1, or with ceil_mode
    the ceiling instead, minus one if the last window would then start in the right padding.
    """
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return numerator // stride + 1
    out = (numerator + stride - 1) // stride + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def unpool_output_size(size, kernel, stride, pad):
    """(size - 1) * stride - 2 * pad + kernel: the input size of the max pooling unpool undoes."""
    return (size - 1) * stride - 2 * pad + kernel


def scaled_size(size, scale_factor):
    """floor(size * scale_factor), in double precision as PyTorch's interpolate computes it."""
    return int(float(size) * float(scale_factor))
