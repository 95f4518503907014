"""Pooling, unpooling and interpolate: kernels against the NumPy reference, the reference
against naive loops and hand-computed values, gradients against finite differences.
"""
import itertools
import math

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
import fastconv.reference as R
from fastconv._isa import kernels
from fastconv._checks import check_interpolate, check_pool2d
from fastconv._shapes import pool_output_size

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

DTYPES = [np.float32, np.float64]
N_RANDOM = 120          # random configurations per op and dtype


def assert_close(actual, expected, dtype, context=""):
    assert actual.dtype == expected.dtype == np.dtype(dtype), context
    assert actual.shape == expected.shape, context
    if np.dtype(dtype) == np.float32:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=context)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12, err_msg=context)


def random_pool_args(rng, dilation=True):
    """(input shape, kwargs) of a valid random max_pool2d / avg_pool2d call."""
    while True:
        kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 4)))
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dilation else (1, 1)
        effective = [d * (k - 1) + 1 for k, d in zip(kernel, dil)]
        padding = tuple(int(rng.integers(0, e // 2 + 1)) for e in effective)
        stride = None if rng.random() < 0.25 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)),
                 int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        kwargs = dict(kernel_size=kernel, stride=stride, padding=padding,
                      ceil_mode=bool(rng.random() < 0.5))
        if dilation:
            kwargs["dilation"] = dil
        try:
            check_pool2d("test", shape, kernel, stride, padding, dil, kwargs["ceil_mode"])
        except ValueError:
            continue
        return shape, kwargs


def random_array(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --- the fast path against the reference, random configurations --------------------------

def assert_max_pool2d_matches_reference(rng, x, kwargs):
    """max_pool2d and its backward (for a random grad_output) against the reference."""
    output, indices = F.max_pool2d(x, **kwargs)
    expected_output, expected_indices = R.max_pool2d(x, **kwargs)
    context = f"{x.shape} {kwargs}"
    np.testing.assert_array_equal(output, expected_output, err_msg=context)
    np.testing.assert_array_equal(indices, expected_indices, err_msg=context)
    assert output.dtype == x.dtype and indices.dtype == np.int64
    grad_output = random_array(rng, output.shape, x.dtype)
    assert_close(F.max_pool2d_backward(grad_output, indices, x.shape),
                 R.max_pool2d_backward(grad_output, indices, x.shape), x.dtype, context)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_pool2d_matches_reference(dtype):
    rng = np.random.default_rng(1)
    for _ in range(N_RANDOM):
        shape, kwargs = random_pool_args(rng)
        assert_max_pool2d_matches_reference(rng, random_array(rng, shape, dtype), kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_avg_pool2d_matches_reference(dtype):
    rng = np.random.default_rng(2)
    for _ in range(N_RANDOM):
        shape, kwargs = random_pool_args(rng, dilation=False)
        kwargs["count_include_pad"] = bool(rng.random() < 0.5)
        kwargs["divisor_override"] = None if rng.random() < 0.7 else int(rng.integers(1, 7))
        x = random_array(rng, shape, dtype)
        output = F.avg_pool2d(x, **kwargs)
        context = f"{shape} {kwargs}"
        assert_close(output, R.avg_pool2d(x, **kwargs), dtype, context)
        grad_output = random_array(rng, output.shape, dtype)
        assert_close(F.avg_pool2d_backward(grad_output, shape, **kwargs),
                     R.avg_pool2d_backward(grad_output, shape, **kwargs), dtype, context)


def random_adaptive_args(rng):
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)),
             int(rng.integers(1, 11)), int(rng.integers(1, 11)))
    choice = rng.random()
    if choice < 0.3:
        output_size = int(rng.integers(1, 8))
    elif choice < 0.4:
        output_size = (None, int(rng.integers(1, 8)))
    else:
        output_size = (int(rng.integers(1, 13)), int(rng.integers(1, 13)))
    return shape, output_size


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_adaptive_avg_pool2d_matches_reference(dtype):
    rng = np.random.default_rng(3)
    for _ in range(N_RANDOM):
        shape, output_size = random_adaptive_args(rng)
        x = random_array(rng, shape, dtype)
        output = F.adaptive_avg_pool2d(x, output_size)
        context = f"{shape} -> {output_size}"
        assert_close(output, R.adaptive_avg_pool2d(x, output_size), dtype, context)
        grad_output = random_array(rng, output.shape, dtype)
        assert_close(F.adaptive_avg_pool2d_backward(grad_output, shape),
                     R.adaptive_avg_pool2d_backward(grad_output, shape), dtype, context)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_adaptive_max_pool2d_matches_reference(dtype):
    rng = np.random.default_rng(4)
    for _ in range(N_RANDOM):
        shape, output_size = random_adaptive_args(rng)
        x = random_array(rng, shape, dtype)
        output, indices = F.adaptive_max_pool2d(x, output_size)
        expected_output, expected_indices = R.adaptive_max_pool2d(x, output_size)
        context = f"{shape} -> {output_size}"
        np.testing.assert_array_equal(output, expected_output, err_msg=context)
        np.testing.assert_array_equal(indices, expected_indices, err_msg=context)
        grad_output = random_array(rng, output.shape, dtype)
        assert_close(F.adaptive_max_pool2d_backward(grad_output, indices, shape),
                     R.adaptive_max_pool2d_backward(grad_output, indices, shape), dtype, context)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_unpool2d_matches_reference(dtype):
    rng = np.random.default_rng(5)
    for _ in range(N_RANDOM):
        shape, kwargs = random_pool_args(rng, dilation=False)
        pooled, indices = F.max_pool2d(random_array(rng, shape, dtype), **kwargs)
        unpool_args = dict(kernel_size=kwargs["kernel_size"], stride=kwargs["stride"],
                           padding=kwargs["padding"])
        if not kwargs["ceil_mode"] and rng.random() < 0.5:
            unpool_args["output_size"] = shape if rng.random() < 0.5 else shape[2:]
        try:
            expected = R.max_unpool2d(pooled, indices, **unpool_args)
        except ValueError:      # the default output size is too small for these indices
            unpool_args["output_size"] = shape[2:]
            expected = R.max_unpool2d(pooled, indices, **unpool_args)
        output = F.max_unpool2d(pooled, indices, **unpool_args)
        context = f"{shape} {unpool_args}"
        np.testing.assert_array_equal(output, expected, err_msg=context)
        grad_output = random_array(rng, output.shape, dtype)
        np.testing.assert_array_equal(F.max_unpool2d_backward(grad_output, indices),
                                      R.max_unpool2d_backward(grad_output, indices),
                                      err_msg=context)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_unpool2d_repeated_indices_last_write_wins(dtype):
    rng = np.random.default_rng(6)
    x = random_array(rng, (2, 3, 4, 5), dtype)
    indices = rng.integers(0, 3, size=x.shape).astype(np.int64)      # plenty of repeats
    output = F.max_unpool2d(x, indices, 2)
    np.testing.assert_array_equal(output, R.max_unpool2d(x, indices, 2))
    for n, c in np.ndindex(2, 3):
        for k in range(3):
            writers = np.flatnonzero(indices[n, c].ravel() == k)
            expected = x[n, c].ravel()[writers[-1]] if writers.size else 0
            assert output[n, c].flat[k] == expected


