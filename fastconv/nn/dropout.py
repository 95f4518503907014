"""Dropout layers: identity in eval mode; in training, zero entries with probability p and
scale the rest by 1 / (1 - p), so expectations match eval mode.

The mask is drawn from the generator that fastconv.manual_seed reseeds.
"""
import numpy as np

from fastconv._random import default_generator
from fastconv.nn.module import Module, _float_input


class _DropoutBase(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: p must be between 0 and 1, got {p!r}")
        self.p, self.inplace = p, inplace

    def _mask_shape(self, shape):
        return shape

    def forward(self, input):
        x = _float_input(type(self).__name__, input)
        if not self.training:
            return x
        # float32 draws whatever the input dtype: the same seed gives the same mask in both.
        keep = default_generator().random(self._mask_shape(x.shape), dtype=np.float32) >= self.p
        # p = 1 drops everything; the scale would be infinite.
        mask = keep * x.dtype.type(0 if self.p == 1 else 1 / (1 - self.p))
        output = np.multiply(x, mask, out=x if self.inplace else None)
        self._save_for_backward(mask)
        return output

    def backward(self, grad_output):
        (mask,) = self._saved_for_backward()
        return grad_output * mask

    def extra_repr(self):
        return f"p={self.p}" + (", inplace=True" if self.inplace else "")


class Dropout(_DropoutBase):
    """Zero each element independently with probability p, as torch.nn.Dropout.

    Shapes: any -> same.
    """


class Dropout2d(_DropoutBase):
    """Zero whole channels with probability p, as torch.nn.Dropout2d.

    Shapes: (N, C, H, W) -> same (a 3-D input (N, C, L) drops channels of length L, as PyTorch).
    """

    def _mask_shape(self, shape):
        if len(shape) not in (3, 4):
            raise ValueError(f"Dropout2d: expected input (N, C, H, W) or (N, C, L), got shape "
                             f"{shape}")
        return shape[:2] + (1,) * (len(shape) - 2)
