"""Bad arguments to pooling, unpooling and interpolate raise TypeError / ValueError naming
the function, never reach a kernel.
"""
import numpy as np
import pytest

import fastconv.functional as F
import fastconv.reference as R

X = np.zeros((2, 3, 6, 6), np.float32)
POOLED, INDICES = F.max_pool2d(X, 2)              # (2, 3, 3, 3)


@pytest.fixture(params=[F, R], ids=["fastconv", "reference"])
def impl(request):
    return request.param


FORWARDS = {
    "max_pool2d": lambda impl, x: impl.max_pool2d(x, 2),
    "avg_pool2d": lambda impl, x: impl.avg_pool2d(x, 2),
    "adaptive_avg_pool2d": lambda impl, x: impl.adaptive_avg_pool2d(x, 2),
    "adaptive_max_pool2d": lambda impl, x: impl.adaptive_max_pool2d(x, 2),
    "interpolate": lambda impl, x: impl.interpolate(x, scale_factor=2),
    "max_unpool2d": lambda impl, x: impl.max_unpool2d(x, np.zeros(x.shape, np.int64), 2),
}


@pytest.mark.parametrize("name", FORWARDS)
@pytest.mark.parametrize("shape", [(3, 6, 6), (1, 2, 3, 6, 6)], ids=["3d", "5d"])
def test_wrong_rank(impl, name, shape):
    with pytest.raises(ValueError, match=rf"^{name}: expected 4-D input"):
        FORWARDS[name](impl, np.zeros(shape, np.float32))


@pytest.mark.parametrize("name", FORWARDS)
def test_empty_planes(impl, name):
    with pytest.raises(ValueError, match=rf"^{name}: .*positive C, H and W"):
        FORWARDS[name](impl, np.zeros((1, 3, 0, 4), np.float32))


@pytest.mark.parametrize("name", FORWARDS)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, bool])
def test_integer_or_other_dtype(impl, name, dtype):
    with pytest.raises(TypeError, match=rf"^{name}: input must be float32 or float64"):
        FORWARDS[name](impl, X.astype(dtype))


@pytest.mark.parametrize("fn", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=0), "kernel_size must be positive"),
    (dict(kernel_size=(2, 0)), "kernel_size must be positive"),
    (dict(kernel_size=2, stride=0), "stride must be positive"),
    (dict(kernel_size=2, stride=(1, -1)), "stride must be positive"),
    (dict(kernel_size=2, padding=-1), "padding must be non-negative"),
    (dict(kernel_size=2, padding=2), "padding should be at most half"),
    (dict(kernel_size=(3, 4), padding=(1, 3)), "padding should be at most half"),
    (dict(kernel_size=7), r"calculated output size \(0x0\) is too small"),
], ids=["k0", "k2x0", "s0", "s-neg", "p-neg", "p-too-big", "p-too-big-w", "empty-output"])
def test_bad_pool_geometry(impl, fn, kwargs, message):
    with pytest.raises(ValueError, match=rf"^{fn}: .*{message}"):
        getattr(impl, fn)(X, **kwargs)


def test_max_pool2d_dilation_rules(impl):
    with pytest.raises(ValueError, match="^max_pool2d: dilation must be positive"):
        impl.max_pool2d(X, 2, dilation=0)
    # Dilation widens the kernel and so the padding allowed: 2 <= (3 * (2 - 1) + 1) // 2.
    impl.max_pool2d(X, 2, padding=2, dilation=3)
    with pytest.raises(ValueError, match="^max_pool2d: padding should be at most half"):
        impl.max_pool2d(X, 2, padding=3, dilation=3)
    # Taps at -2 and 1 of a 1-pixel-high input: a window without an input element.
    with pytest.raises(ValueError, match="^max_pool2d: window 0 along H holds no input"):
        impl.max_pool2d(np.zeros((1, 1, 1, 6)), 2, stride=1, padding=2, dilation=3)


@pytest.mark.parametrize("value", [2.0, "2", None, (2, 2, 2), True])
def test_non_integer_kernel_size(impl, value):
    with pytest.raises(TypeError, match="^max_pool2d: kernel_size must be an int or a pair"):
        impl.max_pool2d(X, value)


def test_divisor_override(impl):
    with pytest.raises(ValueError, match="^avg_pool2d: divisor_override must not be zero"):
        impl.avg_pool2d(X, 2, divisor_override=0)
    with pytest.raises(TypeError, match="^avg_pool2d: divisor_override must be an int"):
        impl.avg_pool2d(X, 2, divisor_override=2.0)
    with pytest.raises(ValueError, match="^avg_pool2d_backward: divisor_override must not"):
        impl.avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), X.shape, 2,
                                 divisor_override=0)


