"""Normalisation layers: BatchNorm1d/2d, GroupNorm, LayerNorm, InstanceNorm2d, LocalResponseNorm.

BatchNorm runs the compiled kernels behind fastconv.functional.native_batch_norm; the
others are vectorised NumPy. Statistics use the biased variance; sums go through einsum,
which reduces without temporaries and with several accumulators (float32 sums stay
within ~1e-6 relative on CIFAR-sized batches). Each forward caches the centred (or
normalised) input, and backward reuses that cache as scratch space, since it is
released there anyway.

Backward of a normalisation x_hat = (x - mean) * inv_std over m values, given
g = dL/dx_hat, is the closed form
    dL/dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)).
"""
import math

import numpy as np

import fastconv.functional as F
from fastconv.nn.module import Module, Parameter, _float_dtype, _float_input


def _affine_parameters(module, shape, dtype):
    """weight = ones, bias = zeros (PyTorch's default), or both None."""
    module.weight = Parameter(np.ones(shape, dtype))
    module.bias = Parameter(np.zeros(shape, dtype))


def _no_affine(module):
    module.register_parameter("weight", None)
    module.register_parameter("bias", None)


def _per_channel_state(module, layer, num_features, eps, momentum, affine, track_running_stats,
                       dtype):
    """The settings, affine parameters and running-statistics buffers of BatchNorm and
    InstanceNorm2d, PyTorch's names and initial values."""
    module.num_features, module.eps, module.momentum = num_features, eps, momentum
    module.affine, module.track_running_stats = affine, track_running_stats
    dtype = _float_dtype(layer, dtype)
    if affine:
        _affine_parameters(module, num_features, dtype)
    else:
        _no_affine(module)
    if track_running_stats:
        module.register_buffer("running_mean", np.zeros(num_features, dtype))
        module.register_buffer("running_var", np.ones(num_features, dtype))
        module.register_buffer("num_batches_tracked", np.array(0, np.int64))
    else:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            module.register_buffer(name, None)


def _row_normalize(rows, eps):
    """Normalise each row of rows (R, M): (x_hat (R, M) new array, inv_std (R,))."""
    count = rows.shape[1]
    mean = np.einsum("rm->r", rows) / count
    x_hat = rows - mean[:, None]
    var = np.einsum("rm,rm->r", x_hat, x_hat) / count
    inv_std = 1 / np.sqrt(var + eps)
    x_hat *= inv_std[:, None]
    return x_hat, inv_std, mean, var


def _row_normalize_backward(grad_x_hat, x_hat, inv_std):
    """The closed-form gradient through _row_normalize; overwrites x_hat."""
    count = x_hat.shape[1]
    mean_grad = np.einsum("rm->r", grad_x_hat) / count
    mean_grad_x_hat = np.einsum("rm,rm->r", grad_x_hat, x_hat) / count
    x_hat *= mean_grad_x_hat[:, None]
    grad_input = grad_x_hat - x_hat
    grad_input -= mean_grad[:, None]
    grad_input *= inv_std[:, None]
    return grad_input


def _channel_affine(module, x_hat, shape, channels):
    """x_hat, normalised rows, back in shape (N, C, *), times weight plus bias per channel
    when module.affine (GroupNorm, InstanceNorm2d)."""
    output = x_hat.reshape(shape[0], channels, -1)
    if module.affine:
        output = output * module.weight.data[:, None]
        output += module.bias.data[:, None]
    return output.reshape(shape)


def _channel_affine_backward(module, grad_output, x_hat, inv_std, channels):
    """The input gradient through _channel_affine and _row_normalize; accumulates the
    weight and bias gradients when module.affine."""
    grad = np.asarray(grad_output)
    grad_channels = grad.reshape(grad.shape[0], channels, -1)
    if module.affine:
        module.bias.accumulate_grad(np.einsum("ncl->c", grad_channels))
        module.weight.accumulate_grad(np.einsum(
            "ncl,ncl->c", grad_channels, x_hat.reshape(grad_channels.shape)))
        grad_channels = grad_channels * module.weight.data[:, None]
    grad_input = _row_normalize_backward(grad_channels.reshape(x_hat.shape), x_hat, inv_std)
    return grad_input.reshape(grad.shape)


