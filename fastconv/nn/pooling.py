"""Pooling and resampling layers over fastconv.functional.

Arguments are stored as given (an int or an (h, w) pair), as PyTorch does; the functional
ops validate them. Output sizes:
H_out = floor((H + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1 (ceil with
ceil_mode, a last window that would start in the bottom padding dropped).
"""
import numpy as np

from fastconv import functional as F
from fastconv.nn.module import Module


_SHOWN = object()  # the default of an argument repr always shows


def _repr_args(pairs):
    """'name=value' for each (name, value, default) whose value is not its default."""
    return ", ".join(f"{name}={value!r}" for name, value, default in pairs
                     if default is _SHOWN or value != default)


class MaxPool2d(Module):
    """Max pooling, as torch.nn.MaxPool2d.

    Parameters
    ----------
    kernel_size, stride (default kernel_size), padding, dilation : int or (h, w) pair
        padding is implicit -inf on both sides, at most half the kernel.
    return_indices : bool
        Also return the argmax switches (int64, flat h * W + w within each plane),
        which MaxUnpool2d takes.
    ceil_mode : bool

    Shapes: (N, C, H, W) -> (N, C, H_out, W_out).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        output, indices = F.max_pool2d(input, self.kernel_size, self.stride, self.padding,
                                       self.dilation, self.ceil_mode)
        self._save_for_backward(indices, np.shape(input))
        return (output, indices) if self.return_indices else output

    def backward(self, grad_output):
        indices, input_shape = self._saved_for_backward()
        return F.max_pool2d_backward(grad_output, indices, input_shape)

    def pools_2x2(self):
        """Whether this is the plain 2x2 pooling at stride 2 that a module before it with
        fuses_max_pool can apply itself (see Module)."""
        return (not self.return_indices and not self.ceil_mode
                and all(np.all(np.broadcast_to(value, 2) == expected)
                        for value, expected in ((self.kernel_size, 2), (self.stride, 2),
                                                (self.padding, 0), (self.dilation, 1))))

    def pooled_by(self, indices, input_shape):
        """Keep what backward needs from a module that did this pooling in its own forward:
        the switches and the shape of the input this module would have had."""
        self._save_for_backward(indices, input_shape)

    def extra_repr(self):
        return _repr_args([("kernel_size", self.kernel_size, _SHOWN),
                           ("stride", self.stride, self.kernel_size),
                           ("padding", self.padding, 0), ("dilation", self.dilation, 1),
                           ("return_indices", self.return_indices, False),
                           ("ceil_mode", self.ceil_mode, False)])


class AvgPool2d(Module):
    """Average pooling, as torch.nn.AvgPool2d.

    Parameters
    ----------
    kernel_size, stride (default kernel_size), padding : int or (h, w) pair
    ceil_mode : bool
    count_include_pad : bool
        Whether zero padding counts in the divisor.
    divisor_override : int or None
        Divide every window sum by this instead.

    Shapes: (N, C, H, W) -> (N, C, H_out, W_out).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def _arguments(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode,
                self.count_include_pad, self.divisor_override)

    def forward(self, input):
        output = F.avg_pool2d(input, *self._arguments())
        self._save_for_backward(np.shape(input))
        return output

    def backward(self, grad_output):
        (input_shape,) = self._saved_for_backward()
        return F.avg_pool2d_backward(grad_output, input_shape, *self._arguments())

    def extra_repr(self):
        return _repr_args([("kernel_size", self.kernel_size, _SHOWN),
                           ("stride", self.stride, self.kernel_size),
                           ("padding", self.padding, 0), ("ceil_mode", self.ceil_mode, False),
                           ("count_include_pad", self.count_include_pad, True),
                           ("divisor_override", self.divisor_override, None)])


