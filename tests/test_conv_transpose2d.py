"""conv_transpose2d / conv_transpose2d_backward against the reference, naive loops,
finite differences and the adjoint identity with conv2d."""
import numpy as np
import pytest

import fastconv
import fastconv.functional as F
import fastconv.reference as reference

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

DTYPES = [np.float32, np.float64]
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def naive_conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation):
    """Every input pixel adds its weighted kernel to the output, written as plain loops."""
    (sh, sw), (ph, pw), (oh, ow), (dh, dw) = (stride, padding, output_padding, dilation)
    n, c_in, h, width = x.shape
    _, group_out, kh, kw = w.shape
    out_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oh + 1
    out_w = (width - 1) * sw - 2 * pw + dw * (kw - 1) + ow + 1
    out = np.zeros((n, group_out * groups, out_h, out_w))
    per_group = c_in // groups
    for image in range(n):
        for c in range(c_in):
            g = c // per_group
            for o in range(group_out):
                for i in range(h):
                    for j in range(width):
                        for p in range(kh):
                            for q in range(kw):
                                y, z = i * sh - ph + p * dh, j * sw - pw + q * dw
                                if 0 <= y < out_h and 0 <= z < out_w:
                                    out[image, g * group_out + o, y, z] += x[image, c, i, j] * w[c, o, p, q]
    if b is not None:
        out += b[None, :, None, None]
    return out


def random_case(rng):
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in, group_out = groups * int(rng.integers(1, 4)), int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
    padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    h, w = (int(v) for v in rng.integers(1, 7, size=2))
    return dict(shape=(int(rng.integers(1, 4)), c_in, h, w), weight=(c_in, group_out, kh, kw),
                stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                dilation=dilation, bias=bool(rng.integers(0, 2)))


def valid_cases(seed, count):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        case = random_case(rng)
        (_, _, h, w), (_, _, kh, kw) = case["shape"], case["weight"]
        sizes = [(size - 1) * s - 2 * p + d * (k - 1) + o + 1 for size, s, p, d, k, o in zip(
            (h, w), case["stride"], case["padding"], case["dilation"], (kh, kw),
            case["output_padding"])]
        if min(sizes) >= 1:
            cases.append(case)
    return cases


def arrays(case, dtype, rng):
    x = rng.standard_normal(case["shape"]).astype(dtype)
    w = rng.standard_normal(case["weight"]).astype(dtype)
    b = rng.standard_normal(case["weight"][1] * case["groups"]).astype(dtype) if case["bias"] else None
    return x, w, b


def geometry(case):
    return (case["stride"], case["padding"], case["output_padding"], case["groups"],
            case["dilation"])


def assert_close(actual, expected, dtype, name):
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    error = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert error <= TOLERANCE[np.dtype(dtype)] * scale, f"{name}: error {error:.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("chunk", range(4), ids=lambda c: f"chunk{c}")
def test_against_reference(dtype, chunk):
    rng = np.random.default_rng(100 + chunk)
    for case in valid_cases(seed=chunk, count=30):
        x, w, b = arrays(case, dtype, rng)
        out = F.conv_transpose2d(x, w, b, *geometry(case))
        expected = reference.conv_transpose2d(x.astype(np.float64), w.astype(np.float64),
                                              None if b is None else b.astype(np.float64),
                                              *geometry(case))
        assert out.dtype == dtype
        assert_close(out, expected, dtype, f"forward {case}")
        grad_output = rng.standard_normal(out.shape).astype(dtype)
        actual = F.conv_transpose2d_backward(grad_output, x, w, *geometry(case))
        wanted = reference.conv_transpose2d_backward(
            grad_output.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
            *geometry(case))
        for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), actual, wanted):
            assert a.dtype == dtype and a.shape == e.shape, name
            assert_close(a, e, dtype, f"{name} {case}")


@pytest.mark.parametrize("case", valid_cases(seed=7, count=12), ids=lambda c: str(c["weight"]))
def test_reference_against_naive_loops(case):
    rng = np.random.default_rng(1)
    x, w, b = arrays(case, np.float64, rng)
    expected = naive_conv_transpose2d(x, w, b, *(np.broadcast_to(v, 2) for v in (
        case["stride"], case["padding"], case["output_padding"])), case["groups"],
        np.broadcast_to(case["dilation"], 2))
    np.testing.assert_allclose(reference.conv_transpose2d(x, w, b, *geometry(case)), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("output_padding", [0, 1, 2], ids=lambda o: f"op{o}")
def test_output_padding_up_to_max_of_stride_and_dilation(output_padding):
    # stride 1 with dilation 3 allows output_padding 2: the extra rows see no input.
    rng = np.random.default_rng(output_padding)
    x, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 2, 2, 3))
    args = (1, 1, output_padding, 1, 3)
    out = F.conv_transpose2d(x, w, None, *args)
    np.testing.assert_allclose(out, naive_conv_transpose2d(x, w, None, (1, 1), (1, 1),
                                                           (output_padding,) * 2, 1, (3, 3)),
                               rtol=1e-12, atol=1e-12)
    grads = F.conv_transpose2d_backward(np.ones_like(out), x, w, *args)
    expected = reference.conv_transpose2d_backward(np.ones_like(out), x, w, *args)
    for a, e in zip(grads, expected):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", valid_cases(seed=11, count=6), ids=lambda c: str(c["weight"]))
