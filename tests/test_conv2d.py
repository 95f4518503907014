"""conv2d / conv2d_backward against the NumPy reference, and the reference against naive loops.

Every algorithm ("direct", "im2col", "auto") is compared with fastconv.reference over
named edge cases and seeded random geometries in float32 and float64; float32 results
are checked against the float64 reference on the same values. Beside that: central
finite differences, the adjoint identity, thread-count invariance (bitwise), non-contiguous
inputs, output_mask, workspace reuse, and the im2col / col2im twins.

Geometry arithmetic (output size, PyTorch's "same" padding) is re-derived here rather than
taken from fastconv._shapes, so the tests do not borrow the rules they check.
"""
import functools
import itertools
from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
import fastconv.reference as reference
from fastconv._isa import kernels

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

DTYPES = [np.float32, np.float64]
ALGOS = ["direct", "im2col", "auto"]
EXPLICIT_ALGOS = ["direct", "im2col"]
# Relative to the magnitude of the expected values (see assert_close).
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
GRADIENT_NAMES = ("grad_input", "grad_weight", "grad_bias")


def dtype_id(dtype):
    return np.dtype(dtype).name


# --------------------------------------------------------------------------------------
# Geometries
# --------------------------------------------------------------------------------------

Pair = Union[int, Tuple[int, int]]


