"""Every bad argument of the conv2d contract (DESIGN.md) raises the documented exception.

TypeError for non-float or mixed dtypes and for parameters of the wrong type; ValueError
for wrong ranks, mismatched channels, groups that do not divide the channels,
non-positive stride / dilation / kernel, negative padding, bad padding strings and empty
outputs. Each message starts with the function's name and names the argument.
Every case runs through conv2d and conv2d_backward, which share one check.
"""
import inspect

import numpy as np
import pytest

import fastconv.functional as F

INPUT_SHAPE = (2, 4, 6, 5)
WEIGHT_SHAPE = (6, 4, 3, 2)
OUTPUT_SHAPE = (2, 6, 4, 4)  # at stride 1, padding 0, dilation 1


def as_pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def grad_output_shape(args):
    """The output shape the (possibly bad) arguments imply, or the base shape if none.

    Keeps grad_output consistent with the other arguments, so that a case fails on the
    argument it is about and not on grad_output.
    """
    try:
        batch, _, height, width = np.shape(args["input"])
        out_channels, _, kernel_h, kernel_w = np.shape(args["weight"])
        (stride_h, stride_w), (dilation_h, dilation_w) = (as_pair(args["stride"]),
                                                          as_pair(args["dilation"]))
        padding = 0 if args["padding"] in ("same", "valid") else args["padding"]
        pad_h, pad_w = as_pair(padding)
        if not all(type(v) is int for v in (stride_h, stride_w, dilation_h, dilation_w,
                                             pad_h, pad_w)):
            return OUTPUT_SHAPE
        out_h = (height + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
        out_w = (width + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
        if args["padding"] == "same":
            out_h, out_w = height, width
        if min(out_h, out_w) >= 1:
            return batch, out_channels, out_h, out_w
    except (TypeError, ValueError, ZeroDivisionError):
        pass
    return OUTPUT_SHAPE


def call(function, overrides):
    """function ("conv2d" or "conv2d_backward") on a valid base call changed by overrides."""
    args = dict(input=np.ones(INPUT_SHAPE), weight=np.ones(WEIGHT_SHAPE),
                bias=np.ones(WEIGHT_SHAPE[0]), stride=1, padding=0, dilation=1, groups=1,
                algo="auto")
    args.update(overrides)
    if function == "conv2d":
        return F.conv2d(**args)
    del args["bias"]
    if "grad_output" not in args:
        dtype = np.asarray(args["input"]).dtype
        args["grad_output"] = np.ones(grad_output_shape(args),
                                      dtype if dtype in (np.float32, np.float64) else np.float64)
    return F.conv2d_backward(**args)


def ones(shape, dtype=np.float64):
    return np.ones(shape, dtype)


# (id, overrides, exception, pattern the message must match, functions: both by default)
CASES = [
    # dtypes
    ("input-int32", dict(input=ones(INPUT_SHAPE, np.int32)), TypeError, r"input .*int32"),
    ("input-int64", dict(input=ones(INPUT_SHAPE, np.int64)), TypeError, r"input .*int64"),
    ("input-uint8", dict(input=ones(INPUT_SHAPE, np.uint8)), TypeError, r"input .*uint8"),
    ("input-bool", dict(input=ones(INPUT_SHAPE, bool)), TypeError, r"input .*bool"),
    ("input-float16", dict(input=ones(INPUT_SHAPE, np.float16)), TypeError, r"input .*float16"),
    ("input-complex", dict(input=ones(INPUT_SHAPE, np.complex128)), TypeError,
     r"input .*complex128"),
    ("input-nested-int-list", dict(input=np.ones(INPUT_SHAPE, int).tolist()), TypeError,
     r"input .*int"),
    ("weight-int32", dict(weight=ones(WEIGHT_SHAPE, np.int32)), TypeError, r"weight .*int32"),
    ("weight-float16", dict(weight=ones(WEIGHT_SHAPE, np.float16)), TypeError,
     r"weight .*float16"),
    ("bias-int64", dict(bias=ones(6, np.int64)), TypeError, r"bias .*int64", ["conv2d"]),
    ("grad_output-int64", dict(grad_output=ones(OUTPUT_SHAPE, np.int64)), TypeError,
     r"grad_output .*int64", ["conv2d_backward"]),
    ("mixed-input32-weight64", dict(input=ones(INPUT_SHAPE, np.float32)), TypeError,
     r"input float32, weight float64"),
    ("mixed-weight32", dict(weight=ones(WEIGHT_SHAPE, np.float32)), TypeError,
     r"input float64, weight float32"),
    ("mixed-bias32", dict(bias=ones(6, np.float32)), TypeError, r"bias float32", ["conv2d"]),
    ("mixed-grad_output32", dict(grad_output=ones(OUTPUT_SHAPE, np.float32)), TypeError,
     r"grad_output float32", ["conv2d_backward"]),
    # ranks
    ("input-3d", dict(input=ones((4, 6, 5))), ValueError, r"4-D input .*\(4, 6, 5\)"),
    ("input-2d", dict(input=ones((6, 5))), ValueError, r"4-D input .*\(6, 5\)"),
    ("input-5d", dict(input=ones((1,) + INPUT_SHAPE)), ValueError,
     r"4-D input .*\(1, 2, 4, 6, 5\)"),
    ("input-0d", dict(input=np.float64(1.0)), ValueError, r"4-D input .*\(\)"),
    ("weight-3d", dict(weight=ones((6, 4, 3))), ValueError, r"4-D weight .*\(6, 4, 3\)"),
    ("weight-5d", dict(weight=ones((1,) + WEIGHT_SHAPE)), ValueError, r"4-D weight"),
    # channels and groups
    ("channels-mismatch", dict(weight=ones((6, 3, 3, 2))), ValueError,
     r"weight \(6, 3, 3, 2\).*input \(2, 4, 6, 5\)"),
    ("channels-mismatch-groups", dict(groups=2), ValueError,
     r"weight \(6, 4, 3, 2\).*input \(2, 4, 6, 5\).*groups=2"),
    ("groups-not-dividing-C_in", dict(groups=3, weight=ones((6, 1, 3, 2))), ValueError,
     r"groups=3 .*C_in=4"),
    ("groups-not-dividing-C_out", dict(groups=2, weight=ones((5, 2, 3, 2))), ValueError,
     r"groups=2 .*C_out=5"),
    ("groups-0", dict(groups=0), ValueError, r"groups"),
    ("groups-negative", dict(groups=-2), ValueError, r"groups"),
    ("groups-float", dict(groups=1.5), TypeError, r"groups"),
    ("groups-integral-float", dict(groups=1.0), TypeError, r"groups"),
    ("groups-str", dict(groups="1"), TypeError, r"groups"),
    ("groups-None", dict(groups=None), TypeError, r"groups"),
    ("groups-bool", dict(groups=True), TypeError, r"groups"),
    ("C_in-0", dict(input=ones((2, 0, 6, 5)), weight=ones((6, 0, 3, 2))), ValueError,
     r"channels"),
    ("C_out-0", dict(weight=ones((0, 4, 3, 2)), bias=ones(0)), ValueError, r"channels"),
    ("kernel-height-0", dict(weight=ones((6, 4, 0, 2))), ValueError, r"kernel size"),
    ("kernel-width-0", dict(weight=ones((6, 4, 3, 0))), ValueError, r"kernel size"),
    # stride, dilation, padding values
    ("stride-0", dict(stride=0), ValueError, r"stride"),
    ("stride-negative", dict(stride=-1), ValueError, r"stride"),
    ("stride-pair-0", dict(stride=(1, 0)), ValueError, r"stride"),
    ("stride-pair-negative", dict(stride=(-2, 1)), ValueError, r"stride"),
    ("dilation-0", dict(dilation=0), ValueError, r"dilation"),
    ("dilation-negative", dict(dilation=-1), ValueError, r"dilation"),
    ("dilation-pair-0", dict(dilation=(2, 0)), ValueError, r"dilation"),
    ("padding-negative", dict(padding=-1), ValueError, r"padding"),
    ("padding-pair-negative", dict(padding=(0, -1)), ValueError, r"padding"),
    ("padding-full", dict(padding="full"), ValueError, r"padding"),
    ("padding-SAME", dict(padding="SAME"), ValueError, r"padding"),
    ("padding-empty-string", dict(padding=""), ValueError, r"padding"),
    ("same-stride2", dict(padding="same", stride=2), ValueError, r"padding='same'.*stride"),
    ("same-stride-1x2", dict(padding="same", stride=(1, 2)), ValueError,
     r"padding='same'.*stride"),
    # parameter types
    ("stride-3-tuple", dict(stride=(1, 1, 1)), TypeError, r"stride"),
    ("stride-1-tuple", dict(stride=(1,)), TypeError, r"stride"),
    ("stride-float", dict(stride=1.5), TypeError, r"stride"),
    ("stride-integral-float", dict(stride=1.0), TypeError, r"stride"),
    ("stride-pair-with-float", dict(stride=(1, 2.0)), TypeError, r"stride"),
    ("stride-str", dict(stride="1"), TypeError, r"stride"),
    ("stride-None", dict(stride=None), TypeError, r"stride"),
    ("dilation-3-tuple", dict(dilation=(1, 1, 1)), TypeError, r"dilation"),
    ("dilation-float", dict(dilation=2.0), TypeError, r"dilation"),
    ("padding-3-tuple", dict(padding=(1, 1, 1)), TypeError, r"padding"),
    ("padding-float", dict(padding=0.5), TypeError, r"padding"),
    ("padding-None", dict(padding=None), TypeError, r"padding"),
    # empty outputs
    ("too-small", dict(input=ones((2, 4, 2, 2))), ValueError,
     r"input size \(2x2\).*too small"),
    ("too-small-width-only", dict(input=ones((2, 4, 6, 1))), ValueError,
     r"input size \(6x1\).*too small"),
    ("too-small-dilated", dict(dilation=3), ValueError,
     r"input size \(6x5\).*dilated kernel size \(7x4\).*too small"),
    ("too-small-valid", dict(input=ones((2, 4, 2, 5)), padding="valid"), ValueError,
     r"input size \(2x5\).*too small"),
    ("too-small-strided", dict(input=ones((2, 4, 2, 2)), stride=3), ValueError,
     r"too small"),
    # bias and grad_output shapes
    ("bias-too-long", dict(bias=ones(7)), ValueError, r"bias .*\(6,\).*\(7,\)", ["conv2d"]),
    ("bias-2d", dict(bias=ones((6, 1))), ValueError, r"bias .*\(6, 1\)", ["conv2d"]),
    ("bias-row", dict(bias=ones((1, 6))), ValueError, r"bias .*\(1, 6\)", ["conv2d"]),
    ("bias-scalar", dict(bias=np.float64(1.0)), ValueError, r"bias .*got \(\)", ["conv2d"]),
    ("grad_output-width", dict(grad_output=ones((2, 6, 4, 3))), ValueError,
     r"grad_output .*\(2, 6, 4, 4\).*\(2, 6, 4, 3\)", ["conv2d_backward"]),
    ("grad_output-channels", dict(grad_output=ones((2, 5, 4, 4))), ValueError,
     r"grad_output .*\(2, 5, 4, 4\)", ["conv2d_backward"]),
    ("grad_output-batch", dict(grad_output=ones((3, 6, 4, 4))), ValueError,
     r"grad_output .*\(3, 6, 4, 4\)", ["conv2d_backward"]),
    ("grad_output-3d", dict(grad_output=ones((6, 4, 4))), ValueError, r"grad_output",
     ["conv2d_backward"]),
    ("grad_output-transposed", dict(grad_output=ones((2, 4, 4, 6))), ValueError,
     r"grad_output", ["conv2d_backward"]),
    # algorithm
    ("algo-unknown", dict(algo="fft"), ValueError, r"algo .*'fft'"),
    ("algo-capitalised", dict(algo="Direct"), ValueError, r"algo"),
    ("algo-None", dict(algo=None), ValueError, r"algo"),
    # activation
    ("activation-unknown", dict(activation="gelu"), ValueError, r"activation .*'gelu'",
     ["conv2d"]),
]

PARAMS = [
    pytest.param(function, overrides, exception, pattern, id=f"{function}-{case_id}")
    for case_id, overrides, exception, pattern, *only in CASES
    for function in (only[0] if only else ["conv2d", "conv2d_backward"])
]


@pytest.mark.parametrize("function, overrides, exception, pattern", PARAMS)
def test_bad_argument_raises(function, overrides, exception, pattern):
    with pytest.raises(exception, match=pattern) as info:
        call(function, overrides)
    assert str(info.value).startswith(f"{function}: "), str(info.value)


@pytest.mark.parametrize("function", ["conv2d", "conv2d_backward"])
def test_base_call_is_valid(function):
    """The base every error case starts from is accepted, so each case tests what it names."""
    result = call(function, {})
    shapes = [result.shape] if function == "conv2d" else [r.shape for r in result]
    expected = ([OUTPUT_SHAPE] if function == "conv2d"
                else [INPUT_SHAPE, WEIGHT_SHAPE, (WEIGHT_SHAPE[0],)])
    assert shapes == expected


@pytest.mark.parametrize("function", ["conv2d", "conv2d_backward"])
@pytest.mark.parametrize("overrides", [
    dict(stride=[2, 1]), dict(padding=[1, 0]), dict(dilation=(1, 2)), dict(padding="valid"),
    dict(padding="same"), dict(input=ones(INPUT_SHAPE).tolist()),
    dict(groups=2, weight=ones((6, 2, 3, 2))),
], ids=["stride-list", "padding-list", "dilation-pair", "valid", "same", "input-float-list",
        "groups2"])
def test_valid_variants_are_accepted(function, overrides):
    """Lists as pairs, padding strings and nested float lists are not errors."""
    call(function, overrides)


def test_signatures_follow_torch():
    """Argument names, order and defaults as in torch.nn.functional.conv2d."""
    forward = inspect.signature(F.conv2d).parameters
    assert [(name, p.default) for name, p in forward.items()] == [
        ("input", inspect.Parameter.empty), ("weight", inspect.Parameter.empty),
        ("bias", None), ("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1),
        ("algo", "auto"), ("activation", None)]
    assert forward["algo"].kind is inspect.Parameter.KEYWORD_ONLY
    assert forward["activation"].kind is inspect.Parameter.KEYWORD_ONLY
    backward = inspect.signature(F.conv2d_backward).parameters
    assert list(backward)[:7] == ["grad_output", "input", "weight", "stride", "padding",
                                  "dilation", "groups"]
    assert backward["algo"].kind is inspect.Parameter.KEYWORD_ONLY
    assert backward["output_mask"].kind is inspect.Parameter.KEYWORD_ONLY