def test_adjoint_of_conv2d(case):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>, and where conv2d's output has y's
    shape, conv_transpose2d(y, w) is conv2d_backward's input gradient."""
    rng = np.random.default_rng(5)
    y, w, _ = arrays(case, np.float64, rng)
    out = F.conv_transpose2d(y, w, None, *geometry(case))
    x = rng.standard_normal(out.shape)
    conv_args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    # With output_padding >= stride, conv2d(x) has extra rows no input pixel of y reaches.
    conv = F.conv2d(x, w, None, *conv_args)[:, :, :y.shape[2], :y.shape[3]]
    np.testing.assert_allclose(np.sum(conv * y), np.sum(x * out), rtol=1e-10)
    if F.conv2d(x, w, None, *conv_args).shape == y.shape:
        grad_input = F.conv2d_backward(y, x, w, *conv_args)[0]
        np.testing.assert_allclose(out, grad_input, rtol=1e-10, atol=1e-10)


def test_finite_differences():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 4, 3, 4)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    args = ((2, 1), (1, 0), (1, 0), 2, (1, 2))
    projection = rng.standard_normal(F.conv_transpose2d(x, w, b, *args).shape)
    grads = F.conv_transpose2d_backward(projection, x, w, *args)

    def loss(x, w, b):
        return np.sum(F.conv_transpose2d(x, w, b, *args) * projection)
    eps = 1e-6
    for index, array in enumerate((x, w, b)):
        numeric = np.zeros_like(array)
        for position in np.ndindex(array.shape):
            saved = array[position]
            array[position] = saved + eps
            plus = loss(x, w, b)
            array[position] = saved - eps
            minus = loss(x, w, b)
            array[position] = saved
            numeric[position] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grads[index], numeric, rtol=1e-6, atol=1e-7)


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((37, 8, 5, 6)).astype(np.float32), \
        rng.standard_normal((8, 4, 4, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    before = fastconv.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            out = F.conv_transpose2d(x, w, b, 2, 1)
            results.append((out,) + F.conv_transpose2d_backward(np.cos(out), x, w, 2, 1))
    finally:
        fastconv.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_output_mask_and_non_contiguous_input():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 6, 4)).transpose(0, 1, 3, 2)
    w = rng.standard_normal((5, 2, 3, 3))
    out = F.conv_transpose2d(x, w, None, 2, 1, 1)
    np.testing.assert_allclose(out, F.conv_transpose2d(np.ascontiguousarray(x), w, None, 2, 1, 1))
    grad_input, grad_weight, grad_bias = F.conv_transpose2d_backward(
        np.ones_like(out), x, w, 2, 1, 1, output_mask=(False, True, False))
    assert grad_input is None and grad_bias is None and grad_weight.shape == w.shape


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(input=np.ones((2, 3, 4)), weight=np.ones((3, 2, 3, 3))), ValueError, "input"),
    (dict(input=np.ones((2, 3, 4, 4), np.int64), weight=np.ones((3, 2, 3, 3))), TypeError, "input"),
    (dict(input=np.ones((2, 3, 4, 4), np.float32), weight=np.ones((3, 2, 3, 3))), TypeError, "dtype"),
    (dict(input=np.ones((2, 4, 4, 4)), weight=np.ones((3, 2, 3, 3))), ValueError, "C_in"),
    (dict(input=np.ones((2, 3, 4, 4)), weight=np.ones((3, 2, 0, 3))), ValueError, "kernel"),
    (dict(input=np.ones((2, 3, 4, 4)), weight=np.ones((3, 2, 3, 3)), stride=2,
          output_padding=2), ValueError, "output_padding"),
    (dict(input=np.ones((2, 3, 4, 4)), weight=np.ones((3, 2, 3, 3)), output_padding=1),
     ValueError, "output_padding"),
    (dict(input=np.ones((2, 3, 4, 4)), weight=np.ones((3, 2, 3, 3)), padding=-1),
     ValueError, "padding"),
    (dict(input=np.ones((2, 3, 4, 4)), weight=np.ones((3, 2, 3, 3)), stride=0),
     ValueError, "stride"),
    (dict(input=np.ones((2, 3, 4, 4)), weight=np.ones((3, 2, 3, 3)), groups=2),
     ValueError, "groups"),
    (dict(input=np.ones((2, 3, 1, 1)), weight=np.ones((3, 2, 1, 1)), padding=1),
     ValueError, "too small"),
    (dict(input=np.ones((2, 3, 4, 4)), weight=np.ones((3, 2, 3, 3)), bias=np.ones(3)),
     ValueError, "bias"),
], ids=["rank", "int-dtype", "mixed-dtype", "channels", "kernel-0", "output-padding-stride",
        "output-padding-stride-1", "negative-padding", "stride-0", "groups", "empty-output",
        "bias-shape"])
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        F.conv_transpose2d(**kwargs)


def test_bad_grad_output_shape():
    x, w = np.ones((2, 3, 4, 4)), np.ones((3, 2, 3, 3))
    with pytest.raises(ValueError, match="grad_output"):
        F.conv_transpose2d_backward(np.ones((2, 2, 5, 5)), x, w)