def random_interpolate_args(rng):
    while True:
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)),
                 int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        mode = "nearest" if rng.random() < 0.5 else "bilinear"
        kwargs = dict(mode=mode)
        if mode == "bilinear" and rng.random() < 0.8:
            kwargs["align_corners"] = bool(rng.random() < 0.5)
        choice = rng.random()
        if choice < 0.4:
            kwargs["size"] = (int(rng.integers(1, 13)), int(rng.integers(1, 13)))
        elif choice < 0.5:
            kwargs["size"] = int(rng.integers(1, 13))
        else:
            scale = [2, 3, 0.5, float(np.round(rng.uniform(0.3, 3.5), 3))][int(rng.integers(0, 4))]
            kwargs["scale_factor"] = (scale if rng.random() < 0.7
                                      else (float(np.round(rng.uniform(0.3, 3.5), 3)), scale))
            if rng.random() < 0.3:
                kwargs["recompute_scale_factor"] = True
        try:
            check_interpolate("test", shape, kwargs.get("size"), kwargs.get("scale_factor"),
                              mode, kwargs.get("align_corners"),
                              kwargs.get("recompute_scale_factor"))
        except ValueError:
            continue
        return shape, kwargs


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_interpolate_matches_reference(dtype):
    rng = np.random.default_rng(7)
    for _ in range(N_RANDOM):
        shape, kwargs = random_interpolate_args(rng)
        x = random_array(rng, shape, dtype)
        output = F.interpolate(x, **kwargs)
        context = f"{shape} {kwargs}"
        expected = R.interpolate(x, **kwargs)
        if kwargs["mode"] == "nearest":
            np.testing.assert_array_equal(output, expected, err_msg=context)
        else:
            assert_close(output, expected, dtype, context)
        grad_output = random_array(rng, output.shape, dtype)
        assert_close(F.interpolate_backward(grad_output, shape, **kwargs),
                     R.interpolate_backward(grad_output, shape, **kwargs), dtype, context)


# --- max_pool2d's 2x2 stride-2 kernel ---------------------------------------------------------

# Values that decide a window in every way there is: ties, -0.0 == +0.0, infinities, and
# two NaNs told apart by their sign bit, since the output copies the winner's bits.
SPECIAL_VALUES = [np.nan, np.copysign(np.nan, -1), -np.inf, -1.0, -0.0, 0.0, 1.0, np.inf]


def bits(array):
    return array.view(np.uint32 if array.dtype == np.float32 else np.uint64)


def every_window_plane(rng, out_h, out_w, extra_h, extra_w, dtype):
    """A (2 * out_h + extra_h, 2 * out_w + extra_w) plane whose 2x2 windows run through every
    window of SPECIAL_VALUES in a random order; NaN where no window reaches."""
    windows = np.array(list(itertools.product(SPECIAL_VALUES, repeat=4)), dtype)
    windows = np.resize(rng.permutation(windows), (out_h, out_w, 2, 2))
    plane = np.full((2 * out_h + extra_h, 2 * out_w + extra_w), np.nan, dtype)
    plane[:2 * out_h, :2 * out_w] = windows.transpose(0, 2, 1, 3).reshape(2 * out_h, 2 * out_w)
    return plane


# Rows of 1-3 outputs run across groups of 16 planes (38 planes: two whole groups and a part),
# 4-7 in one or two blocks of 4, 8 on in blocks of 8 with one more block at the end unless 8
# divides the row; odd sizes leave a row and a column out.
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("extra", [(0, 0), (1, 1), (0, 1)], ids=["even", "odd", "odd-W"])
@pytest.mark.parametrize("out_w", [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31])
def test_max_pool2d_2x2_kernel_matches_the_generic_kernel(out_w, extra, dtype):
    rng = np.random.default_rng(out_w)
    out_h = -(-len(SPECIAL_VALUES) ** 4 // out_w)
    x = np.stack([[every_window_plane(rng, out_h, out_w, *extra, dtype) for _ in range(19)]
                  for _ in range(2)])
    shape = (2, 19, out_h, out_w)
    output, indices = np.empty(shape, dtype), np.empty(shape, np.int64)
    expected_output, expected_indices = np.empty(shape, dtype), np.empty(shape, np.int64)
    kernels.pool.max_pool2d_2x2_forward(x, output, indices, 2)
    kernels.pool.max_pool2d_forward(x, expected_output, expected_indices, 2, 2, 2, 2, 0, 0, 1, 1, 2)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(bits(output), bits(expected_output))
    reference_output, reference_indices = R.max_pool2d(x, 2)
    np.testing.assert_array_equal(indices, reference_indices)
    np.testing.assert_array_equal(output, reference_output)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_pool2d_2x2_matches_reference(dtype):
    rng = np.random.default_rng(25)
    for _ in range(N_RANDOM):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                 int(rng.integers(2, 41)), int(rng.integers(2, 41)))
        # Small integers tie often; a few NaNs and infinities among them.
        x = rng.integers(-3, 4, size=shape).astype(dtype)
        x[rng.random(shape) < 0.02] = np.nan
        x[rng.random(shape) < 0.02] = -np.inf
        assert_max_pool2d_matches_reference(
            rng, x, dict(kernel_size=2, ceil_mode=bool(rng.random() < 0.5)))


