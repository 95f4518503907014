"""Convolution layers: Conv2d and ConvTranspose2d over fastconv.functional."""
import math

import numpy as np

from fastconv import functional as F
from fastconv import init
from fastconv._shapes import pair
from fastconv.nn.module import Module, Parameter, _float_dtype


def _positive_pair(layer, name, value):
    h, w = pair(value, name, layer)
    if h < 1 or w < 1:
        raise ValueError(f"{layer}: {name} must be positive, got {value!r}")
    return h, w


def _check_channels(layer, in_channels, out_channels, groups):
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer}: groups={groups} must divide in_channels={in_channels} "
                         f"and out_channels={out_channels}")


def _check_padding_mode(layer, padding_mode):
    if padding_mode != "zeros":
        raise ValueError(f"{layer}: only padding_mode='zeros' is supported, got {padding_mode!r}")


def _reset_conv_parameters(weight, bias):
    """PyTorch's default: kaiming_uniform_(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)), for both."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight.data[0].size
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


def _fold_affine(weight, bias, scale, shift):
    """The weight and bias of a convolution followed by y * scale + shift per output channel
    (computed in float64): W' = W * scale, b' = b * scale + shift."""
    folded = (weight * scale[:, None, None, None]).astype(weight.dtype)
    bias = shift if bias is None else bias * scale + shift
    return folded, bias.astype(weight.dtype)


def _output_mask(layer, input_gradient):
    """Which of (input, weight, bias) gradients the layer's backward computes: frozen or
    absent parameters get none."""
    return (input_gradient, layer.weight.requires_grad,
            layer.bias is not None and layer.bias.requires_grad)


def _accumulate_gradients(layer, grad_weight, grad_bias):
    if grad_weight is not None:
        layer.weight.accumulate_grad(grad_weight)
    if grad_bias is not None:
        layer.bias.accumulate_grad(grad_bias)


def _repr_args(pairs):
    """'name=value' for the arguments whose value differs from its default."""
    return "".join(f", {name}={value!r}" if isinstance(value, str) else f", {name}={value}"
                   for name, value, default in pairs if value != default)


class Conv2d(Module):
    """2-D convolution, as torch.nn.Conv2d.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (h, w) pair
    padding : int, (h, w) pair, "same" or "valid"
    groups : int dividing both channel counts
    bias : bool
    padding_mode : "zeros" only
    dtype : float32 (default) or float64
    algo : "auto", "direct", "im2col" or "winograd", passed to fastconv.functional.conv2d
        and conv2d_backward; "auto" follows fastconv.set_conv_autotune, and
        fastconv.conv_algorithms() reports what it chose

    Shapes: input (N, C_in, H, W) -> output (N, C_out, H_out, W_out) with
    H_out = floor((H + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1.
    weight (C_out, C_in / groups, kH, kW), bias (C_out,), both U(+-1/sqrt(fan_in)) with
    fan_in = C_in / groups * kH * kW.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, dtype=None, algo="auto"):
        super().__init__()
        layer = "Conv2d"
        _check_channels(layer, in_channels, out_channels, groups)
        _check_padding_mode(layer, padding_mode)
        if algo not in F.CONV_ALGORITHMS:
            raise ValueError(f"{layer}: algo must be one of {F.CONV_ALGORITHMS}, got {algo!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _positive_pair(layer, "kernel_size", kernel_size)
        self.stride = _positive_pair(layer, "stride", stride)
        self.dilation = _positive_pair(layer, "dilation", dilation)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{layer}: padding must be 'same', 'valid', an int or a pair, "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{layer}: padding='same' is not supported for strided "
                                 f"convolutions, got stride {stride!r}")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", layer)
            if min(self.padding) < 0:
                raise ValueError(f"{layer}: padding must be non-negative, got {padding!r}")
        self.padding_mode = padding_mode
        self.algo = algo
        dtype = _float_dtype(layer, dtype)
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups) + self.kernel_size,
                                         dtype))
        if bias:
            self.bias = Parameter(np.zeros(out_channels, dtype))
        else:
            self.register_parameter("bias", None)
        _reset_conv_parameters(self.weight, self.bias)

    def _geometry(self):
        return self.stride, self.padding, self.dilation, self.groups

    fuses_relu = True
    folds_affine = True
    fuses_max_pool = True

    def forward(self, input, *, relu=False, affine=None, max_pool=None):
        """relu=True applies max(., 0) to the output while the kernel writes it (a
        following ReLU fused by Sequential). affine=(scale, shift) per output channel
        (an eval-mode BatchNorm2d folded by Sequential) computes output * scale + shift
        with the weight and bias scaled instead; eval mode only. max_pool, a following
        MaxPool2d that pools_2x2() (fused by Sequential, without relu), returns its
        output instead (F.conv2d_max_pool2d), leaving it its switches."""
        weight = self.weight.data
        bias = None if self.bias is None else self.bias.data
        if affine is not None:
            weight, bias = _fold_affine(weight, bias, *affine)
        if max_pool is not None and not relu:
            output, indices, conv_shape = F.conv2d_max_pool2d(input, weight, bias,
                                                              *self._geometry(), algo=self.algo)
            max_pool.pooled_by(indices, conv_shape)
            self._save_for_backward(input, None)
            return output
        output = F.conv2d(input, weight, bias, *self._geometry(), algo=self.algo,
                          activation="relu" if relu else None)
        self._save_for_backward(input, output if relu else None)
        if max_pool is not None:
            return max_pool(output)
        return output

    def backward(self, grad_output):
        """Gradient w.r.t. the input; accumulates weight (and bias) gradients."""
        return self._backward(grad_output, True)

    def backward_parameters(self, grad_output):
        """Accumulates weight (and bias) gradients without computing the input's."""
        self._backward(grad_output, False)

    def _backward(self, grad_output, input_gradient):
        input, relu_output = self._saved_for_backward()
        if relu_output is not None:
            grad_output = F.relu_backward(grad_output, relu_output)
        grad_input, grad_weight, grad_bias = F.conv2d_backward(
            grad_output, input, self.weight.data, *self._geometry(), algo=self.algo,
            output_mask=_output_mask(self, input_gradient))
        _accumulate_gradients(self, grad_weight, grad_bias)
        return grad_input

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
                + _repr_args([("stride", self.stride, (1, 1)),
                              ("padding", self.padding, (0, 0)),
                              ("dilation", self.dilation, (1, 1)),
                              ("groups", self.groups, 1),
                              ("bias", self.bias is not None, True),
                              ("algo", self.algo, "auto")]))