def test_max_pool2d_backward_bad_indices(impl):
    fn = "max_pool2d_backward"
    with pytest.raises(ValueError, match=rf"^{fn}: expected indices of shape \(2, 3, 3, 3\)"):
        impl.max_pool2d_backward(POOLED, INDICES[:, :, :2], X.shape)
    with pytest.raises(TypeError, match=rf"^{fn}: indices must be int64, got dtype int32"):
        impl.max_pool2d_backward(POOLED, INDICES.astype(np.int32), X.shape)
    with pytest.raises(TypeError, match=rf"^{fn}: indices must be int64, got dtype float32"):
        impl.max_pool2d_backward(POOLED, INDICES.astype(np.float32), X.shape)
    for bad in (-1, 36, 10**12):
        indices = INDICES.copy()
        indices[1, 2, 0, 1] = bad
        with pytest.raises(ValueError, match=rf"^{fn}: indices must lie in \[0, 36\)"):
            impl.max_pool2d_backward(POOLED, indices, X.shape)
    with pytest.raises(ValueError, match=rf"^{fn}: grad_output \(2, 3, 3, 3\) and input_shape "
                                         r"\(2, 4, 6, 6\) disagree"):
        impl.max_pool2d_backward(POOLED, INDICES, (2, 4, 6, 6))
    with pytest.raises(TypeError, match=rf"^{fn}: grad_output must be float32 or float64"):
        impl.max_pool2d_backward(INDICES, INDICES, X.shape)


@pytest.mark.parametrize("input_shape, error", [
    ((2, 3, 6), ValueError), ((2, 3, 6, 6, 1), ValueError), ((-1, 3, 6, 6), ValueError),
    ((2, 3, 0, 6), ValueError), ((2, 3, 6.0, 6), TypeError), (6, TypeError)],
    ids=["3d", "5d", "negative", "empty", "float", "int"])
def test_bad_input_shape(impl, input_shape, error):
    grad = np.zeros((2, 3, 3, 3), np.float32)
    with pytest.raises(error, match="^avg_pool2d_backward: .*input_shape"):
        impl.avg_pool2d_backward(grad, input_shape, 2)
    with pytest.raises(error, match="^max_pool2d_backward: .*input_shape"):
        impl.max_pool2d_backward(grad, INDICES, input_shape)
    with pytest.raises(error, match="^interpolate_backward: .*input_shape"):
        impl.interpolate_backward(grad, input_shape, size=3)


def test_backward_grad_output_shape(impl):
    with pytest.raises(ValueError, match=r"^avg_pool2d_backward: expected grad_output of shape "
                                         r"\(2, 3, 3, 3\), got \(2, 3, 3, 2\)"):
        impl.avg_pool2d_backward(np.zeros((2, 3, 3, 2), np.float32), X.shape, 2)
    with pytest.raises(ValueError, match=r"^adaptive_avg_pool2d_backward: expected grad_output"):
        impl.adaptive_avg_pool2d_backward(np.zeros((2, 2, 3, 2), np.float32), X.shape)
    with pytest.raises(ValueError, match=r"^interpolate_backward: expected grad_output of shape "
                                         r"\(2, 3, 12, 12\)"):
        impl.interpolate_backward(np.zeros((2, 3, 12, 11), np.float32), X.shape,
                                  scale_factor=2)


def test_adaptive_pool_output_size(impl):
    for fn in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        with pytest.raises(ValueError, match=rf"^{fn}: output_size must be positive"):
            getattr(impl, fn)(X, (0, 2))
        with pytest.raises(TypeError, match=rf"^{fn}: output_size must be an int or a pair"):
            getattr(impl, fn)(X, 2.5)
    assert impl.adaptive_avg_pool2d(X, (None, 2)).shape == (2, 3, 6, 2)
    indices = np.zeros((2, 3, 2, 2), np.int64)
    indices[0, 0, 0, 0] = 36
    with pytest.raises(ValueError, match=r"^adaptive_max_pool2d_backward: indices must lie in"):
        impl.adaptive_max_pool2d_backward(np.zeros((2, 3, 2, 2)), indices, X.shape)


