"""Weight initialisation as torch.nn.init: in place on ndarrays or Parameters.

Every function fills its argument in place and returns it. Random draws come from the
generator that fastconv.manual_seed reseeds, unless a numpy Generator is passed.
Fans follow PyTorch: for a weight (C_out, C_in, *kernel), fan_in = C_in * prod(kernel)
and fan_out = C_out * prod(kernel).
"""
import math
import warnings

import numpy as np

from fastconv._random import default_generator

__all__ = ["calculate_gain", "constant_", "dirac_", "kaiming_normal_", "kaiming_uniform_",
           "normal_", "ones_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_"]

_LINEAR_GAINS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                 "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain.

    linear, conv*, sigmoid: 1; tanh: 5/3; relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + negative_slope ** 2)) with param the slope (default 0.01);
    selu: 3/4.
    """
    if nonlinearity in _LINEAR_GAINS:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _array(fn, tensor):
    """The writable float ndarray behind an ndarray or a Parameter."""
    # Not getattr(tensor, "data"): every ndarray has a .data (its buffer) too.
    array = tensor if isinstance(tensor, np.ndarray) else getattr(tensor, "data", tensor)
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise TypeError(f"{fn}: expected a float ndarray or Parameter, got {type(tensor).__name__}"
                        + (f" of dtype {array.dtype}" if isinstance(array, np.ndarray) else ""))
    if not array.flags.writeable:
        raise ValueError(f"{fn}: the array is read-only")
    return array


def _fill(tensor, values):
    array = _array("init", tensor)
    array[...] = values
    return tensor


def _calculate_fan_in_and_fan_out(fn, array):
    if array.ndim < 2:
        raise ValueError(f"{fn}: fan in and fan out need an array of at least 2 dimensions, "
                         f"got shape {array.shape}")
    receptive_field = math.prod(array.shape[2:])
    return array.shape[1] * receptive_field, array.shape[0] * receptive_field


def _fan(fn, array, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{fn}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(fn, array)
    return fan_in if mode == "fan_in" else fan_out


def _generator(generator):
    return default_generator() if generator is None else generator


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with values drawn from U(a, b)."""
    array = _array("uniform_", tensor)
    return _fill(tensor, _generator(generator).uniform(a, b, array.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with values drawn from N(mean, std ** 2)."""
    array = _array("normal_", tensor)
    return _fill(tensor, _generator(generator).normal(mean, std, array.shape))


def constant_(tensor, val):
    """Fill with the value val."""
    _array("constant_", tensor)
    return _fill(tensor, val)


def zeros_(tensor):
    """Fill with zeros."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with ones."""
    return constant_(tensor, 1.0)


def dirac_(tensor, groups=1):
    """Fill a 3-, 4- or 5-D conv weight with the Dirac delta: the convolution is the identity.

    Each of the groups (splitting dimension 0) keeps as many input channels as it has
    outputs, the rest are zero.
    """
    array = _array("dirac_", tensor)
    if array.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only 3-, 4- and 5-D arrays are supported, got shape "
                         f"{array.shape}")
    if array.shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({array.shape[0]}) must be divisible by groups={groups}")
    out_per_group = array.shape[0] // groups
    centre = tuple(size // 2 for size in array.shape[2:])
    array[...] = 0
    for g in range(groups):
        for d in range(min(out_per_group, array.shape[1])):
            array[(g * out_per_group + d, d) + centre] = 1
    return tensor


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    array = _array("xavier_uniform_", tensor)
    fan_in, fan_out = _calculate_fan_in_and_fan_out("xavier_uniform_", array)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(tensor, _generator(generator).uniform(-bound, bound, array.shape))


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal: N(0, std ** 2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    array = _array("xavier_normal_", tensor)
    fan_in, fan_out = _calculate_fan_in_and_fan_out("xavier_normal_", array)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(tensor, _generator(generator).normal(0.0, std, array.shape))


def _kaiming_std(fn, array, a, mode, nonlinearity):
    fan = _fan(fn, array, mode)
    if fan == 0:
        # Zero-element weights (e.g. no input channels) have nothing to scale: a no-op, as in PyTorch.
        warnings.warn(f"{fn}: initializing a zero-element array is a no-op")
        return None
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan).

    a is the negative slope of the leaky_relu after the layer (0 for relu); fan is fan_in
    (preserves the forward variance) or fan_out (the backward variance). PyTorch's layers
    call this with a = sqrt(5), giving bound = 1 / sqrt(fan_in).
    """
    array = _array("kaiming_uniform_", tensor)
    std = _kaiming_std("kaiming_uniform_", array, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return _fill(tensor, _generator(generator).uniform(-bound, bound, array.shape))


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, std ** 2) with std = gain / sqrt(fan)."""
    array = _array("kaiming_normal_", tensor)
    std = _kaiming_std("kaiming_normal_", array, a, mode, nonlinearity)
    if std is None:
        return tensor
    return _fill(tensor, _generator(generator).normal(0.0, std, array.shape))
