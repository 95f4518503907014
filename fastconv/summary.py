"""fastconv.summary: a per-layer table of output shapes, parameters, FLOPs and receptive fields.

The model runs once, in eval mode, on zeros; Sequential and Residual are walked so that
every leaf layer gets a row. FLOPs count forward work with a multiply-add as 2 FLOPs:

    Conv2d, ConvTranspose2d, Linear   2 per multiply-add, plus 1 per output for the bias
    MaxPool2d, AvgPool2d              kH * kW per output (one per window element)
    AdaptiveAvg/MaxPool2d             one per input element
    BatchNorm (eval), affine norms    2 per element (scale and shift)
    GroupNorm, LayerNorm, InstanceNorm 5 per element more (statistics and normalisation)
    LocalResponseNorm                 size + 4 per element
    activations, Residual's addition  1 per element
    Dropout (eval), Flatten, Identity, MaxUnpool2d, Upsample("nearest")   0
    Upsample (interpolating)          7 per output element (2-tap lerp on each axis)

The receptive field is the size (and jump: the input-pixel distance between neighbouring
outputs) of the input region one output element sees, through convolutions and pooling:
r_out = r_in + dilation * (k - 1) * j_in and j_out = j_in * stride. Normalisation
statistics are ignored (norms count as point-wise); after Flatten, Linear or any layer
that mixes the whole map it is "global".
"""
import math
from typing import NamedTuple

import numpy as np

from fastconv import nn
from fastconv._shapes import pair


class Row(NamedTuple):
    name: str
    layer: str
    output_shape: tuple
    params: int
    flops: int
    receptive_field: tuple  # (size_h, size_w, jump_h, jump_w), or None once global


def _kernel(module):
    """(kernel, stride, dilation) pairs of a convolution or pooling layer."""
    dilation = getattr(module, "dilation", 1)
    return (pair(module.kernel_size, "kernel_size", "summary"),
            pair(module.stride, "stride", "summary"), pair(dilation, "dilation", "summary"))


def _adaptive_window(size_in, size_out):
    """The longest adaptive-pooling window along one axis."""
    return max(math.ceil((i + 1) * size_in / size_out) - (i * size_in) // size_out
               for i in range(size_out))


def _receptive_field(module, field, in_shape, out_shape):
    if field is None or len(out_shape) != 4:
        return None
    size_h, size_w, jump_h, jump_w = field
    sizes, jumps = [size_h, size_w], [jump_h, jump_w]
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride, dilation = _kernel(module)
        for a in range(2):
            sizes[a] += dilation[a] * (kernel[a] - 1) * jumps[a]
            jumps[a] *= stride[a]
    elif isinstance(module, nn.ConvTranspose2d):
        kernel, stride, dilation = _kernel(module)
        for a in range(2):
            # Each output sees at most ceil(dilated kernel / stride) neighbouring inputs.
            sizes[a] += (math.ceil((dilation[a] * (kernel[a] - 1) + 1) / stride[a]) - 1) * jumps[a]
            jumps[a] /= stride[a]
    elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        for a in range(2):
            sizes[a] += (_adaptive_window(in_shape[2 + a], out_shape[2 + a]) - 1) * jumps[a]
            jumps[a] *= in_shape[2 + a] / out_shape[2 + a]
    elif isinstance(module, (nn.Upsample, nn.MaxUnpool2d)):
        interpolating = isinstance(module, nn.Upsample) and module.mode != "nearest"
        for a in range(2):
            sizes[a] += jumps[a] if interpolating else 0
            jumps[a] *= in_shape[2 + a] / out_shape[2 + a]
    elif isinstance(module, (nn.Flatten, nn.Linear)) or in_shape[2:] != out_shape[2:]:
        return None
    return sizes[0], sizes[1], jumps[0], jumps[1]


def _flops(module, in_shape, out_shape):
    out_size, in_size = math.prod(out_shape), math.prod(in_shape)
    if isinstance(module, nn.Conv2d):
        per_output = 2 * module.weight.data[0].size
        return out_size * per_output + (out_size if module.bias is not None else 0)
    if isinstance(module, nn.ConvTranspose2d):
        per_input = 2 * module.weight.data[0].size
        return in_size * per_input + (out_size if module.bias is not None else 0)
    if isinstance(module, nn.Linear):
        return out_size * 2 * module.in_features + (out_size if module.bias is not None else 0)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel = pair(module.kernel_size, "kernel_size", "summary")
        return out_size * kernel[0] * kernel[1]
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return in_size
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return 2 * out_size
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)):
        return 5 * out_size + (2 * out_size if module.weight is not None else 0)
    if isinstance(module, nn.LocalResponseNorm):
        return (module.size + 4) * out_size
    if isinstance(module, (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Sigmoid, nn.Tanh)):
        return out_size
    if isinstance(module, nn.Upsample) and module.mode != "nearest":
        return 7 * out_size
    return 0