# native_batch_norm's activation for forward's gelu argument (GELU's approximate).
_GELU_ACTIVATIONS = {None: None, "none": "gelu", "tanh": "gelu_tanh"}


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d: statistics per channel over (N, *spatial)."""

    _input_layout = ""
    fuses_relu = True
    fuses_gelu = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=None):
        super().__init__()
        layer = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"{layer}: num_features must be a positive int, got {num_features!r}")
        _per_channel_state(self, layer, num_features, eps, momentum, affine, track_running_stats,
                           dtype)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def _channels_view(self, input):
        """The input as (N, C, L), checked."""
        layer = type(self).__name__
        input = _float_input(layer, input, self._dtype())
        if input.ndim not in self._ranks or input.shape[1] != self.num_features:
            raise ValueError(f"{layer}: expected input {self._input_layout} with C = "
                             f"{self.num_features}, got shape {input.shape}")
        return input.reshape(input.shape[0], self.num_features, -1)

    def forward(self, input, *, relu=False, gelu=None):
        """relu=True also applies max(., 0) in the same pass (a following ReLU fused by
        Sequential), gelu="none" or "tanh" a GELU of that approximation; backward then
        takes the gradient through it."""
        x = self._channels_view(input)
        use_batch_stats = self.training or not self.track_running_stats
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            # momentum=None: a cumulative moving average, weight 1 / (batches seen so far).
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
        running = self.training and self.track_running_stats
        activation = "relu" if relu else _GELU_ACTIVATIONS[gelu]
        output, mean, inv_std = F.native_batch_norm(
            x, self.weight.data if self.affine else None, self.bias.data if self.affine else None,
            self.running_mean if running or not use_batch_stats else None,
            self.running_var if running or not use_batch_stats else None,
            use_batch_stats, factor, self.eps, activation=activation)
        if use_batch_stats:
            self._save_for_backward(x, mean, inv_std, activation, output if relu else None)
        return output.reshape(np.shape(input))

    def backward(self, grad_output):
        """Gradient w.r.t. the input (batch statistics); accumulates weight and bias gradients."""
        x, mean, inv_std, activation, relu_output = self._saved_for_backward()
        grad_input, grad_weight, grad_bias = F.batch_norm_backward(
            np.asarray(grad_output).reshape(x.shape), x, self.weight.data if self.affine else None,
            mean, inv_std, relu_output=relu_output, activation=activation,
            bias=self.bias.data if self.affine else None)
        if self.affine:
            self.weight.accumulate_grad(grad_weight)
            self.bias.accumulate_grad(grad_bias)
        return grad_input.reshape(np.shape(grad_output))

    def extra_repr(self):
        args = [f"{self.num_features}"]
        for name, value, default in (("eps", self.eps, 1e-5), ("momentum", self.momentum, 0.1),
                                     ("affine", self.affine, True),
                                     ("track_running_stats", self.track_running_stats, True)):
            if value != default:
                args.append(f"{name}={value}")
        return ", ".join(args)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, H, W) per channel, as torch.nn.BatchNorm2d.

    Parameters
    ----------
    num_features : int
        C.
    eps : float
        Added to the variance.
    momentum : float or None
        running = (1 - momentum) * running + momentum * batch statistic; None gives the
        cumulative average over all batches seen (factor 1 / num_batches_tracked).
    affine : bool
        Learnable weight (ones) and bias (zeros) of shape (C,).
    track_running_stats : bool
        Keep running_mean (zeros), running_var (ones, unbiased estimates) and
        num_batches_tracked, used in eval mode; without them batch statistics are always used.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    _ranks = (4,)
    _input_layout = "(N, C, H, W)"

    def _eval_affine(self, channels):
        """In eval mode with running statistics, x * scale + shift with scale = gamma /
        sqrt(running_var + eps), shift = beta - running_mean * scale (float64)."""
        if self.training or not self.track_running_stats or channels != self.num_features:
            return None
        scale = 1 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        if self.affine:
            scale = scale * self.weight.data
        shift = -self.running_mean * scale
        if self.affine:
            shift = shift + self.bias.data
        return scale, shift


class BatchNorm1d(_BatchNorm):
    """Batch normalisation per feature, as torch.nn.BatchNorm1d; arguments as BatchNorm2d.

    Shapes: (N, C) or (N, C, L) -> same shape.
    """

    _ranks = (2, 3)
    _input_layout = "(N, C) or (N, C, L)"


class GroupNorm(Module):
    """Group normalisation, as torch.nn.GroupNorm: statistics per sample over each group of channels.

    Parameters
    ----------
    num_groups : int dividing num_channels
    num_channels : int
    eps : float
    affine : bool
        Per-channel weight (ones) and bias (zeros) of shape (C,).

    Shapes: (N, C, *) -> (N, C, *).
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, dtype=None):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} must be divisible by "
                             f"num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = (num_groups, num_channels,
                                                                     eps, affine)
        if affine:
            _affine_parameters(self, num_channels, _float_dtype("GroupNorm", dtype))
        else:
            _no_affine(self)

    def forward(self, input):
        x = _float_input("GroupNorm", input, self._dtype())
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input (N, C, *) with C = {self.num_channels}, "
                             f"got shape {x.shape}")
        batch = x.shape[0]
        x_hat, inv_std, _, _ = _row_normalize(x.reshape(batch * self.num_groups, -1), self.eps)
        self._save_for_backward(x_hat, inv_std)
        return _channel_affine(self, x_hat, x.shape, self.num_channels)

    def backward(self, grad_output):
        """Gradient w.r.t. the input; accumulates weight and bias gradients."""
        x_hat, inv_std = self._saved_for_backward()
        return _channel_affine_backward(self, grad_output, x_hat, inv_std, self.num_channels)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}"
                + (f", eps={self.eps}" if self.eps != 1e-5 else "")
                + ("" if self.affine else ", affine=False"))


