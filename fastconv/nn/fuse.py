"""Folding eval-mode BatchNorm2d into the Conv2d before it, for faster inference."""
import copy

from fastconv.nn.conv import Conv2d, _fold_affine
from fastconv.nn.linear import Identity
from fastconv.nn.module import Parameter, Sequential


def _fold(conv, norm):
    """Make conv compute norm(conv(x)), if norm is an eval-mode BatchNorm2d over its output."""
    affine = norm._eval_affine(conv.out_channels) if isinstance(conv, Conv2d) else None
    if affine is None:
        return False
    weight, bias = _fold_affine(conv.weight.data, None if conv.bias is None else conv.bias.data,
                                *affine)
    conv.weight.data = weight
    conv.bias = Parameter(bias)
    return True


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
            if _fold(module._modules[first], module._modules[second]):
                setattr(module, second, Identity())
    return fused