TWO_BY_TWO_DISPATCH = {
    "k2": ((2, 3, 31, 31), dict(kernel_size=2), True),
    "k2s2p0d1-spelled-out": ((1, 2, 8, 6), dict(kernel_size=(2, 2), stride=(2, 2), padding=0,
                                                 dilation=(1, 1)), True),
    "k2-1x1-output": ((1, 1, 2, 3), dict(kernel_size=2), True),
    "k2-ceil-even": ((1, 2, 8, 6), dict(kernel_size=2, ceil_mode=True), True),
    "k2-ceil-odd-H": ((1, 2, 7, 6), dict(kernel_size=2, ceil_mode=True), False),
    "k2-ceil-odd-W": ((1, 2, 6, 31), dict(kernel_size=2, ceil_mode=True), False),
    "k2s1": ((1, 2, 7, 6), dict(kernel_size=2, stride=1), False),
    "k2s2x1": ((1, 2, 7, 6), dict(kernel_size=2, stride=(2, 1)), False),
    "k2p1": ((1, 2, 7, 6), dict(kernel_size=2, padding=1), False),
    "k2d2": ((1, 2, 7, 6), dict(kernel_size=2, dilation=2), False),
    "k2x3s2": ((1, 2, 7, 6), dict(kernel_size=(2, 3), stride=2), False),
}


@pytest.mark.parametrize("case", TWO_BY_TWO_DISPATCH.values(), ids=list(TWO_BY_TWO_DISPATCH))
def test_max_pool2d_takes_the_2x2_kernel_exactly_for_whole_2x2_windows(case, monkeypatch):
    shape, kwargs, taken = case
    calls = []
    kernel = kernels.pool.max_pool2d_2x2_forward

    def spy(*args):
        calls.append(args[0].shape)
        return kernel(*args)

    monkeypatch.setattr(kernels.pool, "max_pool2d_2x2_forward", spy)
    rng = np.random.default_rng(26)
    assert_max_pool2d_matches_reference(rng, random_array(rng, shape, np.float32), kwargs)
    assert calls == ([shape] if taken else [])


# --- named edge cases ------------------------------------------------------------------------