def as_pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def explicit_padding(padding, kernel_size, dilation):
    """(top, bottom, left, right) padding as PyTorch applies it."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        pads = []
        for kernel, dil in zip(kernel_size, as_pair(dilation)):
            total = dil * (kernel - 1)
            pads += [total // 2, total - total // 2]  # the odd pixel goes bottom / right
        return tuple(pads)
    pad_h, pad_w = as_pair(padding)
    return pad_h, pad_h, pad_w, pad_w


def format_pair(value):
    h, w = as_pair(value)
    return f"{h}" if h == w and not isinstance(value, tuple) else f"{h}x{w}"


@dataclass(frozen=True)
class ConvCase:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel_h: int
    kernel_w: int
    stride: Pair = 1
    padding: Union[Pair, str] = 0
    dilation: Pair = 1
    groups: int = 1
    bias: bool = True
    label: Optional[str] = field(default=None, compare=False)

    @property
    def pads(self):
        return explicit_padding(self.padding, (self.kernel_h, self.kernel_w), self.dilation)

    @property
    def output_size(self):
        top, bottom, left, right = self.pads
        stride_h, stride_w = as_pair(self.stride)
        dilation_h, dilation_w = as_pair(self.dilation)
        out_h = (self.height + top + bottom - dilation_h * (self.kernel_h - 1) - 1) // stride_h + 1
        out_w = (self.width + left + right - dilation_w * (self.kernel_w - 1) - 1) // stride_w + 1
        return out_h, out_w

    @property
    def input_shape(self):
        return self.batch, self.in_channels, self.height, self.width

    @property
    def weight_shape(self):
        return self.out_channels, self.in_channels // self.groups, self.kernel_h, self.kernel_w

    @property
    def output_shape(self):
        return (self.batch, self.out_channels) + self.output_size

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    @property
    def id(self):
        padding = self.padding if isinstance(self.padding, str) else format_pair(self.padding)
        text = (f"N{self.batch}-C{self.in_channels}-F{self.out_channels}-"
                f"{self.height}x{self.width}-k{self.kernel_h}x{self.kernel_w}-"
                f"s{format_pair(self.stride)}-p{padding}-d{format_pair(self.dilation)}-"
                f"g{self.groups}" + ("" if self.bias else "-nobias"))
        return f"{self.label}:{text}" if self.label else text

    def arrays(self, dtype, seed):
        """Seeded (input, weight, bias, grad_output) in dtype; values are N(0, 1)."""
        rng = np.random.default_rng(seed)
        input = rng.standard_normal(self.input_shape).astype(dtype)
        weight = rng.standard_normal(self.weight_shape).astype(dtype)
        bias = rng.standard_normal(self.out_channels).astype(dtype) if self.bias else None
        grad_output = rng.standard_normal(self.output_shape).astype(dtype)
        return input, weight, bias, grad_output


def case(batch, in_channels, out_channels, size, kernel, label=None, **kwargs):
    """ConvCase from (H, W) and (kH, kW) pairs (or ints)."""
    height, width = as_pair(size)
    kernel_h, kernel_w = as_pair(kernel)
    return ConvCase(batch, in_channels, out_channels, height, width, kernel_h, kernel_w,
                    label=label, **kwargs)


NAMED_CASES = [
    case(2, 3, 4, (5, 4), (3, 2), "rect-3x2-odd-5x4"),
    case(2, 3, 4, (5, 4), (2, 3), "rect-2x3", padding=(1, 0)),
    case(1, 2, 3, (6, 7), (1, 3), "rect-1x3", padding=(0, 1)),
    case(1, 2, 3, (7, 6), (3, 1), "rect-3x1", stride=(2, 1)),
    case(1, 3, 2, (6, 5), 3, "batch1"),
    case(2, 3, 4, 1, 1, "input-1x1-kernel-1x1"),
    case(2, 3, 4, 1, 3, "input-1x1-pad1", padding=1),
    case(2, 2, 3, (4, 3), (4, 3), "kernel-equals-input"),
    case(2, 2, 3, (3, 2), (5, 4), "kernel-equals-padded-input", padding=1),
    case(2, 2, 3, (3, 2), (3, 2), "dilated-kernel-equals-padded-input", padding=(1, 2),
         dilation=(2, 5)),
    case(2, 4, 6, (5, 4), 1, "pointwise"),
    case(2, 4, 6, (5, 4), 1, "pointwise-stride2", stride=2),
    case(2, 4, 6, (5, 4), 1, "pointwise-stride-2x1", stride=(2, 1)),
    case(2, 4, 6, (5, 4), 1, "pointwise-pad1", padding=1),
    case(2, 4, 6, (5, 4), 1, "pointwise-pad-0x1", padding=(0, 1)),
    case(2, 4, 6, (5, 4), 1, "pointwise-stride2-pad1", stride=2, padding=1),
    case(2, 4, 6, (5, 4), 1, "pointwise-dilated", dilation=3),
    case(2, 4, 6, (5, 4), 1, "pointwise-groups2", groups=2),
    # 64 and 32 pixels: whole panels at every level, so the implicit GEMM reads the input
    # in place (src/_conv_gemm.pyx); 5x4 above is copied.
    case(3, 5, 18, (8, 8), 1, "pointwise-8x8-in-place"),
    case(2, 6, 4, (4, 8), 1, "pointwise-4x8-in-place-groups2", groups=2),
    case(2, 4, 6, (5, 4), 1, "pointwise-pad2-beyond-kernel", padding=2),
    case(2, 4, 4, (6, 5), 3, "depthwise", padding=1, groups=4),
    case(2, 3, 3, (6, 5), (3, 2), "depthwise-strided", stride=2, groups=3),
    case(2, 3, 6, (6, 5), 3, "depthwise-multiplier2", padding=1, groups=3),
    case(2, 2, 6, (5, 6), (2, 3), "depthwise-multiplier3", groups=2, dilation=(2, 1)),
    case(2, 6, 4, (5, 5), 3, "groups2", groups=2),
    case(2, 6, 9, (5, 5), 3, "groups3-multiplier", groups=3, stride=2, padding=1),
    case(2, 3, 4, (6, 5), 4, "same-even-kernel", padding="same"),
    case(2, 3, 4, (6, 5), (4, 2), "same-even-rect", padding="same"),
    case(2, 3, 4, (7, 6), 2, "same-dilation3-k2", padding="same", dilation=3),
    case(2, 3, 4, (7, 6), (2, 3), "same-dilation-2x3", padding="same", dilation=(2, 3)),
    case(2, 3, 4, (5, 4), 3, "same-odd", padding="same"),
    case(2, 4, 4, (6, 5), 3, "same-depthwise", padding="same", groups=4),
    case(2, 3, 4, (6, 5), 3, "valid", padding="valid"),
    case(2, 3, 4, (6, 5), 3, "valid-strided", padding="valid", stride=(2, 3)),
    case(2, 3, 4, (9, 8), 3, "stride3-dilation2", stride=3, dilation=2, padding=2),
    case(2, 3, 4, (5, 4), 3, "stride-exceeds-input", stride=7, padding=1),
    case(2, 3, 4, (4, 4), 2, "padding-exceeds-kernel", padding=3),
    case(3, 2, 5, (6, 5), 3, "padding-list", padding=[2, 1], stride=[1, 2]),
    case(2, 3, 4, (5, 4), (3, 2), "nobias", bias=False),
]


def random_case(rng):
    """One random geometry with a non-empty output; small enough to keep the suite fast."""
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        depthwise = rng.random() < 0.2
        group_in = 1 if depthwise else int(rng.integers(1, 4))
        group_out = int(rng.integers(1, 4))
        kernel_h, kernel_w = (int(k) for k in rng.choice([1, 1, 2, 3, 3, 4, 5], size=2))
        height, width = (int(s) for s in rng.integers(1, 11, size=2))
        dilation = tuple(int(d) for d in rng.choice([1, 1, 1, 2, 3], size=2))
        kind = rng.choice(["int", "pair", "same", "valid"], p=[0.4, 0.35, 0.15, 0.1])
        stride = tuple(int(s) for s in rng.choice([1, 1, 2, 3], size=2))
        if kind == "same":
            stride = (1, 1)
            padding = "same"
        elif kind == "valid":
            padding = "valid"
        elif kind == "int":
            padding = int(rng.integers(0, 4))
        else:
            padding = tuple(int(p) for p in rng.integers(0, 4, size=2))
        # Plain ints half the time for square values, as callers usually write them.
        if stride[0] == stride[1] and rng.random() < 0.5:
            stride = stride[0]
        if dilation[0] == dilation[1] and rng.random() < 0.5:
            dilation = dilation[0]
        candidate = ConvCase(int(rng.integers(1, 4)), groups * group_in, groups * group_out,
                             height, width, kernel_h, kernel_w, stride, padding, dilation,
                             groups, bias=bool(rng.random() < 0.8))
        if min(candidate.output_size) >= 1:
            return candidate


def random_cases(count, seed):
    rng = np.random.default_rng(seed)
    return [random_case(rng) for _ in range(count)]


# --------------------------------------------------------------------------------------
# Assertions and fixtures
# --------------------------------------------------------------------------------------

@pytest.fixture
def single_thread(restore_num_threads):
    """One thread for the large sweeps of tiny calls.

    On a loaded 2-core machine every OpenMP region of a tiny call waits for a descheduled
    thread, which made the sweeps ten times slower. Correctness with more threads follows
    from the bitwise thread-invariance tests below.
    """
    fastconv.set_num_threads(1)


def assert_close(actual, expected, dtype, name="output"):
    """actual (in dtype) within TOLERANCE[dtype] of expected, relative to max(1, max|expected|).

    Elementwise relative error alone would fail on values that cancel to near zero, so
    the absolute tolerance scales with the largest expected magnitude.
    """
    assert actual is not None, f"{name} is None"
    assert actual.dtype == np.dtype(dtype), f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    tolerance = TOLERANCE[np.dtype(dtype)]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale,
                               err_msg=name)


def assert_bitwise_equal(actual, expected, name="output"):
    if expected is None:
        assert actual is None, f"{name}: expected None"
        return
    assert actual is not None, f"{name} is None"
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
    as_bits = np.uint32 if actual.dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(np.ascontiguousarray(actual).view(as_bits),
                                  np.ascontiguousarray(expected).view(as_bits), err_msg=name)


def assert_fresh_c_contiguous(result, *inputs):
    assert result.flags.c_contiguous
    for array in inputs:
        if array is not None:
            assert not np.shares_memory(result, array)


# --------------------------------------------------------------------------------------
# The reference against naive loops
# --------------------------------------------------------------------------------------

def naive_conv2d(input, weight, bias, stride, pads, dilation, groups):
    """Seven nested loops straight from the definition; pads = (top, bottom, left, right)."""
    batch, in_channels, height, width = input.shape
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    (stride_h, stride_w), (dilation_h, dilation_w) = as_pair(stride), as_pair(dilation)
    top, bottom, left, right = pads
    out_h = (height + top + bottom - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width + left + right - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    group_out = out_channels // groups
    output = np.zeros((batch, out_channels, out_h, out_w))
    for n in range(batch):
        for co in range(out_channels):
            first_channel = (co // group_out) * group_in
            for oh in range(out_h):
                for ow in range(out_w):
                    total = 0.0 if bias is None else float(bias[co])
                    for ci in range(group_in):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                h = oh * stride_h + i * dilation_h - top
                                w = ow * stride_w + j * dilation_w - left
                                if 0 <= h < height and 0 <= w < width:
                                    pixel = input[n, first_channel + ci, h, w]
                                    total += pixel * weight[co, ci, i, j]
                    output[n, co, oh, ow] = total
    return output


def naive_conv2d_backward(grad_output, input, weight, stride, pads, dilation, groups):
    """The same loops, scattering grad_output back: (grad_input, grad_weight, grad_bias)."""
    batch, in_channels, height, width = input.shape
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    (stride_h, stride_w), (dilation_h, dilation_w) = as_pair(stride), as_pair(dilation)
    top, _, left, _ = pads
    _, _, out_h, out_w = grad_output.shape
    group_out = out_channels // groups
    grad_input = np.zeros(input.shape)
    grad_weight = np.zeros(weight.shape)
    grad_bias = np.zeros(out_channels)
    for n in range(batch):
        for co in range(out_channels):
            first_channel = (co // group_out) * group_in
            for oh in range(out_h):
                for ow in range(out_w):
                    g = grad_output[n, co, oh, ow]
                    grad_bias[co] += g
                    for ci in range(group_in):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                h = oh * stride_h + i * dilation_h - top
                                w = ow * stride_w + j * dilation_w - left
                                if 0 <= h < height and 0 <= w < width:
                                    c = first_channel + ci
                                    grad_input[n, c, h, w] += g * weight[co, ci, i, j]
                                    grad_weight[co, ci, i, j] += g * input[n, c, h, w]
    return grad_input, grad_weight, grad_bias


def naive_cost(c):
    out_h, out_w = c.output_size
    return c.batch * c.out_channels * out_h * out_w * c.weight_shape[1] * c.kernel_h * c.kernel_w


REFERENCE_CASES = [
    case(2, 4, 6, (5, 4), (3, 2), "groups2-stride-dilation", stride=(2, 1), padding=(1, 2),
         dilation=(1, 2), groups=2),
    case(1, 3, 3, (5, 5), 3, "depthwise", padding=1, groups=3),
    case(2, 2, 4, (4, 5), 2, "depthwise-multiplier2", stride=2, groups=2),
    case(1, 2, 3, (5, 4), 4, "same-k4", padding="same"),
    case(1, 2, 3, (6, 5), (4, 3), "same-k4x3", padding="same"),
    case(1, 2, 2, (6, 7), 2, "same-dilation3-k2", padding="same", dilation=3),
    case(1, 2, 2, (5, 6), (2, 3), "same-dilation-3x2", padding="same", dilation=(3, 2)),
    case(2, 2, 3, (5, 4), (1, 3), "rect-1x3-strided", stride=(1, 2), padding=(0, 1)),
    case(2, 3, 2, 1, 1, "input-1x1"),
    case(1, 2, 2, (3, 2), (5, 4), "kernel-equals-padded-input", padding=1),
    case(2, 2, 2, (3, 3), 1, "pointwise-padded-strided", stride=2, padding=2),
    case(1, 2, 2, (7, 5), 3, "stride3-dilation2", stride=3, padding=2, dilation=2),
] + [c for c in random_cases(200, seed=7) if naive_cost(c) <= 1500][:15]


@pytest.mark.parametrize("c", REFERENCE_CASES, ids=lambda c: c.id)
def test_reference_matches_naive_loops(c):
    input, weight, bias, grad_output = c.arrays(np.float64, seed=11)
    expected = naive_conv2d(input, weight, bias, c.stride, c.pads, c.dilation, c.groups)
    output = reference.conv2d(input, weight, bias, **c.kwargs)
    assert_close(output, expected, np.float64)
    expected_grads = naive_conv2d_backward(grad_output, input, weight, c.stride, c.pads,
                                           c.dilation, c.groups)
    grads = reference.conv2d_backward(grad_output, input, weight, **c.kwargs)
    for name, actual, wanted in zip(GRADIENT_NAMES, grads, expected_grads):
        assert_close(actual, wanted, np.float64, name)


def test_reference_same_padding_puts_odd_pixel_bottom_right():
    # One input pixel set: with k=4 'same' pads 1 on top/left and 2 at the bottom/right,
    # so output (0, 0) sees input (0, 0) through kernel tap (1, 1) and nothing else.
    input = np.zeros((1, 1, 4, 4))
    input[0, 0, 0, 0] = 1.0
    weight = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    output = reference.conv2d(input, weight, padding="same")
    assert output.shape == (1, 1, 4, 4)
    assert output[0, 0, 0, 0] == weight[0, 0, 1, 1]
    assert output[0, 0, 0, 1] == weight[0, 0, 1, 0]
    assert output[0, 0, 1, 0] == weight[0, 0, 0, 1]


# --------------------------------------------------------------------------------------
# fastconv against the reference
# --------------------------------------------------------------------------------------

RANDOM_CASE_COUNT = 220
CASES = {
    np.dtype(np.float32): NAMED_CASES + random_cases(RANDOM_CASE_COUNT, seed=32),
    np.dtype(np.float64): NAMED_CASES + random_cases(RANDOM_CASE_COUNT, seed=64),
}
CASE_PARAMS = [pytest.param(dtype, index, id=f"{dtype.name}-{index}-{c.id}")
               for dtype, cases in CASES.items() for index, c in enumerate(cases)]


@functools.lru_cache(maxsize=None)
def case_data(dtype, index):
    """Arrays in dtype and the float64 reference results on exactly those values.

    The arrays are shared by the three algorithms' tests, so they are made read-only: a
    call that wrote into its arguments would fail rather than corrupt the next test.
    """
    c = CASES[dtype][index]
    arrays = c.arrays(dtype, seed=index)
    for array in arrays:
        if array is not None:
            array.setflags(write=False)
    input, weight, bias, grad_output = (None if a is None else a.astype(np.float64)
                                        for a in arrays)
    expected = reference.conv2d(input, weight, bias, **c.kwargs)
    expected_grads = reference.conv2d_backward(grad_output, input, weight, **c.kwargs)
    return arrays, expected, expected_grads


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype, index", CASE_PARAMS)
def test_conv2d_matches_reference(dtype, index, algo, single_thread):
    c = CASES[dtype][index]
    (input, weight, bias, grad_output), expected, expected_grads = case_data(dtype, index)
    output = F.conv2d(input, weight, bias, **c.kwargs, algo=algo)
    assert output.shape == c.output_shape
    assert_close(output, expected, dtype)
    assert_fresh_c_contiguous(output, input, weight, bias)
    grads = F.conv2d_backward(grad_output, input, weight, **c.kwargs, algo=algo)
    for name, actual, wanted in zip(GRADIENT_NAMES, grads, expected_grads):
        assert_close(actual, wanted, dtype, name)
        assert_fresh_c_contiguous(actual, grad_output, input, weight)


def test_random_cases_cover_the_geometries():
    """The seeded lists keep covering what they are meant to, whatever the seed."""
    for cases in CASES.values():
        assert len(cases) >= 200
        random_part = cases[len(NAMED_CASES):]
        assert any(c.groups > 1 and c.groups == c.in_channels for c in random_part)
        assert any(c.groups > 1 and c.out_channels > c.in_channels for c in random_part)
        assert any(c.kernel_h != c.kernel_w for c in random_part)
        assert any(c.height != c.width for c in random_part)
        assert any(c.padding == "same" and (c.kernel_h % 2 == 0 or c.kernel_w % 2 == 0)
                   for c in random_part)
        assert any(c.padding == "valid" for c in random_part)
        assert any(isinstance(c.padding, tuple) for c in random_part)
        assert any(as_pair(c.stride) != (1, 1) for c in random_part)
        assert any(as_pair(c.dilation) != (1, 1) for c in random_part)
        assert any(c.batch == 1 for c in random_part)
        assert any(c.output_size == (1, 1) for c in random_part)
        assert any(not c.bias for c in random_part)
        # Both branches of algo="auto": thin (group_in * kH * kW <= 27) and wide columns.
        assert any(c.weight_shape[1] * c.kernel_h * c.kernel_w > 27 for c in random_part)


def test_empty_batch():
    """N = 0 is valid, as in PyTorch: empty output and grad_input, zero grad_weight, grad_bias."""
    input = np.zeros((0, 3, 5, 4))
    weight = np.ones((4, 3, 3, 2))
    bias = np.ones(4)
    for algo in ALGOS:
        output = F.conv2d(input, weight, bias, padding=1, algo=algo)
        assert output.shape == (0, 4, 5, 5)
        grad_input, grad_weight, grad_bias = F.conv2d_backward(
            np.zeros((0, 4, 5, 5)), input, weight, padding=1, algo=algo)
        assert grad_input.shape == input.shape
        np.testing.assert_array_equal(grad_weight, np.zeros_like(weight))
        np.testing.assert_array_equal(grad_bias, np.zeros(4))


# --------------------------------------------------------------------------------------
# Finite differences and the adjoint identity
# --------------------------------------------------------------------------------------

def central_difference(loss, array, step=1e-3):
    """d loss / d array by central differences, perturbing array in place.

    conv2d is linear in each of input, weight and bias separately, so the central
    difference carries no truncation error and a moderate step keeps rounding small.
    """
    gradient = np.zeros_like(array)
    flat = array.reshape(-1)
    for k in range(flat.size):
        original = flat[k]
        flat[k] = original + step
        plus = loss()
        flat[k] = original - step
        minus = loss()
        flat[k] = original
        gradient.flat[k] = (plus - minus) / (2 * step)
    return gradient


GRADCHECK_CASES = [
    case(2, 4, 6, (5, 4), (3, 2), "groups2-stride-dilation", stride=(2, 1), padding=(1, 0),
         dilation=(1, 2), groups=2),
    case(2, 3, 2, (5, 6), 4, "same-k4", padding="same"),
    case(1, 3, 6, (5, 4), (2, 3), "depthwise-multiplier2", stride=(1, 2), padding=1, groups=3),
    case(2, 4, 3, (3, 4), 1, "pointwise"),
    case(2, 2, 3, (4, 3), 1, "pointwise-strided-padded", stride=2, padding=1),
]


@pytest.mark.parametrize("algo", EXPLICIT_ALGOS)
@pytest.mark.parametrize("c", GRADCHECK_CASES, ids=lambda c: c.id)
def test_gradients_match_central_differences(c, algo, single_thread):
    input, weight, bias, _ = c.arrays(np.float64, seed=3)
    projection = np.random.default_rng(4).standard_normal(c.output_shape)

    def loss():
        return float(np.sum(F.conv2d(input, weight, bias, **c.kwargs, algo=algo) * projection))

    grads = F.conv2d_backward(projection, input, weight, **c.kwargs, algo=algo)
    for name, actual, array in zip(GRADIENT_NAMES, grads, (input, weight, bias)):
        numeric = central_difference(loss, array)
        np.testing.assert_allclose(actual, numeric, rtol=1e-7, atol=1e-7, err_msg=name)


ADJOINT_CASES = NAMED_CASES[:3] + random_cases(25, seed=99)


@pytest.mark.parametrize("algo", EXPLICIT_ALGOS)
@pytest.mark.parametrize("c", ADJOINT_CASES, ids=lambda c: c.id)
def test_adjoint_identity(c, algo):
    """<conv2d(x, w), y> = <x, grad_input(y)> = <w, grad_weight(y)>."""
    input, weight, _, grad_output = c.arrays(np.float64, seed=5)
    output = F.conv2d(input, weight, **c.kwargs, algo=algo)
    grad_input, grad_weight, _ = F.conv2d_backward(grad_output, input, weight, **c.kwargs,
                                                   algo=algo)
    forward = np.vdot(output, grad_output)
    bound = np.linalg.norm(output) * np.linalg.norm(grad_output)  # Cauchy-Schwarz
    assert abs(forward - np.vdot(input, grad_input)) <= 1e-12 * bound
    assert abs(forward - np.vdot(weight, grad_weight)) <= 1e-12 * bound


# --------------------------------------------------------------------------------------
# Thread count, memory layout, output_mask, workspace
# --------------------------------------------------------------------------------------

def run_all(c, arrays, algo, output_mask=(True, True, True)):
    input, weight, bias, grad_output = arrays
    output = F.conv2d(input, weight, bias, **c.kwargs, algo=algo)
    grads = F.conv2d_backward(grad_output, input, weight, **c.kwargs, algo=algo,
                              output_mask=output_mask)
    return (output,) + tuple(grads)


RESULT_NAMES = ("output",) + GRADIENT_NAMES
THREAD_GEOMETRIES = [
    case(1, 4, 6, (9, 8), (3, 2), "generic", stride=(2, 1), padding=1, groups=2),
    case(1, 4, 6, (6, 5), 1, "pointwise"),
    case(1, 4, 4, (7, 6), 3, "depthwise", padding="same", groups=4),
    case(1, 8, 6, (6, 7), 3, "wide", padding=1),
    # At batch 1 the threads go to BLAS; a GEMM this size (24 x 144 x 144) is one that
    # OpenBLAS splits between them.
    case(1, 16, 24, (12, 12), 3, "blas-threads", padding=1),
]


@pytest.mark.parametrize("batch", [1, 2, 17, 40], ids=lambda b: f"N{b}")
@pytest.mark.parametrize("c", THREAD_GEOMETRIES, ids=lambda c: c.label)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("algo", EXPLICIT_ALGOS)
def test_results_do_not_depend_on_thread_count(algo, dtype, c, batch, restore_num_threads):
    c = ConvCase(**{**c.__dict__, "batch": batch})
    arrays = c.arrays(dtype, seed=batch)
    results = {}
    for threads in (1, 2, 3):
        fastconv.set_num_threads(threads)
        results[threads] = run_all(c, arrays, algo)
    for threads in (2, 3):
        for name, actual, expected in zip(RESULT_NAMES, results[threads], results[1]):
            assert_bitwise_equal(actual, expected, f"{name} with {threads} threads")


@pytest.mark.parametrize("c", NAMED_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("algo", EXPLICIT_ALGOS)
def test_named_cases_do_not_depend_on_thread_count(algo, dtype, c, restore_num_threads):
    arrays = c.arrays(dtype, seed=2)
    results = {}
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        results[threads] = run_all(c, arrays, algo)
    for name, actual, expected in zip(RESULT_NAMES, results[2], results[1]):
        assert_bitwise_equal(actual, expected, f"{name} with 2 threads")


def strided_copy(array, rng):
    """The same values in a non-contiguous layout: every axis strided inside a larger buffer."""
    big = rng.standard_normal(tuple(2 * s + 1 for s in array.shape)).astype(array.dtype)
    view = big[tuple(slice(1, None, 2) for _ in array.shape)]
    view[...] = array
    return view


def layouts(array, rng):
    """Named non-contiguous views holding array's values."""
    yield "strided", strided_copy(array, rng)
    if array.ndim > 1:
        yield "fortran", np.asfortranarray(array)
        # NHWC storage seen as NCHW, as a channels-last producer would hand it over.
        channels_last = (0,) + tuple(range(2, array.ndim)) + (1,)
        yield "transposed", np.ascontiguousarray(array.transpose(channels_last)).transpose(
            np.argsort(channels_last))
    flipped = (slice(None, None, -1),) * array.ndim
    yield "negative-strides", np.ascontiguousarray(array[flipped])[flipped]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("c", [
    case(3, 4, 6, (6, 5), (3, 2), "generic", stride=(2, 1), padding=1, groups=2),
    case(2, 4, 6, (5, 4), 1, "pointwise"),
], ids=lambda c: c.label)
def test_non_contiguous_inputs(c, algo, dtype, single_thread):
    rng = np.random.default_rng(21)
    arrays = c.arrays(dtype, seed=21)
    expected = run_all(c, arrays, algo)
    for position, array in enumerate(arrays):
        tested = 0
        for layout, view in layouts(array, rng):
            if view.flags.c_contiguous:  # e.g. a (C_out, C_in, 1, 1) weight seen channels-last
                continue
            tested += 1
            np.testing.assert_array_equal(view, array)
            changed = list(arrays)
            changed[position] = view
            results = run_all(c, changed, algo)
            for name, actual, wanted in zip(RESULT_NAMES, results, expected):
                assert_bitwise_equal(actual, wanted, f"{name} with {layout} argument {position}")
                assert actual.flags.c_contiguous
        assert tested >= 2, f"argument {position}: only {tested} non-contiguous layouts"


