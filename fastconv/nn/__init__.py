"""Layers with explicit forward and backward, named and initialised as in torch.nn.

Each Module's forward(x) caches what its backward needs (in training mode only);
backward(grad_output) returns the gradient w.r.t. the input and accumulates into the
parameters' .grad.

Arguments keep PyTorch's names, order and defaults. Two kinds are keyword-only: dtype
(float32, the default, or float64), which PyTorch places after a device argument; and the
loss options that PyTorch places after its deprecated size_average and reduce. A
positional call written for PyTorch then fails loudly instead of binding the wrong argument.
"""
from fastconv.nn.activation import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from fastconv.nn.conv import Conv2d, ConvTranspose2d
from fastconv.nn.dropout import Dropout, Dropout2d
from fastconv.nn.fuse import fuse_conv_bn
from fastconv.nn.linear import Flatten, Identity, Linear
from fastconv.nn.loss import CrossEntropyLoss, MSELoss, MultiMarginLoss
from fastconv.nn.module import IncompatibleKeys, Module, Parameter, Residual, Sequential
from fastconv.nn.norm import (BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm,
                              LocalResponseNorm)
from fastconv.nn.pooling import (AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d,
                                 MaxUnpool2d, Upsample)

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
           "Conv2d", "ConvTranspose2d", "CrossEntropyLoss", "Dropout", "Dropout2d", "Flatten",
           "GELU", "GroupNorm", "Identity", "IncompatibleKeys", "InstanceNorm2d", "LayerNorm",
           "LeakyReLU", "Linear", "LocalResponseNorm", "MSELoss", "MaxPool2d", "MaxUnpool2d",
           "Module", "MultiMarginLoss", "Parameter", "ReLU", "Residual", "Sequential", "Sigmoid",
           "Tanh", "Upsample", "fuse_conv_bn"]
