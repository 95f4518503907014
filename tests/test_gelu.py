"""The compiled gelu / gelu_backward against the float64 formulas.

float32 runs on src/_gelu.h's approximations of exp and erf; its documented bound is
1e-6 * max(1, |x|) for the forward pass and 1e-6 for the derivative (which lies within
[-0.17, 1.13]). float64 uses libm and must match the formulas to rounding.
"""
import math

import numpy as np
import pytest
from scipy.special import erf

import fastconv
import fastconv.functional as F
from fastconv._isa import kernels

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def formulas(x, approximate):
    """GELU and its derivative in float64."""
    if approximate == "tanh":
        t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (
            1 + 3 * 0.044715 * x * x)
    cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
    return x * cdf, cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def values(dtype):
    """A fine grid over [-12, 12] (past it GELU is x or 0 in float32), normal draws, and
    some far out: four chunks of the kernels, the last partial, and a partial vector."""
    rng = np.random.default_rng(7)
    grid = np.linspace(-12, 12, 98315)
    return np.concatenate([grid, rng.standard_normal(1000) * 4, [0.0, -0.0, 1e-30, -1e-30,
                                                                 40.0, -40.0, 1e4, -1e4]]
                          ).astype(dtype)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_float32_is_within_the_documented_bound(approximate):
    x = values(np.float32)
    expected, expected_derivative = formulas(x.astype(np.float64), approximate)
    output = F.gelu(x, approximate)
    grad_output = np.random.default_rng(1).standard_normal(x.size).astype(np.float32)
    grad_input = F.gelu_backward(grad_output, x, approximate)
    assert output.dtype == grad_input.dtype == np.float32
    error = np.abs(output - expected) / np.maximum(1, np.abs(x.astype(np.float64)))
    assert error.max() <= 1e-6, x[error.argmax()]
    error = np.abs(grad_input - grad_output * expected_derivative)
    assert error.max() <= 1e-6 * np.abs(grad_output).max(), x[error.argmax()]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_float64_is_the_formula(approximate):
    x = values(np.float64)
    expected, expected_derivative = formulas(x, approximate)
    assert kernels.activation.chunk_count(x.size) == 4
    # libm's erf and SciPy's differ in the last bit, which 0.5 x (1 + erf) scales by x.
    error = np.abs(F.gelu(x, approximate) - expected) / np.maximum(1, np.abs(x))
    assert error.max() <= 1e-14, x[error.argmax()]
    error = np.abs(F.gelu_backward(np.ones_like(x), x, approximate) - expected_derivative)
    assert error.max() <= 1e-14, x[error.argmax()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_special_values_follow_the_formula(approximate, dtype):
    """NaN stays NaN, GELU(inf) = inf, and GELU(-inf) is -inf * 0 = NaN, as the formula
    in NumPy gives; the derivative is NaN at all three."""
    x = np.array([np.nan, np.inf, -np.inf], dtype)
    output = F.gelu(x, approximate)
    assert np.isnan(output[0]) and output[1] == np.inf and np.isnan(output[2])
    assert np.isnan(F.gelu_backward(np.ones_like(x), x, approximate)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_thread_count(dtype):
    x = values(dtype)
    previous = fastconv.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            results.append((F.gelu(x), F.gelu_backward(x, x, "tanh")))
    finally:
        fastconv.set_num_threads(previous)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_bad_arguments_raise_value_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh'"):
        F.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="gelu_backward: approximate"):
        F.gelu_backward(x, x, approximate=None)
    with pytest.raises(ValueError, match="gelu_backward: grad_output .* input"):
        F.gelu_backward(np.ones(3, np.float32), x)
