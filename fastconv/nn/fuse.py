"""Folding eval-mode BatchNorm2d into the Conv2d before it, for faster inference."""
import copy

import numpy as np

from fastconv.nn.conv import Conv2d
from fastconv.nn.linear import Identity
from fastconv.nn.module import Parameter, Sequential
from fastconv.nn.norm import BatchNorm2d


def _foldable(conv, norm):
    return (isinstance(conv, Conv2d) and isinstance(norm, BatchNorm2d) and not norm.training
            and norm.track_running_stats and norm.num_features == conv.out_channels)


def _fold(conv, norm):
    """Make conv compute norm(conv(x)): W' = W * s, b' = (b - running_mean) * s + beta,
    with s = gamma / sqrt(running_var + eps), per output channel."""
    dtype = conv.weight.dtype
    scale = 1 / np.sqrt(norm.running_var.astype(np.float64) + norm.eps)
    shift = -norm.running_mean.astype(np.float64)
    if norm.affine:
        scale = scale * norm.weight.data
    bias = np.zeros(conv.out_channels) if conv.bias is None else conv.bias.data.astype(np.float64)
    bias = (bias + shift) * scale
    if norm.affine:
        bias = bias + norm.bias.data
    conv.weight.data = (conv.weight.data * scale[:, None, None, None]).astype(dtype)
    conv.bias = Parameter(bias.astype(dtype))


def fuse_conv_bn(model):
    """A copy of model in which every eval-mode BatchNorm2d that directly follows a Conv2d in
    a Sequential is folded into that convolution and replaced by Identity.

    The model itself is left unchanged. Only BatchNorm2d layers in eval mode with running
    statistics are folded (in training mode they normalise with batch statistics, which no
    fixed convolution reproduces). In eval mode the copy's outputs equal the model's
    within float rounding (the folding is computed in float64).

    Parameters
    ----------
    model : Module

    Returns
    -------
    Module
        The fused copy.
    """
    fused = copy.deepcopy(model)
    for module in fused.modules():
        if not isinstance(module, Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if _foldable(conv, norm):
                _fold(conv, norm)
                setattr(module, second, Identity())
    return fused

