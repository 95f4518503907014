"""Element-wise activations: ReLU, LeakyReLU, GELU, Sigmoid, Tanh.

Each caches the one array its derivative needs: the output where the derivative is a
function of it (ReLU, Sigmoid, Tanh; the next layer usually keeps that array anyway,
so caching it costs no memory), the sign mask (LeakyReLU) or the input (GELU).
"""
import numpy as np
from scipy.special import expit

from fastconv import functional as F
from fastconv.nn.module import Module, _float_input


class ReLU(Module):
    """max(x, 0), as torch.nn.ReLU.

    inplace=True overwrites the input array, saving an allocation; only valid when no
    earlier layer needs that array for its backward (after Conv2d, Linear or a norm it is
    safe; after Tanh or Sigmoid it is not).

    Shapes: any -> same.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        output = F.relu(_float_input("ReLU", input), inplace=self.inplace)
        self._save_for_backward(output)
        return output

    def backward(self, grad_output):
        """grad_output where the output is positive, else 0 (times grad_output, so NaN
        and inf gradients give NaN; see fastconv.functional.relu_backward)."""
        (output,) = self._saved_for_backward()
        return F.relu_backward(grad_output, output)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x, as torch.nn.LeakyReLU. Shapes: any -> same."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input):
        x = _float_input("LeakyReLU", input)
        positive = x > 0
        output = np.multiply(x, self.negative_slope, out=x if self.inplace else None,
                             where=~positive)
        if not self.inplace:
            np.copyto(output, x, where=positive)
        self._save_for_backward(positive)
        return output

    def backward(self, grad_output):
        (positive,) = self._saved_for_backward()
        return np.where(positive, grad_output, grad_output * self.negative_slope)

    def extra_repr(self):
        args = [] if self.negative_slope == 0.01 else [f"negative_slope={self.negative_slope}"]
        return ", ".join(args + (["inplace=True"] if self.inplace else []))


class GELU(Module):
    """x * Phi(x), Phi the standard normal CDF, as torch.nn.GELU.

    approximate="none" uses the exact 0.5 * x * (1 + erf(x / sqrt(2))); "tanh" uses
    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3))). Compiled kernels
    (fastconv.functional.gelu). Shapes: any -> same.
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        x = _float_input("GELU", input)
        self._save_for_backward(x)
        return F.gelu(x, self.approximate)

    def backward(self, grad_output):
        (x,) = self._saved_for_backward()
        return F.gelu_backward(grad_output, x, self.approximate)

    def extra_repr(self):
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)), computed without overflow, as torch.nn.Sigmoid. Shapes: any -> same."""

    def forward(self, input):
        output = expit(_float_input("Sigmoid", input))
        self._save_for_backward(output)
        return output

    def backward(self, grad_output):
        (output,) = self._saved_for_backward()
        return grad_output * output * (1 - output)


class Tanh(Module):
    """tanh(x), as torch.nn.Tanh. Shapes: any -> same."""

    def forward(self, input):
        output = np.tanh(_float_input("Tanh", input))
        self._save_for_backward(output)
        return output

    def backward(self, grad_output):
        (output,) = self._saved_for_backward()
        return grad_output * (1 - output * output)