def test_max_unpool2d_bad_indices(impl):
    fn = "max_unpool2d"
    with pytest.raises(ValueError, match=rf"^{fn}: expected indices of shape \(2, 3, 3, 3\)"):
        impl.max_unpool2d(POOLED, INDICES[:1], 2)
    with pytest.raises(TypeError, match=rf"^{fn}: indices must be int64"):
        impl.max_unpool2d(POOLED, INDICES.astype(np.int32), 2)
    indices = INDICES.copy()
    indices[0, 0, 0, 0] = 36                      # the default output plane is 6x6
    with pytest.raises(ValueError, match=rf"^{fn}: indices must lie in \[0, 36\)"):
        impl.max_unpool2d(POOLED, indices, 2)
    # ... but fits a 7x7 output.
    assert impl.max_unpool2d(POOLED, indices, 2, output_size=(7, 7))[0, 0, 5, 1] == 0


@pytest.mark.parametrize("output_size, message", [
    ((4, 6), r"H must lie strictly between 4 and 8"),
    ((6, 8), r"W must lie strictly between 4 and 8"),
    ((6,), r"output_size must be \(H, W\) or \(N, C, H, W\)"),
    ((2, 3, 6), r"output_size must be \(H, W\) or \(N, C, H, W\)"),
    ((2, 4, 6, 6), r"disagrees with input \(2, 3, 3, 3\) on \(N, C\)"),
], ids=["too-small", "too-big", "length-1", "length-3", "wrong-channels"])
def test_max_unpool2d_inconsistent_output_size(impl, output_size, message):
    with pytest.raises(ValueError, match=rf"^max_unpool2d: .*{message}"):
        impl.max_unpool2d(POOLED, INDICES, 2, output_size=output_size)


def test_max_unpool2d_geometry(impl):
    with pytest.raises(ValueError, match="^max_unpool2d: kernel_size must be positive"):
        impl.max_unpool2d(POOLED, INDICES, 0)
    with pytest.raises(ValueError, match="^max_unpool2d: padding must be non-negative"):
        impl.max_unpool2d(POOLED, INDICES, 2, padding=-1)
    with pytest.raises(ValueError, match=r"^max_unpool2d: .*output size \(-1x-1\) is too small"):
        impl.max_unpool2d(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int64), 1,
                          padding=1)


def test_max_unpool2d_backward_bad_indices(impl):
    fn = "max_unpool2d_backward"
    grad = np.zeros((2, 3, 6, 6))
    with pytest.raises(ValueError, match=rf"^{fn}: expected 4-D indices \(N, C, H, W\)"):
        impl.max_unpool2d_backward(grad, INDICES[0])
    with pytest.raises(ValueError, match=rf"^{fn}: expected 4-D indices .* got shape \(2, 2"):
        impl.max_unpool2d_backward(grad, INDICES[:, :2])
    with pytest.raises(TypeError, match=rf"^{fn}: indices must be int64"):
        impl.max_unpool2d_backward(grad, INDICES.astype(np.uint64))
    with pytest.raises(ValueError, match=rf"^{fn}: indices must lie in \[0, 20\)"):
        impl.max_unpool2d_backward(np.zeros((2, 3, 4, 5)), INDICES + 12)
    with pytest.raises(ValueError, match=rf"^{fn}: expected 4-D grad_output"):
        impl.max_unpool2d_backward(grad[0], INDICES)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(size=4, scale_factor=2), ValueError, "exactly one of size and scale_factor"),
    (dict(), ValueError, "exactly one of size and scale_factor"),
    (dict(size=4, mode="bicubic"), ValueError, r"mode must be one of \('nearest', 'bilinear'\)"),
    (dict(size=4, align_corners=False), ValueError, "align_corners can only be set with"),
    (dict(scale_factor=0), ValueError, "scale_factor must be positive"),
    (dict(scale_factor=(2, -1)), ValueError, "scale_factor must be positive"),
    (dict(scale_factor=float("inf")), ValueError, "scale_factor must be positive and finite"),
    (dict(scale_factor="2"), TypeError, "scale_factor must be a number"),
    (dict(scale_factor=0.1), ValueError, r"output \(0x0\)"),
    (dict(size=(4, 0)), ValueError, r"output \(4x0\)"),
    (dict(size=2.5), TypeError, "size must be an int or a pair"),
    (dict(size=4, recompute_scale_factor=True), ValueError,
     "recompute_scale_factor is not meaningful with an explicit size"),
], ids=["both", "neither", "bad-mode", "align-nearest", "scale-0", "scale-negative",
        "scale-inf", "scale-str", "scale-empty-output", "size-0", "size-float", "recompute-size"])
def test_bad_interpolate_arguments(impl, kwargs, error, message):
    with pytest.raises(error, match=rf"^interpolate: .*{message}"):
        impl.interpolate(X, **kwargs)
    grad = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(error, match=rf"^interpolate_backward: .*{message}"):
        impl.interpolate_backward(grad, X.shape, **kwargs)
