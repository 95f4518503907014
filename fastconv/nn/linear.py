"""Linear, Identity and Flatten."""
import math

import numpy as np

from fastconv import init
from fastconv._threads import single_threaded_blas
from fastconv.nn.module import Module, Parameter, _float_dtype, _float_input


class Linear(Module):
    """y = x @ weight.T + bias, as torch.nn.Linear.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : float32 (default) or float64

    Shapes: (*, in_features) -> (*, out_features). weight (out_features, in_features)
    and bias (out_features,) are U(+-1/sqrt(in_features)), as PyTorch.

    The products run on one BLAS thread, as the convolution kernels' do: results then do
    not depend on the thread count, and BLAS threads never compete with the kernels'
    OpenMP threads (measured: a 2-thread GEMM right after a convolution ran 10-30x slower
    than a 1-thread one, the OpenMP threads still spinning).
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Linear: {name} must be a non-negative int, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        dtype = _float_dtype("Linear", dtype)
        self.weight = Parameter(np.zeros((out_features, in_features), dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
            self.bias = init.uniform_(Parameter(np.zeros(out_features, dtype)), -bound, bound)
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        x = _float_input("Linear", input, self.weight.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input (*, {self.in_features}), got shape "
                             f"{x.shape}")
        with single_threaded_blas():
            output = x @ self.weight.data.T
        if self.bias is not None:
            output += self.bias.data
        self._save_for_backward(x)
        return output

    def backward(self, grad_output):
        """Gradient w.r.t. the input; accumulates weight (and bias) gradients."""
        (x,) = self._saved_for_backward()
        grad = np.asarray(grad_output)
        grad_rows = grad.reshape(-1, self.out_features)
        with single_threaded_blas():
            if self.weight.requires_grad:
                self.weight.accumulate_grad(grad_rows.T @ x.reshape(-1, self.in_features))
            grad_input = grad @ self.weight.data
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(grad_rows.sum(axis=0))
        return grad_input

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}"
                + ("" if self.bias is not None else ", bias=False"))


class Identity(Module):
    """Returns its input; takes and ignores any arguments, as torch.nn.Identity."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input

    def backward(self, grad_output):
        return grad_output


class Flatten(Module):
    """Merge dimensions start_dim..end_dim into one, as torch.nn.Flatten.

    Shapes: (N, C, H, W) -> (N, C * H * W) with the defaults start_dim=1, end_dim=-1.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        x = np.asarray(input)
        start = self.start_dim % x.ndim
        end = self.end_dim % x.ndim
        if start > end:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for input shape {x.shape}")
        self._save_for_backward(x.shape)
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])

    def backward(self, grad_output):
        (input_shape,) = self._saved_for_backward()
        return np.reshape(grad_output, input_shape)

    def extra_repr(self):
        args = []
        if self.start_dim != 1:
            args.append(f"start_dim={self.start_dim}")
        if self.end_dim != -1:
            args.append(f"end_dim={self.end_dim}")
        return ", ".join(args)