@pytest.mark.parametrize("algo", ALGOS)
def test_read_only_and_broadcast_inputs(algo, single_thread):
    """Read-only arrays reach the kernels uncopied; zero-stride (broadcast) views are copied."""
    c = case(3, 4, 6, (6, 5), (3, 2), stride=(2, 1), padding=1, groups=2)
    arrays = c.arrays(np.float64, seed=23)
    expected = run_all(c, arrays, algo)
    read_only = [a.copy() for a in arrays]
    for array in read_only:
        array.setflags(write=False)
    for name, actual, wanted in zip(RESULT_NAMES, run_all(c, read_only, algo), expected):
        assert_bitwise_equal(actual, wanted, f"{name} from read-only arguments")

    input, weight, bias, grad_output = arrays
    repeated = np.repeat(input[:1], c.batch, axis=0)
    broadcast = np.broadcast_to(input[:1], input.shape)
    expected = run_all(c, (repeated, weight, bias, grad_output), algo)
    results = run_all(c, (broadcast, weight, bias, grad_output), algo)
    for name, actual, wanted in zip(RESULT_NAMES, results, expected):
        assert_bitwise_equal(actual, wanted, f"{name} from a broadcast input")


@pytest.mark.parametrize("mask", list(itertools.product([True, False], repeat=3)),
                         ids=lambda m: "".join("1" if b else "0" for b in m))