EDGE_CASES = {
    "overlap-k3s2": ((2, 3, 7, 7), dict(kernel_size=3, stride=2)),
    "overlap-k3s1p1": ((1, 2, 5, 4), dict(kernel_size=3, stride=1, padding=1)),
    "corner-windows-mostly-padding-k2s2p1": ((1, 2, 4, 5), dict(kernel_size=2, padding=1)),
    "ceil-last-window-dropped": ((1, 1, 3, 3), dict(kernel_size=2, padding=1, ceil_mode=True)),
    "ceil-last-window-kept-partial": ((1, 1, 5, 6), dict(kernel_size=2, ceil_mode=True)),
    "ceil-k3s2p1": ((1, 2, 4, 4), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    "1x1-input": ((2, 3, 1, 1), dict(kernel_size=1)),
    "1x1-input-k2p1-ceil": ((1, 1, 1, 1), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    "kernel-equals-input": ((2, 2, 5, 4), dict(kernel_size=(5, 4))),
    "non-square-3x2": ((1, 2, 7, 5), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),
}
DILATED_CASES = {
    "dilation-2": ((1, 2, 7, 7), dict(kernel_size=2, dilation=2)),
    "dilation-2x3-pad": ((1, 2, 8, 9), dict(kernel_size=3, dilation=(2, 3), padding=2, stride=2)),
    "dilation-ceil": ((1, 1, 6, 6), dict(kernel_size=2, dilation=2, stride=3, padding=1,
                                           ceil_mode=True)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", {**EDGE_CASES, **DILATED_CASES}.items(),
                         ids=list({**EDGE_CASES, **DILATED_CASES}))
def test_max_pool2d_edge_cases(case, dtype):
    shape, kwargs = case[1]
    rng = np.random.default_rng(8)
    # All negative, so a padding zero winning anywhere would show.
    x = -np.abs(random_array(rng, shape, dtype)) - 1
    output, indices = F.max_pool2d(x, **kwargs)
    expected_output, expected_indices = naive_max_pool2d(x, **kwargs)
    np.testing.assert_array_equal(output, expected_output)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(output, np.take_along_axis(
        x.reshape(*shape[:2], -1), indices.reshape(*shape[:2], -1), 2).reshape(output.shape))
    grad_output = random_array(rng, output.shape, dtype)
    assert_close(F.max_pool2d_backward(grad_output, indices, shape),
                 R.max_pool2d_backward(grad_output, indices, shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("count_include_pad", [True, False], ids=["include-pad", "exclude-pad"])
@pytest.mark.parametrize("case", EDGE_CASES.items(), ids=list(EDGE_CASES))
def test_avg_pool2d_edge_cases(case, count_include_pad, dtype):
    shape, kwargs = case[1]
    x = random_array(np.random.default_rng(9), shape, dtype)
    output = F.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs)
    expected = naive_avg_pool2d(x, count_include_pad=count_include_pad, **kwargs)
    assert_close(output, expected, dtype)


def test_pool_output_size_ceil_mode():
    # floor((5 - 2) / 2) + 1 = 2; ceil gives 3, and the third window starts inside (at 4).
    assert pool_output_size(5, 2, 2, 0, 1, False) == 2
    assert pool_output_size(5, 2, 2, 0, 1, True) == 3
    # ceil((3 + 2 - 2) / 2) + 1 = 3, but the third window would start at 3 = H, in the
    # right padding: dropped.
    assert pool_output_size(3, 2, 2, 1, 1, True) == 2
    # ceil((6 + 2 - 2) / 2) + 1 = 4: the fourth window starts at 5 < H, kept.
    assert pool_output_size(6, 2, 2, 1, 1, True) == 4
    assert pool_output_size(4, 3, 2, 1, 1, True) == 3
    assert pool_output_size(4, 3, 2, 1, 1, False) == 2
    # dilation 2, kernel 3: effective kernel 5.
    assert pool_output_size(7, 3, 1, 0, 2, False) == 3
    assert pool_output_size(1, 1, 1, 0, 1, True) == 1


# --- the reference against hand-computed values ------------------------------------------------

def arange_image(height, width, dtype=np.float64):
    return np.arange(height * width, dtype=dtype).reshape(1, 1, height, width)


@pytest.mark.parametrize("impl", [F, R], ids=["fastconv", "reference"])
def test_avg_pool2d_hand_computed(impl):
    x = arange_image(3, 3)                       # [[0 1 2] [3 4 5] [6 7 8]]
    # ceil_mode: the right/bottom windows hold 2 and 1 elements; no padding, so they are
    # divided by what they hold.
    np.testing.assert_allclose(impl.avg_pool2d(x, 2, ceil_mode=True)[0, 0],
                               [[8 / 4, 7 / 2], [13 / 2, 8 / 1]])
    # padding 1: windows hold (0), (1, 2), (3, 6), (4, 5, 7, 8).
    np.testing.assert_allclose(impl.avg_pool2d(x, 2, padding=1)[0, 0],
                               [[0 / 4, 3 / 4], [9 / 4, 24 / 4]])
    np.testing.assert_allclose(impl.avg_pool2d(x, 2, padding=1, count_include_pad=False)[0, 0],
                               [[0 / 1, 3 / 2], [9 / 2, 24 / 4]])
    np.testing.assert_allclose(impl.avg_pool2d(x, 2, padding=1, divisor_override=3)[0, 0],
                               [[0 / 3, 3 / 3], [9 / 3, 24 / 3]])
    # 4x4 arange, kernel 3, stride 2, padding 1, ceil_mode: 3 windows per axis over rows
    # {0, 1}, {1, 2, 3}, {3}; the last runs past input + padding (rows 3..5, padded input
    # ends at 5) and counts only 2 (of 3) with count_include_pad.
    x = arange_image(4, 4)
    sums = np.array([[10, 24, 10], [51, 90, 33], [25, 42, 15]])
    np.testing.assert_allclose(impl.avg_pool2d(x, 3, 2, 1, ceil_mode=True)[0, 0],
                               sums / np.outer([3, 3, 2], [3, 3, 2]))
    np.testing.assert_allclose(
        impl.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)[0, 0],
        sums / np.outer([2, 3, 1], [2, 3, 1]))
    np.testing.assert_allclose(
        impl.avg_pool2d(x, 3, 2, 1, ceil_mode=True, divisor_override=5)[0, 0], sums / 5)


@pytest.mark.parametrize("impl", [F, R], ids=["fastconv", "reference"])
def test_max_pool2d_hand_computed(impl):
    x = arange_image(3, 3)
    output, indices = impl.max_pool2d(x, 2, stride=1)
    np.testing.assert_array_equal(output[0, 0], [[4, 5], [7, 8]])
    np.testing.assert_array_equal(indices[0, 0], [[4, 5], [7, 8]])
    output, indices = impl.max_pool2d(x, 2, ceil_mode=True)
    np.testing.assert_array_equal(output[0, 0], [[4, 5], [7, 8]])
    np.testing.assert_array_equal(indices[0, 0], [[4, 5], [7, 8]])
    # Negated, the maximum is the first input element of each window, padding excluded.
    output, indices = impl.max_pool2d(-x, 3, stride=1, padding=1)
    np.testing.assert_array_equal(indices[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])
    np.testing.assert_array_equal(output[0, 0], -indices[0, 0])
    # dilation 2 on 5x5: taps at rows/cols {0, 2} and {1, 3}, {2, 4}.
    output, indices = impl.max_pool2d(arange_image(5, 5), 2, stride=1, dilation=2)
    np.testing.assert_array_equal(indices[0, 0], [[12, 13, 14], [17, 18, 19], [22, 23, 24]])


@pytest.mark.parametrize("impl", [F, R], ids=["fastconv", "reference"])
def test_adaptive_pool2d_hand_computed(impl):
    x = arange_image(1, 5)
    # 5 -> 3: windows [0, 2), [1, 4), [3, 5).
    np.testing.assert_allclose(impl.adaptive_avg_pool2d(x, (1, 3))[0, 0, 0], [0.5, 2, 3.5])
    output, indices = impl.adaptive_max_pool2d(x, (None, 3))
    np.testing.assert_array_equal(indices[0, 0, 0], [1, 3, 4])
    # 2 -> 3 upsamples: windows [0, 1), [0, 2), [1, 2).
    x = arange_image(1, 2)
    np.testing.assert_allclose(impl.adaptive_avg_pool2d(x, (1, 3))[0, 0, 0], [0, 0.5, 1])
    np.testing.assert_array_equal(impl.adaptive_max_pool2d(x, (1, 3))[1][0, 0, 0], [0, 1, 1])


@pytest.mark.parametrize("impl", [F, R], ids=["fastconv", "reference"])
def test_interpolate_hand_computed(impl):
    row = arange_image(1, 3)
    # 3 -> 5 nearest: source floor(dst * 0.6f) = 0 0 1 1 2.
    np.testing.assert_array_equal(impl.interpolate(row, size=(1, 5))[0, 0, 0], [0, 0, 1, 1, 2])
    # Twice the size: dst >> 1.
    np.testing.assert_array_equal(impl.interpolate(row, scale_factor=2)[0, 0, 0],
                                  [0, 0, 1, 1, 2, 2])
    # scale_factor 1.7 on 5 gives 8 outputs; the indices use 1 / 1.7, not 5 / 8, unless
    # recompute_scale_factor: they differ at dst = 5 (floor(2.94) vs floor(3.125)).
    row = arange_image(1, 5)
    np.testing.assert_array_equal(impl.interpolate(row, scale_factor=(1, 1.7))[0, 0, 0],
                                  [0, 0, 1, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(
        impl.interpolate(row, scale_factor=(1, 1.7), recompute_scale_factor=True)[0, 0, 0],
        [0, 0, 1, 1, 2, 3, 3, 4])
    # Bilinear on a linear ramp returns the clamped source coordinate itself.
    ramp = arange_image(1, 2)
    np.testing.assert_allclose(impl.interpolate(ramp, size=(1, 4), mode="bilinear")[0, 0, 0],
                               [0, 0.25, 0.75, 1])
    np.testing.assert_allclose(
        impl.interpolate(ramp, size=(1, 4), mode="bilinear", align_corners=True)[0, 0, 0],
        [0, 1 / 3, 2 / 3, 1])
    ramp = arange_image(1, 3)
    np.testing.assert_allclose(
        impl.interpolate(ramp, scale_factor=(1, 1.7), mode="bilinear")[0, 0, 0],
        [0, 1.5 / 1.7 - 0.5, 2.5 / 1.7 - 0.5, 3.5 / 1.7 - 0.5, 2])
    np.testing.assert_allclose(
        impl.interpolate(ramp, scale_factor=(1, 1.7), mode="bilinear",
                         recompute_scale_factor=True)[0, 0, 0],
        [0, 0.4, 1.0, 1.6, 2], atol=1e-12)
    # A 1x1 image stays constant at any size.
    dot = np.full((1, 2, 1, 1), 3.0)
    for mode in ("nearest", "bilinear"):
        np.testing.assert_allclose(impl.interpolate(dot, size=(2, 3), mode=mode),
                                   np.full((1, 2, 2, 3), 3.0), rtol=1e-15)


# --- the reference against naive loops ---------------------------------------------------------

def naive_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = math.ceil(span / stride) + 1
    return out - 1 if (out - 1) * stride >= size + padding else out


def naive_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    kernel_h, kernel_w = np.broadcast_to(kernel_size, 2)
    stride_h, stride_w = np.broadcast_to(kernel_size if stride is None else stride, 2)
    pad_h, pad_w = np.broadcast_to(padding, 2)
    dilation_h, dilation_w = np.broadcast_to(dilation, 2)
    batch, channels, height, width = x.shape
    out_h = naive_output_size(height, kernel_h, stride_h, pad_h, dilation_h, ceil_mode)
    out_w = naive_output_size(width, kernel_w, stride_w, pad_w, dilation_w, ceil_mode)
    output = np.empty((batch, channels, out_h, out_w), x.dtype)
    indices = np.empty((batch, channels, out_h, out_w), np.int64)
    for n in range(batch):
        for c in range(channels):
            for oh in range(out_h):
                for ow in range(out_w):
                    best, best_index = None, None
                    for i in range(kernel_h):
                        for j in range(kernel_w):
                            h = oh * stride_h - pad_h + i * dilation_h
                            w = ow * stride_w - pad_w + j * dilation_w
                            if not (0 <= h < height and 0 <= w < width):
                                continue
                            value = x[n, c, h, w]
                            if best is None or (not np.isnan(best) and
                                                (value > best or np.isnan(value))):
                                best, best_index = value, h * width + w
                    output[n, c, oh, ow], indices[n, c, oh, ow] = best, best_index
    return output, indices


def naive_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    kernel_h, kernel_w = np.broadcast_to(kernel_size, 2)
    stride_h, stride_w = np.broadcast_to(kernel_size if stride is None else stride, 2)
    pad_h, pad_w = np.broadcast_to(padding, 2)
    batch, channels, height, width = x.shape
    out_h = naive_output_size(height, kernel_h, stride_h, pad_h, 1, ceil_mode)
    out_w = naive_output_size(width, kernel_w, stride_w, pad_w, 1, ceil_mode)
    output = np.empty((batch, channels, out_h, out_w), x.dtype)
    for n in range(batch):
        for c in range(channels):
            for oh in range(out_h):
                for ow in range(out_w):
                    total, count, count_with_pad = 0.0, 0, 0
                    for h in range(oh * stride_h - pad_h, oh * stride_h - pad_h + kernel_h):
                        for w in range(ow * stride_w - pad_w, ow * stride_w - pad_w + kernel_w):
                            if h < height + pad_h and w < width + pad_w:
                                count_with_pad += 1
                            if 0 <= h < height and 0 <= w < width:
                                total += float(x[n, c, h, w])
                                count += 1
                    divisor = divisor_override or (count_with_pad if count_include_pad
                                                   else count)
                    output[n, c, oh, ow] = total / divisor
    return output


def naive_adaptive_pool2d(x, out_h, out_w):
    """(average, maximum, argmax) of every adaptive window."""
    batch, channels, height, width = x.shape
    average = np.empty((batch, channels, out_h, out_w))
    maximum = np.empty((batch, channels, out_h, out_w))
    argmax = np.empty((batch, channels, out_h, out_w), np.int64)
    for oh in range(out_h):
        rows = range(math.floor(oh * height / out_h), math.ceil((oh + 1) * height / out_h))
        for ow in range(out_w):
            columns = range(math.floor(ow * width / out_w), math.ceil((ow + 1) * width / out_w))
            for n in range(batch):
                for c in range(channels):
                    cells = [(x[n, c, h, w], h * width + w) for h in rows for w in columns]
                    average[n, c, oh, ow] = sum(v for v, _ in cells) / len(cells)
                    maximum[n, c, oh, ow], argmax[n, c, oh, ow] = max(
                        cells, key=lambda cell: (cell[0], -cell[1]))
    return average, maximum, argmax


def naive_bilinear(x, out_h, out_w, align_corners):
    """float64 bilinear resize by the textbook formula, one output at a time."""
    def source(dst, size, out_size):
        if out_size == size:
            return dst, dst, 0.0
        if align_corners:
            real = dst * (size - 1) / (out_size - 1) if out_size > 1 else 0.0
        else:
            real = max((dst + 0.5) * size / out_size - 0.5, 0.0)
        low = min(int(math.floor(real)), size - 1)
        return low, min(low + 1, size - 1), min(real - low, 1.0)

    batch, channels, height, width = x.shape
    output = np.empty((batch, channels, out_h, out_w))
    for oh in range(out_h):
        h0, h1, dh = source(oh, height, out_h)
        for ow in range(out_w):
            w0, w1, dw = source(ow, width, out_w)
            output[:, :, oh, ow] = ((1 - dh) * ((1 - dw) * x[:, :, h0, w0] + dw * x[:, :, h0, w1])
                                    + dh * ((1 - dw) * x[:, :, h1, w0] + dw * x[:, :, h1, w1]))
    return output


def test_reference_max_pool2d_against_naive_loops():
    rng = np.random.default_rng(10)
    for _ in range(25):
        shape, kwargs = random_pool_args(rng)
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.2] = 0.5              # ties
        x[rng.random(shape) < 0.05] = np.nan
        output, indices = R.max_pool2d(x, **kwargs)
        expected_output, expected_indices = naive_max_pool2d(x, **kwargs)
        np.testing.assert_array_equal(output, expected_output, err_msg=f"{shape} {kwargs}")
        np.testing.assert_array_equal(indices, expected_indices, err_msg=f"{shape} {kwargs}")
        np.testing.assert_array_equal(F.max_pool2d(x, **kwargs)[1], expected_indices)


def test_reference_avg_pool2d_against_naive_loops():
    rng = np.random.default_rng(11)
    for _ in range(25):
        shape, kwargs = random_pool_args(rng, dilation=False)
        kwargs["count_include_pad"] = bool(rng.random() < 0.5)
        kwargs["divisor_override"] = None if rng.random() < 0.7 else int(rng.integers(1, 7))
        x = rng.standard_normal(shape)
        np.testing.assert_allclose(R.avg_pool2d(x, **kwargs), naive_avg_pool2d(x, **kwargs),
                                   rtol=1e-12, atol=1e-12, err_msg=f"{shape} {kwargs}")


def test_reference_adaptive_pools_against_naive_loops():
    rng = np.random.default_rng(12)
    for _ in range(20):
        shape, _ = random_adaptive_args(rng)
        out_h, out_w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.2] = 0.5              # ties
        average, maximum, argmax = naive_adaptive_pool2d(x, out_h, out_w)
        np.testing.assert_allclose(R.adaptive_avg_pool2d(x, (out_h, out_w)), average,
                                   rtol=1e-12, atol=1e-12)
        output, indices = R.adaptive_max_pool2d(x, (out_h, out_w))
        np.testing.assert_array_equal(output, maximum)
        np.testing.assert_array_equal(indices, argmax)


def test_reference_interpolate_against_naive_loops():
    rng = np.random.default_rng(13)
    for _ in range(20):
        shape = (1, 2, int(rng.integers(1, 8)), int(rng.integers(1, 8)))
        out_h, out_w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        x = rng.standard_normal(shape)
        for align_corners in (False, True):
            np.testing.assert_allclose(
                R.interpolate(x, size=(out_h, out_w), mode="bilinear",
                              align_corners=align_corners),
                naive_bilinear(x, out_h, out_w, align_corners), rtol=1e-12, atol=1e-12)
        # Nearest: floor(dst * H / H_out) computed in float32, except at 1x and 2x.
        def source(dst, size, out_size):
            if out_size in (size, 2 * size):
                return dst * size // out_size
            return min(int(np.floor(np.float32(dst) * (np.float32(size) / np.float32(out_size)))),
                       size - 1)
        expected = np.array([[x[:, :, source(oh, shape[2], out_h), source(ow, shape[3], out_w)]
                              for ow in range(out_w)] for oh in range(out_h)])
        np.testing.assert_array_equal(R.interpolate(x, size=(out_h, out_w)),
                                      np.moveaxis(expected, (0, 1), (2, 3)))


def test_reference_unpool_and_backward_scatter_against_naive_loops():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 3, 4))
    indices = rng.integers(0, 20, size=x.shape).astype(np.int64)
    expected = np.zeros((2, 3, 4, 5))
    scattered = np.zeros((2, 3, 4, 5))
    for n, c, h, w in np.ndindex(x.shape):
        expected[n, c].flat[indices[n, c, h, w]] = x[n, c, h, w]
        scattered[n, c].flat[indices[n, c, h, w]] += x[n, c, h, w]
    np.testing.assert_array_equal(R.max_unpool2d(x, indices, 2, stride=1), expected)
    np.testing.assert_allclose(R.max_pool2d_backward(x, indices, (2, 3, 4, 5)), scattered,
                               rtol=1e-12)


# --- gradients by central differences (float64) -------------------------------------------------

def numerical_gradient(f, x, grad_output, eps=1e-6):
    """d <f(x), grad_output> / dx by central differences."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        plus = np.sum(f(x) * grad_output)
        x[index] = saved - eps
        minus = np.sum(f(x) * grad_output)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def distinct_values(rng, shape):
    """No ties and no near-ties: max pooling is differentiable at this point."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


MAX_POOL_GRAD_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                       dict(kernel_size=(3, 2), stride=1, dilation=(1, 2), ceil_mode=True),
                       dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)]