class ConvTranspose2d(Module):
    """2-D transposed convolution (the gradient of Conv2d w.r.t. its input), as torch.nn.ConvTranspose2d.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, output_padding, dilation : int or (h, w) pair
        output_padding (< stride or < dilation) adds rows/columns at the bottom/right to
        pick one of the output sizes that a strided Conv2d maps to the same input size.
    groups : int dividing both channel counts
    bias : bool
    padding_mode : "zeros" only
    dtype : float32 (default) or float64

    Shapes: input (N, C_in, H, W) -> output (N, C_out, H_out, W_out) with
    H_out = (H - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1.
    weight (C_in, C_out / groups, kH, kW), bias (C_out,), both U(+-1/sqrt(fan_in)) with
    PyTorch's fan_in = C_out / groups * kH * kW.
    forward(input, output_size=None) takes an optional target (H_out, W_out) (or a full
    shape), from which output_padding is derived as in PyTorch.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros", *,
                 dtype=None):
        super().__init__()
        layer = "ConvTranspose2d"
        _check_channels(layer, in_channels, out_channels, groups)
        _check_padding_mode(layer, padding_mode)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _positive_pair(layer, "kernel_size", kernel_size)
        self.stride = _positive_pair(layer, "stride", stride)
        self.dilation = _positive_pair(layer, "dilation", dilation)
        self.padding = pair(padding, "padding", layer)
        self.output_padding = pair(output_padding, "output_padding", layer)
        if min(self.padding) < 0 or min(self.output_padding) < 0:
            raise ValueError(f"{layer}: padding and output_padding must be non-negative, got "
                             f"{padding!r} and {output_padding!r}")
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= d:
                raise ValueError(f"{layer}: output_padding {self.output_padding} must be smaller "
                                 f"than either stride {self.stride} or dilation {self.dilation}")
        self.padding_mode = padding_mode
        dtype = _float_dtype(layer, dtype)
        self.weight = Parameter(np.zeros((in_channels, out_channels // groups) + self.kernel_size,
                                         dtype))
        if bias:
            self.bias = Parameter(np.zeros(out_channels, dtype))
        else:
            self.register_parameter("bias", None)
        _reset_conv_parameters(self.weight, self.bias)

    def _output_padding(self, input, output_size):
        """output_padding that makes the output output_size (PyTorch's _output_padding)."""
        if output_size is None:
            return self.output_padding
        output_size = tuple(output_size)[-2:]
        if len(output_size) != 2:
            raise ValueError(f"ConvTranspose2d: output_size must hold (H_out, W_out), got "
                             f"{output_size!r}")
        padding = []
        for axis, wanted in enumerate(output_size):
            size = input.shape[2 + axis]
            smallest = ((size - 1) * self.stride[axis] - 2 * self.padding[axis]
                        + self.dilation[axis] * (self.kernel_size[axis] - 1) + 1)
            largest = smallest + self.stride[axis] - 1
            if not smallest <= wanted <= largest:
                raise ValueError(f"ConvTranspose2d: requested output size {output_size} is not "
                                 f"reachable from input {np.shape(input)}: each side must lie "
                                 f"between ({smallest}) and ({largest}) on axis {axis}")
            padding.append(wanted - smallest)
        return tuple(padding)

    def forward(self, input, output_size=None):
        output_padding = self._output_padding(np.asarray(input), output_size)
        bias = None if self.bias is None else self.bias.data
        output = F.conv_transpose2d(input, self.weight.data, bias, self.stride, self.padding,
                                    output_padding, self.groups, self.dilation)
        self._save_for_backward(input, output_padding)
        return output

    def backward(self, grad_output):
        """Gradient w.r.t. the input; accumulates weight (and bias) gradients."""
        input, output_padding = self._saved_for_backward()
        grad_input, grad_weight, grad_bias = F.conv_transpose2d_backward(
            grad_output, input, self.weight.data, self.stride, self.padding, output_padding,
            self.groups, self.dilation, output_mask=_output_mask(self, True))
        _accumulate_gradients(self, grad_weight, grad_bias)
        return grad_input

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
                + _repr_args([("stride", self.stride, (1, 1)),
                              ("padding", self.padding, (0, 0)),
                              ("output_padding", self.output_padding, (0, 0)),
                              ("dilation", self.dilation, (1, 1)),
                              ("groups", self.groups, 1),
                              ("bias", self.bias is not None, True)]))