@pytest.mark.parametrize("algo", ALGOS)
def test_output_mask(algo, mask):
    c = case(20, 4, 6, (6, 5), (3, 2), stride=(2, 1), padding=1, groups=2)
    arrays = c.arrays(np.float64, seed=8)
    _, *full = run_all(c, arrays, algo)
    _, *masked = run_all(c, arrays, algo, output_mask=mask)
    for name, wanted, actual, keep in zip(GRADIENT_NAMES, full, masked, mask):
        if keep:
            assert_bitwise_equal(actual, wanted, name)
        else:
            assert actual is None, name


@pytest.mark.parametrize("algo", ALGOS)
def test_workspace_reuse_across_shapes_and_dtypes(algo):
    """Scratch buffers grow and shrink between calls; no result may alias them."""
    sequence = [
        (case(2, 3, 4, (5, 4), (3, 2), padding=1), np.float64),
        (case(20, 8, 8, (9, 8), 3, padding=1), np.float64),
        (case(1, 2, 3, (3, 3), 2), np.float64),
        (case(18, 6, 9, (7, 7), (2, 3), stride=2, groups=3), np.float32),
        (case(3, 4, 4, (8, 6), 3, padding="same", groups=2), np.float64),
        (case(1, 1, 1, 1, 1), np.float32),
        (case(40, 8, 4, (9, 9), 3, dilation=2), np.float32),
        (case(2, 3, 4, (5, 4), (3, 2), padding=1), np.float64),
    ]
    kept = []
    for step, (c, dtype) in enumerate(sequence):
        arrays = c.arrays(dtype, seed=step)
        as64 = [None if a is None else a.astype(np.float64) for a in arrays]
        expected = (reference.conv2d(*as64[:3], **c.kwargs),) + reference.conv2d_backward(
            as64[3], as64[0], as64[1], **c.kwargs)
        results = run_all(c, arrays, algo)
        for name, actual, wanted in zip(RESULT_NAMES, results, expected):
            assert_close(actual, wanted, dtype, f"step {step} {name}")
        kept.append((step, dtype, results, expected))
    for step, dtype, results, expected in kept:
        for name, actual, wanted in zip(RESULT_NAMES, results, expected):
            assert_close(actual, wanted, dtype, f"step {step} {name}, after later calls")