def _adaptive_size(input, output_size):
    """output_size with None entries (keep that input size) resolved against the input."""
    h, w = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    shape = np.shape(input)
    return (shape[-2] if h is None else h), (shape[-1] if w is None else w)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, as torch.nn.AdaptiveAvgPool2d.

    Output cell i averages input rows floor(i * H / H_out) to ceil((i + 1) * H / H_out) - 1
    (likewise columns). output_size : int or (h, w), None keeps that input size.
    Shapes: (N, C, H, W) -> (N, C, H_out, W_out).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        output = F.adaptive_avg_pool2d(input, _adaptive_size(input, self.output_size))
        self._save_for_backward(np.shape(input))
        return output

    def backward(self, grad_output):
        (input_shape,) = self._saved_for_backward()
        return F.adaptive_avg_pool2d_backward(grad_output, input_shape)

    def extra_repr(self):
        return f"output_size={self.output_size!r}"


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed output size, as torch.nn.AdaptiveMaxPool2d.

    output_size : int or (h, w), None keeps that input size.
    return_indices : bool, also return the int64 argmax switches.
    Shapes: (N, C, H, W) -> (N, C, H_out, W_out).
    """

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input):
        output, indices = F.adaptive_max_pool2d(input, _adaptive_size(input, self.output_size))
        self._save_for_backward(indices, np.shape(input))
        return (output, indices) if self.return_indices else output

    def backward(self, grad_output):
        indices, input_shape = self._saved_for_backward()
        return F.adaptive_max_pool2d_backward(grad_output, indices, input_shape)

    def extra_repr(self):
        return _repr_args([("output_size", self.output_size, _SHOWN),
                           ("return_indices", self.return_indices, False)])


class MaxUnpool2d(Module):
    """Partial inverse of MaxPool2d: each value goes back to its argmax position, zeros elsewhere.

    Parameters
    ----------
    kernel_size, stride (default kernel_size), padding : int or (h, w) pair, those of the
        MaxPool2d being inverted.

    forward(input, indices, output_size=None): input and indices (N, C, H, W) as
    MaxPool2d(return_indices=True) gave them; output (N, C, H_out, W_out) with
    H_out = (H - 1) * stride - 2 * padding + kernel_size, or output_size.
    backward(grad_output) returns the gradient w.r.t. input (not indices).
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, input, indices, output_size=None):
        output = F.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding,
                                output_size)
        self._save_for_backward(indices)
        return output

    def backward(self, grad_output):
        (indices,) = self._saved_for_backward()
        return F.max_unpool2d_backward(grad_output, indices)

    def extra_repr(self):
        return _repr_args([("kernel_size", self.kernel_size, _SHOWN),
                           ("stride", self.stride, self.kernel_size),
                           ("padding", self.padding, 0)])


class Upsample(Module):
    """Resize by size or scale_factor, as torch.nn.Upsample (functional.interpolate).

    Parameters
    ----------
    size : int or (h, w), or None
    scale_factor : float or (h, w), or None (exactly one of size and scale_factor)
    mode : "nearest" or "bilinear" (as fastconv.functional.interpolate supports)
    align_corners : bool or None (bilinear only)

    Shapes: (N, C, H, W) -> (N, C, H_out, W_out), H_out = size or floor(H * scale_factor).
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        self.size, self.mode, self.align_corners = size, mode, align_corners
        self.scale_factor = float(scale_factor) if isinstance(scale_factor, int) else scale_factor

    def _arguments(self):
        return self.size, self.scale_factor, self.mode, self.align_corners

    def forward(self, input):
        output = F.interpolate(input, *self._arguments())
        self._save_for_backward(np.shape(input))
        return output

    def backward(self, grad_output):
        (input_shape,) = self._saved_for_backward()
        return F.interpolate_backward(grad_output, input_shape, *self._arguments())

    def extra_repr(self):
        shown = ("size", self.size) if self.size is not None else ("scale_factor",
                                                                   self.scale_factor)
        return _repr_args([(*shown, _SHOWN), ("mode", self.mode, _SHOWN),
                           ("align_corners", self.align_corners, None)])