def _count(module):
    return sum(param.size for param in module.parameters())


class Summary:
    """The table fastconv.summary builds; str() renders it.

    Attributes
    ----------
    rows : list of Row
        One per leaf layer (and one per Residual addition), in execution order.
    input_shape : tuple
        (N, C, H, W) the model ran on.
    total_params : int
        Parameters of the model (each shared one counted once).
    trainable_params : int
        Those of them with requires_grad.
    total_flops : int
        Forward FLOPs for the whole batch.
    receptive_field : tuple or None
        (size_h, size_w, jump_h, jump_w) of the last layer that still has a spatial map.
    """

    def __init__(self, model, input_shape, rows):
        self.model_name = type(model).__name__
        self.input_shape = tuple(input_shape)
        self.rows = rows
        self.total_params = _count(model)
        self.trainable_params = sum(param.size for param in model.parameters()
                                    if param.requires_grad)
        self.total_flops = sum(row.flops for row in rows)
        spatial = [row.receptive_field for row in rows if row.receptive_field is not None]
        self.receptive_field = spatial[-1] if spatial else None

    @staticmethod
    def _field_text(field):
        if field is None:
            return "global"
        size_h, size_w, jump_h, jump_w = (f"{v:g}" for v in field)
        size = size_h if size_h == size_w else f"{size_h}x{size_w}"
        jump = jump_h if jump_h == jump_w else f"{jump_h}x{jump_w}"
        return f"{size} / {jump}"

    def __str__(self):
        header = ("Layer", "Type", "Output shape", "Params", "FLOPs", "RF size / jump")
        lines = [(row.name, row.layer, str(row.output_shape), f"{row.params:,}",
                  f"{row.flops:,}", self._field_text(row.receptive_field)) for row in self.rows]
        widths = [max(len(line[i]) for line in [header] + lines) for i in range(len(header))]
        align = ["<", "<", "<", ">", ">", ">"]

        def render(cells):
            return "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(cells, align, widths))

        rule = "-" * len(render(header))
        out = [f"{self.model_name} on input {self.input_shape}", rule, render(header), rule]
        out += [render(line) for line in lines]
        out += [rule, f"Total params: {self.total_params:,} "
                      f"({self.trainable_params:,} trainable)",
                f"Forward FLOPs: {self.total_flops:,} for batch {self.input_shape[0]} "
                f"(a multiply-add counts as 2 FLOPs)",
                f"Receptive field (last spatial layer): {self._field_text(self.receptive_field)}"
                + (" (size / jump, input pixels)" if self.receptive_field else "")]
        return "\n".join(out)

    __repr__ = __str__


def _walk(module, name, x, field, rows):
    """Run module on x, appending rows; returns (output, receptive field)."""
    if isinstance(module, nn.Sequential):
        for child_name, child in module.named_children():
            x, field = _walk(child, f"{name}.{child_name}" if name else child_name, x, field, rows)
        return x, field
    if isinstance(module, nn.Residual):
        prefix = f"{name}." if name else ""
        skip, skip_field = x, field
        if module.shortcut is not None:
            skip, skip_field = _walk(module.shortcut, prefix + "shortcut", x, field, rows)
        body, body_field = _walk(module.body, prefix + "body", x, field, rows)
        output = body + skip
        if body_field is None or skip_field is None:
            field = None
        else:
            field = (max(body_field[0], skip_field[0]), max(body_field[1], skip_field[1]),
                     body_field[2], body_field[3])
        rows.append(Row(name or "(residual)", "Residual (add)", output.shape, 0, output.size, field))
        return output, field
    output = module(x)
    if isinstance(output, tuple):  # return_indices=True: the indices are not an activation
        output = output[0]
    field = _receptive_field(module, field, x.shape, output.shape)
    rows.append(Row(name or type(module).__name__, type(module).__name__, output.shape,
                    _count(module), _flops(module, x.shape, output.shape), field))
    return output, field


def summary(model, input_shape, batch_size=1, dtype=np.float32):
    """Per-layer output shapes, parameter counts, forward FLOPs and receptive fields.

    Parameters
    ----------
    model : fastconv.nn.Module
    input_shape : tuple
        One sample's shape, e.g. (3, 32, 32).
    batch_size : int
        The batch the shapes and FLOPs are given for.
    dtype : float32 or float64
        The dtype of the zeros fed through the model (that of its parameters).

    Returns
    -------
    Summary
        print() it for the table; its attributes hold the figures.
    """
    shape = (batch_size,) + tuple(input_shape)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        x = np.zeros(shape, dtype)
        field = (1, 1, 1, 1) if len(shape) == 4 else None
        rows = []
        _walk(model, "", x, field, rows)
    finally:
        for module, training in modes:
            module.training = training
    return Summary(model, shape, rows)