@pytest.mark.parametrize("kwargs", MAX_POOL_GRAD_CASES, ids=lambda k: str(k))
def test_max_pool2d_gradient(kwargs):
    rng = np.random.default_rng(15)
    x = distinct_values(rng, (1, 2, 5, 6))
    output, indices = F.max_pool2d(x, **kwargs)
    grad_output = rng.standard_normal(output.shape)
    numerical = numerical_gradient(lambda v: F.max_pool2d(v, **kwargs)[0], x, grad_output)
    np.testing.assert_allclose(F.max_pool2d_backward(grad_output, indices, x.shape), numerical,
                               rtol=1e-7, atol=1e-8)


AVG_POOL_GRAD_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                       dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                            count_include_pad=False),
                       dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
                       dict(kernel_size=2, padding=1, divisor_override=3)]


@pytest.mark.parametrize("kwargs", AVG_POOL_GRAD_CASES, ids=lambda k: str(k))
def test_avg_pool2d_gradient(kwargs):
    rng = np.random.default_rng(16)
    x = rng.standard_normal((1, 2, 5, 6))
    output = F.avg_pool2d(x, **kwargs)
    grad_output = rng.standard_normal(output.shape)
    numerical = numerical_gradient(lambda v: F.avg_pool2d(v, **kwargs), x, grad_output)
    np.testing.assert_allclose(F.avg_pool2d_backward(grad_output, x.shape, **kwargs), numerical,
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("output_size", [1, (2, 3), (4, 7)], ids=str)
def test_adaptive_pool_gradients(output_size):
    rng = np.random.default_rng(17)
    x = distinct_values(rng, (1, 2, 5, 6))
    output = F.adaptive_avg_pool2d(x, output_size)
    grad_output = rng.standard_normal(output.shape)
    numerical = numerical_gradient(lambda v: F.adaptive_avg_pool2d(v, output_size), x,
                                   grad_output)
    np.testing.assert_allclose(F.adaptive_avg_pool2d_backward(grad_output, x.shape), numerical,
                               rtol=1e-7, atol=1e-8)
    output, indices = F.adaptive_max_pool2d(x, output_size)
    numerical = numerical_gradient(lambda v: F.adaptive_max_pool2d(v, output_size)[0], x,
                                   grad_output)
    np.testing.assert_allclose(F.adaptive_max_pool2d_backward(grad_output, indices, x.shape),
                               numerical, rtol=1e-7, atol=1e-8)


def test_max_unpool2d_gradient():
    rng = np.random.default_rng(18)
    _, indices = F.max_pool2d(distinct_values(rng, (1, 2, 6, 5)), 2, padding=1)
    x = rng.standard_normal(indices.shape)
    output = F.max_unpool2d(x, indices, 2, padding=1, output_size=(6, 5))
    grad_output = rng.standard_normal(output.shape)
    numerical = numerical_gradient(
        lambda v: F.max_unpool2d(v, indices, 2, padding=1, output_size=(6, 5)), x, grad_output)
    np.testing.assert_allclose(F.max_unpool2d_backward(grad_output, indices), numerical,
                               rtol=1e-7, atol=1e-8)


INTERPOLATE_GRAD_CASES = [dict(size=(7, 3)), dict(scale_factor=2), dict(scale_factor=(0.6, 1.7)),
                          dict(size=(7, 3), mode="bilinear"),
                          dict(size=(2, 9), mode="bilinear", align_corners=True),
                          dict(scale_factor=1.7, mode="bilinear"),
                          dict(scale_factor=0.5, mode="bilinear", recompute_scale_factor=True)]


@pytest.mark.parametrize("kwargs", INTERPOLATE_GRAD_CASES, ids=lambda k: str(k))
def test_interpolate_gradient(kwargs):
    rng = np.random.default_rng(19)
    x = rng.standard_normal((1, 2, 4, 5))
    output = F.interpolate(x, **kwargs)
    grad_output = rng.standard_normal(output.shape)
    numerical = numerical_gradient(lambda v: F.interpolate(v, **kwargs), x, grad_output)
    np.testing.assert_allclose(F.interpolate_backward(grad_output, x.shape, **kwargs), numerical,
                               rtol=1e-7, atol=1e-8)


# --- ties, NaN, round trips -----------------------------------------------------------------

@pytest.mark.parametrize("impl", [F, R], ids=["fastconv", "reference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_pool2d_ties_take_the_first_maximum(impl, dtype):
    x = np.ones((1, 1, 3, 3), dtype)
    _, indices = impl.max_pool2d(x, 3, stride=1, padding=1)
    np.testing.assert_array_equal(indices[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])
    # Windows of -inf: the first input element, never the padding.
    output, indices = impl.max_pool2d(np.full((1, 1, 4, 4), -np.inf, dtype), 2, padding=1)
    np.testing.assert_array_equal(indices[0, 0], [[0, 1, 3], [4, 5, 7], [12, 13, 15]])
    assert np.all(output == -np.inf)
    _, indices = impl.adaptive_max_pool2d(np.zeros((1, 1, 5, 5), dtype), 2)
    np.testing.assert_array_equal(indices[0, 0], [[0, 2], [10, 12]])
    x = np.array([[1, 5, 5], [5, 2, 5], [0, 5, 1]], dtype).reshape(1, 1, 3, 3)
    _, indices = impl.max_pool2d(x, 2, stride=1)
    np.testing.assert_array_equal(indices[0, 0], [[1, 1], [3, 5]])


@pytest.mark.parametrize("impl", [F, R], ids=["fastconv", "reference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_pool2d_nan_wins_and_propagates(impl, dtype):
    x = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan            # window (0, 0): a NaN after a smaller value
    x[0, 0, 1, 0] = np.nan            # ... and a second NaN: the first one wins
    x[0, 0, 2, 2] = np.nan            # window (1, 1): NaN first, larger values after it
    output, indices = impl.max_pool2d(x, 2)
    np.testing.assert_array_equal(np.isnan(output[0, 0]), [[True, False], [False, True]])
    np.testing.assert_array_equal(indices[0, 0], [[1, 7], [13, 10]])
    np.testing.assert_array_equal(output[0, 0, 0, 1], 7)
    output, indices = impl.adaptive_max_pool2d(x, 1)
    assert np.isnan(output[0, 0, 0, 0]) and indices[0, 0, 0, 0] == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kwargs, shape", [(dict(kernel_size=2), (2, 3, 6, 8)),
                                           (dict(kernel_size=3, stride=2, padding=1),
                                            (1, 2, 7, 5)),
                                           (dict(kernel_size=(2, 3), stride=(2, 3)),
                                            (1, 2, 5, 7))],
                         ids=["k2", "k3s2p1", "k2x3-odd"])
def test_unpool_of_pool_keeps_the_maxima_in_place(kwargs, shape, dtype):
    x = distinct_values(np.random.default_rng(20), shape).astype(dtype)
    output, indices = F.max_pool2d(x, **kwargs)
    restored = F.max_unpool2d(output, indices, output_size=shape, **kwargs)
    is_max = np.zeros(shape, bool)
    np.put_along_axis(is_max.reshape(*shape[:2], -1), indices.reshape(*shape[:2], -1), True, 2)
    np.testing.assert_array_equal(restored, np.where(is_max, x, 0))
    # Pooling the restored image finds the same maxima at the same places.
    again, again_indices = F.max_pool2d(np.where(is_max, x, -np.inf), **kwargs)
    np.testing.assert_array_equal(again, output)
    np.testing.assert_array_equal(again_indices, indices)


def test_max_unpool2d_default_output_size():
    x = np.ones((1, 1, 2, 3))
    indices = np.zeros((1, 1, 2, 3), np.int64)
    assert F.max_unpool2d(x, indices, 2).shape == (1, 1, 4, 6)
    assert F.max_unpool2d(x, indices, 3, stride=2, padding=1).shape == (1, 1, 3, 5)
    assert F.max_unpool2d(x, indices, 2, output_size=(1, 1, 5, 7)).shape == (1, 1, 5, 7)


# --- threads, layout, kernels ------------------------------------------------------------

@pytest.fixture
def restore_threads():
    saved = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(saved)


def run_every_op(x, rng):
    results = []
    output, indices = F.max_pool2d(x, 3, stride=2, padding=1)
    grad = rng.standard_normal(output.shape).astype(x.dtype)
    results += [output, indices, F.max_pool2d_backward(grad, indices, x.shape)]
    results += F.max_pool2d(x, 2)
    output = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
    results += [output, F.avg_pool2d_backward(output, x.shape, 3, 1, 1, ceil_mode=True)]
    output = F.adaptive_avg_pool2d(x, (3, 5))
    results += [output, F.adaptive_avg_pool2d_backward(output, x.shape)]
    output, indices = F.adaptive_max_pool2d(x, 4)
    results += [output, indices, F.adaptive_max_pool2d_backward(output, indices, x.shape)]
    unpooled = F.max_unpool2d(output, indices, 2, output_size=(8, 8))
    results += [unpooled, F.max_unpool2d_backward(unpooled, indices)]
    for kwargs in (dict(scale_factor=1.5), dict(size=(5, 11), mode="bilinear")):
        output = F.interpolate(x, **kwargs)
        results += [output, F.interpolate_backward(output, x.shape, **kwargs)]
    return results


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_results_do_not_depend_on_the_thread_count(dtype, restore_threads):
    x = np.random.default_rng(21).standard_normal((3, 5, 8, 8)).astype(dtype)
    fastconv.set_num_threads(1)
    one = run_every_op(x, np.random.default_rng(22))
    fastconv.set_num_threads(2)
    two = run_every_op(x, np.random.default_rng(22))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_input_and_empty_batch():
    x = np.random.default_rng(23).standard_normal((2, 8, 6, 3)).transpose(0, 3, 2, 1)
    output, indices = F.max_pool2d(x, 2)
    expected, expected_indices = R.max_pool2d(np.ascontiguousarray(x), 2)
    np.testing.assert_array_equal(output, expected)
    np.testing.assert_array_equal(indices, expected_indices)
    assert output.flags.c_contiguous and indices.flags.c_contiguous
    empty = np.zeros((0, 3, 4, 4), np.float32)
    output, indices = F.max_pool2d(empty, 2)
    assert output.shape == (0, 3, 2, 2)
    assert F.max_pool2d_backward(output, indices, empty.shape).shape == empty.shape
    assert F.avg_pool2d(empty, 2).shape == (0, 3, 2, 2)
    assert F.interpolate(empty, scale_factor=2).shape == (0, 3, 8, 8)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_scatter_kernels_overwrite_whatever_their_output_held(dtype):
    # The wrappers pass np.empty arrays: every plane must be zeroed by its kernel.
    rng = np.random.default_rng(24)
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    output, indices = F.max_pool2d(x, 3, stride=2, padding=1)
    garbage = np.full(x.shape, np.nan, dtype)
    target = garbage.copy()
    kernels.pool.max_pool2d_backward(output, indices, target, 2)
    assert_close(target, R.max_pool2d_backward(output, indices, x.shape), dtype)
    target = garbage.copy()
    kernels.pool.avg_pool2d_backward(output, target, 3, 3, 2, 2, 1, 1, True, 0, 2)
    assert_close(target, R.avg_pool2d_backward(output, x.shape, 3, 2, 1), dtype)
    target = garbage.copy()
    kernels.pool.adaptive_avg_pool2d_backward(output, target, 2)
    assert_close(target, R.adaptive_avg_pool2d_backward(output, x.shape), dtype)
    target = garbage.copy()
    kernels.pool.max_unpool2d_forward(output, indices, target, 2)
    np.testing.assert_array_equal(target, R.max_unpool2d(output, indices, 3, 2, 1,
                                                         output_size=x.shape))
    target = garbage.copy()
    kernels.interpolate.nearest_backward(output, target, 0.0, 0.0, 2)
    assert_close(target, R.interpolate_backward(output, x.shape, size=(3, 3)), dtype)
    target = garbage.copy()
    kernels.interpolate.bilinear_backward(output, target, False, 0.0, 0.0, 2)
    assert_close(target, R.interpolate_backward(output, x.shape, size=(3, 3), mode="bilinear"),
                 dtype)