# --------------------------------------------------------------------------------------
# The im2col / col2im twins
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnGeometry:
    channels: int
    height: int
    width: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    dilation_h: int
    dilation_w: int

    @property
    def out_h(self):
        return ((self.height + self.pad_top + self.pad_bottom
                 - self.dilation_h * (self.kernel_h - 1) - 1) // self.stride_h + 1)

    @property
    def out_w(self):
        return ((self.width + self.pad_left + self.pad_right
                 - self.dilation_w * (self.kernel_w - 1) - 1) // self.stride_w + 1)

    @property
    def kernel_args(self):
        return (self.kernel_h, self.kernel_w, self.stride_h, self.stride_w, self.pad_top,
                self.pad_left, self.dilation_h, self.dilation_w, self.out_h, self.out_w)

    @property
    def col_shape(self):
        return self.channels * self.kernel_h * self.kernel_w, self.out_h * self.out_w

    @property
    def id(self):
        return (f"C{self.channels}-{self.height}x{self.width}-k{self.kernel_h}x{self.kernel_w}-"
                f"s{self.stride_h}x{self.stride_w}-"
                f"p{self.pad_top}.{self.pad_bottom}x{self.pad_left}.{self.pad_right}-"
                f"d{self.dilation_h}x{self.dilation_w}")

    def tap_windows(self):
        """For each kernel tap (i, j): the (rows, cols) slices of the padded image it reads."""
        span_h = (self.out_h - 1) * self.stride_h + 1
        span_w = (self.out_w - 1) * self.stride_w + 1
        for i in range(self.kernel_h):
            for j in range(self.kernel_w):
                top, left = i * self.dilation_h, j * self.dilation_w
                yield i, j, (slice(top, top + span_h, self.stride_h),
                             slice(left, left + span_w, self.stride_w))

    def padded_shape(self):
        """Zero-padded image big enough for every window (bottom/right as out_h/out_w need)."""
        need_h = (self.out_h - 1) * self.stride_h + self.dilation_h * (self.kernel_h - 1) + 1
        need_w = (self.out_w - 1) * self.stride_w + self.dilation_w * (self.kernel_w - 1) + 1
        return (self.channels, max(need_h, self.pad_top + self.height),
                max(need_w, self.pad_left + self.width))

    def interior(self):
        return (slice(None), slice(self.pad_top, self.pad_top + self.height),
                slice(self.pad_left, self.pad_left + self.width))


def numpy_im2col(image, g):
    padded = np.zeros(g.padded_shape(), image.dtype)
    padded[g.interior()] = image
    col = np.empty((g.channels, g.kernel_h, g.kernel_w, g.out_h, g.out_w), image.dtype)
    for i, j, (rows, cols) in g.tap_windows():
        col[:, i, j] = padded[:, rows, cols]
    return col.reshape(g.col_shape)


def numpy_col2im(col, g):
    padded = np.zeros(g.padded_shape(), col.dtype)
    col = col.reshape(g.channels, g.kernel_h, g.kernel_w, g.out_h, g.out_w)
    for i, j, (rows, cols) in g.tap_windows():
        padded[:, rows, cols] += col[:, i, j]  # one tap never hits a pixel twice
    return padded[g.interior()]


def random_column_geometries(count, seed):
    rng = np.random.default_rng(seed)
    geometries = []
    while len(geometries) < count:
        g = ColumnGeometry(int(rng.integers(1, 4)), *(int(v) for v in rng.integers(1, 10, 2)),
                           *(int(v) for v in rng.integers(1, 5, 2)),
                           *(int(v) for v in rng.integers(1, 4, 2)),
                           *(int(v) for v in rng.integers(0, 4, 4)),
                           *(int(v) for v in rng.choice([1, 1, 2, 3], 2)))
        if g.out_h >= 1 and g.out_w >= 1:
            geometries.append(g)
    return geometries


COLUMN_GEOMETRIES = [
    ColumnGeometry(2, 5, 4, 3, 2, 1, 1, 1, 1, 0, 0, 1, 1),   # rectangular kernel, odd image
    ColumnGeometry(1, 4, 6, 2, 3, 2, 1, 0, 1, 1, 1, 1, 2),
    ColumnGeometry(3, 6, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1),   # pointwise
    ColumnGeometry(2, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),   # 1x1 image
    ColumnGeometry(2, 4, 4, 4, 4, 1, 1, 1, 2, 1, 2, 1, 1),   # asymmetric 'same' for k=4
] + random_column_geometries(60, seed=13)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("g", COLUMN_GEOMETRIES, ids=lambda g: g.id)
def test_im2col_col2im(g, dtype):
    rng = np.random.default_rng(17)
    image = rng.standard_normal((g.channels, g.height, g.width)).astype(dtype)
    col = np.full(g.col_shape, np.nan, dtype)  # every entry must be written
    kernels.im2col.im2col(image, *g.kernel_args, col)
    np.testing.assert_array_equal(col, numpy_im2col(image, g))

    values = rng.standard_normal(g.col_shape).astype(dtype)
    start = rng.standard_normal(image.shape).astype(dtype)
    accumulated = start.copy()
    kernels.im2col.col2im(values, *g.kernel_args, accumulated)  # adds into the image
    assert_close(accumulated, start + numpy_col2im(values, g), dtype, "col2im")


@pytest.mark.parametrize("g", COLUMN_GEOMETRIES, ids=lambda g: g.id)
def test_im2col_col2im_adjoint(g):
    """<im2col x, c> = <x, col2im c>."""
    rng = np.random.default_rng(19)
    image = rng.standard_normal((g.channels, g.height, g.width))
    values = rng.standard_normal(g.col_shape)
    col = np.empty(g.col_shape)
    kernels.im2col.im2col(image, *g.kernel_args, col)
    scattered = np.zeros_like(image)
    kernels.im2col.col2im(values, *g.kernel_args, scattered)
    bound = np.linalg.norm(col) * np.linalg.norm(values)
    assert abs(np.vdot(col, values) - np.vdot(image, scattered)) <= 1e-12 * max(bound, 1.0)