class LayerNorm(Module):
    """Layer normalisation over the trailing normalized_shape dimensions, as torch.nn.LayerNorm.

    Parameters
    ----------
    normalized_shape : int or tuple
        The trailing shape to normalise over, e.g. (C, H, W).
    eps : float
    elementwise_affine : bool
        Learnable weight (ones) and bias (zeros) of shape normalized_shape.
    bias : bool
        Whether the affine part has a bias.

    Shapes: (*, *normalized_shape) -> same shape.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *,
                 dtype=None):
        super().__init__()
        shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                 else tuple(normalized_shape))
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine = elementwise_affine
        dtype = _float_dtype("LayerNorm", dtype)
        if elementwise_affine:
            self.weight = Parameter(np.ones(shape, dtype))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = Parameter(np.zeros(shape, dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        x = _float_input("LayerNorm", input, self._dtype())
        dims = len(self.normalized_shape)
        if x.ndim < dims or x.shape[x.ndim - dims:] != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input (*, {', '.join(map(str, self.normalized_shape))}), "
                             f"got shape {x.shape}")
        size = math.prod(self.normalized_shape)
        x_hat, inv_std, _, _ = _row_normalize(x.reshape(-1, size), self.eps)
        output = x_hat
        if self.weight is not None:
            output = output * self.weight.data.reshape(-1)
        if self.bias is not None:
            output += self.bias.data.reshape(-1)
        self._save_for_backward(x_hat, inv_std)
        return output.reshape(x.shape)

    def backward(self, grad_output):
        """Gradient w.r.t. the input; accumulates weight and bias gradients."""
        x_hat, inv_std = self._saved_for_backward()
        grad = np.asarray(grad_output)
        grad_rows = grad.reshape(x_hat.shape)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_rows.sum(axis=0).reshape(self.normalized_shape))
        if self.weight is not None:
            self.weight.accumulate_grad(
                np.einsum("rm,rm->m", grad_rows, x_hat).reshape(self.normalized_shape))
            grad_rows = grad_rows * self.weight.data.reshape(-1)
        return _row_normalize_backward(grad_rows, x_hat, inv_std).reshape(grad.shape)

    def extra_repr(self):
        return (f"{self.normalized_shape}" + (f", eps={self.eps}" if self.eps != 1e-5 else "")
                + ("" if self.elementwise_affine else ", elementwise_affine=False")
                + ("" if self.bias is not None or not self.elementwise_affine else ", bias=False"))


class InstanceNorm2d(Module):
    """Instance normalisation: statistics per sample and channel over (H, W), as torch.nn.InstanceNorm2d.

    Parameters
    ----------
    num_features : int
    eps : float
    momentum : float or None
        For the running statistics; None means no update (PyTorch passes 0).
    affine : bool
        Per-channel weight (ones) and bias (zeros); off by default, as in PyTorch.
    track_running_stats : bool
        Off by default. When on, training updates running_mean / running_var with the
        batch average of the per-instance mean / unbiased variance, and eval mode
        normalises with them.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, *, dtype=None):
        super().__init__()
        _per_channel_state(self, "InstanceNorm2d", num_features, eps, momentum, affine, track_running_stats,
                           dtype)

    def forward(self, input):
        x = _float_input("InstanceNorm2d", input, self._dtype())
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"InstanceNorm2d: expected input (N, C, H, W) with C = "
                             f"{self.num_features}, got shape {x.shape}")
        batch, channels = x.shape[:2]
        if self.track_running_stats and not self.training:
            scale = 1 / np.sqrt(self.running_var + self.eps)
            if self.affine:
                scale = scale * self.weight.data
            shift = -self.running_mean * scale + (self.bias.data if self.affine else 0)
            output = x * scale[:, None, None]
            output += shift[:, None, None]
            return output
        x_hat, inv_std, mean, var = _row_normalize(x.reshape(batch * channels, -1), self.eps)
        if self.training and self.track_running_stats and self.momentum is not None:
            count = x_hat.shape[1]
            unbiased = var * (count / (count - 1)) if count > 1 else var
            self.running_mean *= 1 - self.momentum
            self.running_mean += self.momentum * mean.reshape(batch, channels).mean(axis=0)
            self.running_var *= 1 - self.momentum
            self.running_var += self.momentum * unbiased.reshape(batch, channels).mean(axis=0)
        self._save_for_backward(x_hat, inv_std)
        return _channel_affine(self, x_hat, x.shape, channels)

    def backward(self, grad_output):
        """Gradient w.r.t. the input; accumulates weight and bias gradients."""
        x_hat, inv_std = self._saved_for_backward()
        return _channel_affine_backward(self, grad_output, x_hat, inv_std, self.num_features)

    def extra_repr(self):
        args = [f"{self.num_features}"]
        for name, value, default in (("eps", self.eps, 1e-5), ("momentum", self.momentum, 0.1),
                                     ("affine", self.affine, False),
                                     ("track_running_stats", self.track_running_stats, False)):
            if value != default:
                args.append(f"{name}={value}")
        return ", ".join(args)


class LocalResponseNorm(Module):
    """Local response normalisation across channels, as torch.nn.LocalResponseNorm.

    b_c = a_c * (k + alpha / size * sum_{c' in W(c)} a_{c'} ** 2) ** -beta, where the window
    W(c) runs from c - size // 2 to c + (size - 1) // 2, clipped to the channels (the sum
    is still divided by size, as PyTorch's zero padding does).

    Shapes: (N, C, *) -> same shape.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"LocalResponseNorm: size must be a positive int, got {size!r}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    @staticmethod
    def _window_sum(values, before, after):
        """sum of values[:, c - before : c + after + 1] along channels, clipped at the edges."""
        total = values.copy()
        channels = values.shape[1]
        for offset in range(1, before + 1):
            total[:, offset:] += values[:, :channels - offset]
        for offset in range(1, after + 1):
            total[:, :channels - offset] += values[:, offset:]
        return total

    def forward(self, input):
        x = _float_input("LocalResponseNorm", input)
        if x.ndim < 3:
            raise ValueError(f"LocalResponseNorm: expected input (N, C, *) of 3 or more "
                             f"dimensions, got shape {x.shape}")
        before, after = self.size // 2, (self.size - 1) // 2
        denominator = self._window_sum(x * x, before, after)
        denominator *= self.alpha / self.size
        denominator += self.k
        scale = denominator ** -self.beta
        self._save_for_backward(x, denominator, scale)
        return x * scale

    def backward(self, grad_output):
        """Gradient w.r.t. the input."""
        x, denominator, scale = self._saved_for_backward()
        grad = np.asarray(grad_output)
        # d b_c / d a_j has a term 2 a_j alpha / size * (-beta) * a_c * d_c^(-beta-1) for every
        # window W(c) containing j: the windows seen from j run the other way round.
        weighted = grad * x * scale / denominator
        before, after = self.size // 2, (self.size - 1) // 2
        grad_input = self._window_sum(weighted, after, before)
        grad_input *= x * (-2 * self.alpha * self.beta / self.size)
        grad_input += grad * scale
        return grad_input

    def extra_repr(self):
        return (f"{self.size}" + (f", alpha={self.alpha}" if self.alpha != 1e-4 else "")
                + (f", beta={self.beta}" if self.beta != 0.75 else "")
                + (f", k={self.k}" if self.k != 1.0 else ""))
