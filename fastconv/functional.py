"""The NumPy front end: validate -> allocate -> call kernels -> return arrays.

Semantics, argument names, order and defaults follow torch.nn.functional; arrays are NCHW,
float32 or float64.
"""
import numpy as np

from fastconv import _autotune
from fastconv._isa import kernels
from fastconv._checks import (BATCH_NORM_ACTIVATIONS, check_activation, check_adaptive_pool2d,
                              check_batch_norm, check_bias, check_conv2d, check_conv_transpose2d,
                              check_divisor_override, check_grad_output, check_interpolate,
                              check_pool2d, check_rank, check_same_shape, check_switches,
                              check_unpool2d, check_unpool2d_backward, float_arrays, shape_tuple)
from fastconv._autotune import winograd_applies
from fastconv._threads import get_num_threads, kernel_threads, single_threaded_blas
from fastconv._workspace import workspace

CONV_ALGORITHMS = ("auto", "direct", "im2col", "winograd")
# Weight-gradient partial sums per call: fixed so results never depend on the thread count.
MAX_WEIGHT_PARTIALS = 16
# A GEMM narrower than this many columns runs well below the BLAS's peak, so small
# images are convolved several at a time.
GEMM_COLUMNS = 512
# Blocks of images give the OpenMP threads their work: small images must not all land in
# one block.
MIN_BLOCKS = 4
# Output tile side of the Winograd forward pass and input gradient: F(4x4, 3x3) does 36
# multiplications per 16 outputs, F(2x2, 3x3) 16 per 4. F(4x4) measured 10-20% faster
# forward, 3-15% on the input gradient (src/_winograd.pyx has the figures), at float32
# errors still below 1e-5 relative.
WINOGRAD_TILE = 4
# Like GEMM_COLUMNS for the Winograd GEMMs, whose rows are output tiles; fewer than for
# im2col because each tile keeps 16 or 36 transformed values per channel, which should
# stay in cache. The weight gradient's GEMMs sum over the tiles instead, but a longer sum
# does not pay: its blocks' transformed input and gradient then spill from the caches, and
# BLAS's packing reads them from memory. Measured on 9 layers of airnet, fastnet and
# NET-M (2 threads), 128 tiles against 256 (forward, input gradient) and 512 (weight
# gradient): input gradients 0-25% and weight gradients 2-52% faster (1-40% on one
# thread), forwards from 13% slower to 16% faster; training steps 6-13% faster.
WINOGRAD_TILES = 128
WINOGRAD_WEIGHT_TILES = 128
# Output tile side of the Winograd weight gradient: F(4x4, 3x3) measured 1.15-1.6x faster
# than F(2x2, 3x3) on NET-M's layers (batch 128, one thread), at float32 errors below
# 1e-5 relative (src/_winograd.pyx has the figures).
WINOGRAD_WEIGHT_TILE = 4


def _conv_algorithm(fn, algo, input, weight, geometry, output_mask, run):
    """The algorithm to run: algo itself, or for "auto" fastconv._autotune's choice.

    output_mask is None for the forward pass; run(algorithm) repeats the call with an
    explicit algorithm, for timing.
    """
    if algo not in CONV_ALGORITHMS:
        raise ValueError(f"{fn}: algo must be one of {CONV_ALGORITHMS}, got {algo!r}")
    if algo == "winograd" and not winograd_applies(weight, geometry):
        g = geometry
        raise ValueError(f"{fn}: algo='winograd' needs a 3x3 kernel, stride 1, dilation 1 and "
                         f"groups 1, got kernel {weight.shape[2]}x{weight.shape[3]}, stride "
                         f"({g.stride_h}, {g.stride_w}), dilation ({g.dilation_h}, "
                         f"{g.dilation_w}), groups {g.groups}")
    if algo != "auto":
        return algo
    return _autotune.choose("forward" if output_mask is None else "backward", output_mask,
                            input, weight, geometry, run)


def _conv2d_arguments(fn, input, weight, bias, stride, padding, dilation, groups, algo,
                      activation):
    """conv2d's arguments checked: (input, weight, bias) as float arrays, the geometry,
    whether the activation is ReLU, and the algorithm (algo="auto" resolved)."""
    arrays = float_arrays(fn, input=input, weight=weight, bias=bias)
    input, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    geometry = check_conv2d(fn, input, weight, stride, padding, dilation, groups)
    check_bias(fn, bias, weight.shape[0])
    relu = check_activation(fn, activation) == "relu"
    algo = _conv_algorithm(fn, algo, input, weight, geometry, None,
                           lambda candidate: conv2d(input, weight, bias, stride, padding,
                                                    dilation, groups, algo=candidate,
                                                    activation=activation))
    return input, weight, bias, geometry, relu, algo


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algo="auto",
           activation=None):
    """2-D convolution (cross-correlation) over a batch of images, as torch.nn.functional.conv2d,
    optionally followed by a ReLU.

    Parameters
    ----------
    input : ndarray (N, C_in, H, W), float32 or float64
    weight : ndarray (C_out, C_in / groups, kH, kW)
    bias : ndarray (C_out,) or None
    stride, dilation : int or (h, w) pair, positive
    padding : int, (h, w) pair, "same" or "valid"
        Zero padding on both sides; "same" keeps H x W at stride 1 (odd totals pad
        one more at the bottom/right, as PyTorch does).
    groups : int dividing C_in and C_out
    algo : "auto", "direct", "im2col" or "winograd"
        All give the same result within float rounding. "im2col" keeps, per thread,
        one column matrix of C_in / groups * kH * kW rows by max(1, 512 // (H_out *
        W_out)) images' H_out * W_out columns (plus the block's C_out / groups output
        rows), whatever the batch size. "winograd" (F(4x4, 3x3): 4 times fewer
        multiplications) takes 3x3 kernels at stride 1 without dilation or groups only,
        and is a ValueError for any other layer. "auto" picks by a fixed heuristic
        (depthwise layers direct; Winograd's layers with C_in and C_out both at least
        16 winograd; the rest im2col), or by timing once per signature after
        fastconv.set_conv_autotune(True); fastconv.conv_algorithms() reports each choice.
    activation : None or "relu"
        "relu" returns max(conv + bias, 0), bitwise what relu(conv2d(...)) gives (NaN
        propagates), applied by every algorithm to each block of the output while it is
        still in cache instead of in a second pass over the whole output.

    Returns
    -------
    output : ndarray (N, C_out, H_out, W_out), with
        H_out = floor((H + 2 * padding - dilation * (kH - 1) - 1) / stride) + 1
        and likewise W_out.
    """
    input, weight, bias, geometry, relu, algo = _conv2d_arguments(
        "conv2d", input, weight, bias, stride, padding, dilation, groups, algo, activation)
    batch = input.shape[0]
    output = np.empty((batch, weight.shape[0], geometry.out_h, geometry.out_w), input.dtype)
    if algo == "direct":
        openmp_threads = kernel_threads(batch * groups)
        padded_h, padded_w = _padded_extent(weight, geometry)
        scratch = workspace("direct", (openmp_threads, weight.shape[1] * padded_h * padded_w
                                       + geometry.out_h * padded_w), input.dtype)
        kernels.conv_direct.conv2d_forward(input, weight, bias, relu, output,
                                           *geometry.kernel_args(), scratch, openmp_threads)
        return output
    if algo == "winograd":
        _winograd_conv(input, weight, bias, relu, geometry.pad_h, geometry.pad_w, False, output)
        return output
    _gemm_forward(input, weight, bias, relu, geometry, output)
    return output


def conv2d_max_pool2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                      algo="auto", activation=None):
    """max_pool2d(conv2d(...), 2): the convolution (arguments as in conv2d) followed by 2x2
    max pooling at stride 2, with the pooling's switches, bitwise what the two calls give.

    When the convolution runs as Winograd F(4x4, 3x3), each 4x4 output tile is pooled as
    it is transformed back, so the convolution's output is never stored, nor read again
    by a pooling pass; otherwise the two calls run.

    Returns
    -------
    output, indices : as max_pool2d returns them for the convolution's output
    conv_shape : tuple, the convolution's output shape, max_pool2d_backward's input_shape
    """
    input, weight, bias, geometry, relu, algo = _conv2d_arguments(
        "conv2d_max_pool2d", input, weight, bias, stride, padding, dilation, groups, algo,
        activation)
    conv_shape = (input.shape[0], weight.shape[0], geometry.out_h, geometry.out_w)
    shape = conv_shape[:2] + (geometry.out_h // 2, geometry.out_w // 2)
    if algo != "winograd" or WINOGRAD_TILE != 4 or 0 in shape:
        return *max_pool2d(conv2d(input, weight, bias, stride, padding, dilation, groups,
                                  algo=algo, activation=activation), 2), conv_shape
    output = np.empty(shape, input.dtype)
    indices = np.empty(shape, np.int64)
    _winograd_conv(input, weight, bias, relu, geometry.pad_h, geometry.pad_w, False, None,
                   (output, indices))
    return output, indices, conv_shape


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    algo="auto", output_mask=(True, True, True)):
    """Gradients of conv2d with respect to its input, weight and bias.

    Takes the arguments of the forward call (without bias) and grad_output
    (N, C_out, H_out, W_out). output_mask says which of (grad_input, grad_weight,
    grad_bias) to compute, as in PyTorch's convolution_backward; the others come back
    None (a layer without bias passes (True, True, False)). algo is as in conv2d;
    "winograd" computes the input gradient as the Winograd convolution of grad_output
    with the rotated kernel (by im2col if padding > 2) and the weight gradient as the
    adjoint of the Winograd F(4x4, 3x3) forward pass (36 GEMMs of transformed input and
    grad_output tiles, then G^T u G).

    Returns
    -------
    grad_input : ndarray (N, C_in, H, W) or None
    grad_weight : ndarray (C_out, C_in / groups, kH, kW) or None
    grad_bias : ndarray (C_out,) or None
    """
    fn = "conv2d_backward"
    arrays = float_arrays(fn, grad_output=grad_output, input=input, weight=weight)
    grad_output, input, weight = arrays["grad_output"], arrays["input"], arrays["weight"]
    geometry = check_conv2d(fn, input, weight, stride, padding, dilation, groups)
    batch, out_channels = input.shape[0], weight.shape[0]
    check_grad_output(fn, grad_output, (batch, out_channels, geometry.out_h, geometry.out_w))
    output_mask = tuple(bool(m) for m in output_mask)
    want_input, want_weight, want_bias = output_mask
    algo = _conv_algorithm(fn, algo, input, weight, geometry, output_mask,
                           lambda candidate: conv2d_backward(
                               grad_output, input, weight, stride, padding, dilation, groups,
                               algo=candidate, output_mask=output_mask))
    grad_input = np.zeros_like(input) if want_input else None
    grad_weight = np.zeros_like(weight) if want_weight else None
    grad_bias = _bias_gradient(grad_output) if want_bias else None
    if algo == "direct":
        out_h = geometry.out_h
        padded_h, padded_w = _padded_extent(weight, geometry)
        if want_input:
            openmp_threads = kernel_threads(batch * groups)
            scratch = workspace("direct", (openmp_threads, (out_channels // groups) * out_h
                                           * padded_w + padded_h * padded_w), input.dtype)
            kernels.conv_direct.conv2d_backward_input(grad_output, weight, grad_input,
                                                      *geometry.kernel_args(), scratch,
                                                      openmp_threads)
        if want_weight:
            openmp_threads = kernel_threads(out_channels)
            scratch = workspace("direct", (openmp_threads, weight.shape[1] * padded_h * padded_w
                                           + out_h * padded_w), input.dtype)
            totals = workspace("direct_totals", (openmp_threads, weight[0].size), np.float64)
            kernels.conv_direct.conv2d_backward_weight(grad_output, input, grad_weight,
                                                       *geometry.kernel_args(), scratch, totals,
                                                       openmp_threads)
        return grad_input, grad_weight, grad_bias
    if want_input:
        # The input gradient is the Winograd convolution of grad_output padded by
        # 2 - padding; a larger padding would make that negative, so im2col takes it.
        if algo == "winograd" and max(geometry.pad_h, geometry.pad_w) <= 2:
            _winograd_conv(grad_output, weight, None, False, 2 - geometry.pad_h,
                           2 - geometry.pad_w, True, grad_input)
        else:
            _gemm_input_gradient(grad_output, weight, geometry, grad_input)
    if want_weight:
        if algo == "winograd":
            _winograd_weight_gradient(grad_output, input, weight, geometry, grad_weight)
        else:
            _gemm_weight_gradient(grad_output, input, weight, geometry, grad_weight)
    return grad_input, grad_weight, grad_bias


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-D transposed convolution, as torch.nn.functional.conv_transpose2d.

    The adjoint of conv2d with the same weight: a GEMM and col2im per image, the input
    gradient of conv2d run forward, with no zero-stuffing of the input.

    Parameters
    ----------
    input : ndarray (N, C_in, H, W), float32 or float64
    weight : ndarray (C_in, C_out / groups, kH, kW)
    bias : ndarray (C_out,) or None
    stride, padding, output_padding, dilation : int or (h, w) pair
        output_padding (extra rows/columns at the bottom/right) must be smaller than
        stride or dilation.
    groups : int dividing C_in and C_out

    Returns
    -------
    output : ndarray (N, C_out, H_out, W_out), with
        H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1
        and likewise W_out.
    """
    fn = "conv_transpose2d"
    arrays = float_arrays(fn, input=input, weight=weight, bias=bias)
    input, weight, bias = arrays["input"], arrays["weight"], arrays["bias"]
    geometry, (out_h, out_w) = check_conv_transpose2d(fn, input, weight, stride, padding,
                                                      output_padding, groups, dilation)
    out_channels = weight.shape[1] * groups
    check_bias(fn, bias, out_channels)
    batch = input.shape[0]
    if bias is None:
        output = np.zeros((batch, out_channels, out_h, out_w), input.dtype)
    else:
        output = np.empty((batch, out_channels, out_h, out_w), input.dtype)
        output[...] = bias[None, :, None, None]
    _gemm_input_gradient(input, weight, geometry, output)
    return output


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, *, output_mask=(True, True, True)):
    """Gradients of conv_transpose2d with respect to its input, weight and bias.

    grad_input is conv2d of grad_output with the same weight; grad_weight is conv2d's
    weight gradient with the roles of input and grad_output swapped. output_mask selects
    which of (grad_input, grad_weight, grad_bias) to compute; the others come back None.

    Returns
    -------
    grad_input : ndarray (N, C_in, H, W) or None
    grad_weight : ndarray (C_in, C_out / groups, kH, kW) or None
    grad_bias : ndarray (C_out,) or None
    """
    fn = "conv_transpose2d_backward"
    arrays = float_arrays(fn, grad_output=grad_output, input=input, weight=weight)
    grad_output, input, weight = arrays["grad_output"], arrays["input"], arrays["weight"]
    geometry, (out_h, out_w) = check_conv_transpose2d(fn, input, weight, stride, padding,
                                                      output_padding, groups, dilation)
    batch, out_channels = input.shape[0], weight.shape[1] * groups
    check_grad_output(fn, grad_output, (batch, out_channels, out_h, out_w))
    want_input, want_weight, want_bias = (bool(m) for m in output_mask)
    grad_input = grad_weight = None
    grad_bias = _bias_gradient(grad_output) if want_bias else None
    if want_input:
        grad_input = np.empty_like(input)
        _gemm_forward(grad_output, weight, None, False, geometry, grad_input)
    if want_weight:
        grad_weight = np.zeros_like(weight)
        _gemm_weight_gradient(input, grad_output, weight, geometry, grad_weight)
    return grad_input, grad_weight, grad_bias


def _implicit_gemm_applies(dtype):
    """Whether a layer's im2col pass runs as an implicit GEMM: float32 at a level with
    fastconv's GEMM kernel."""
    return dtype == np.float32 and kernels.conv_gemm.FLOAT32_GEMM_KERNEL


def _implicit_workspace(input, group_out, geometry, weight, out_h, out_w, n_threads):
    g = geometry
    size = kernels.conv_gemm.implicit_workspace_size(
        input.shape[1], group_out, out_h, out_w, *weight.shape[2:], g.stride_h, g.stride_w,
        g.dilation_h, g.dilation_w)
    return workspace("columns", (n_threads, size), input.dtype)


def _implicit_gemm(input, weight, bias, relu, stride, padding, geometry, output, accumulate):
    """output (+)= the conv2d of input with weight (see src/_conv_gemm.pyx's
    conv2d_forward_implicit), with this (h, w) stride and padding and the geometry's
    dilation and groups."""
    g = geometry
    openmp_threads = kernel_threads(input.shape[0])
    scratch = _implicit_workspace(input, weight.shape[0] // g.groups, g, weight,
                                  output.shape[2], output.shape[3], openmp_threads)
    kernels.conv_gemm.conv2d_forward_implicit(input, weight, bias, relu, output, *stride,
                                              *padding, g.dilation_h, g.dilation_w, g.groups,
                                              scratch, openmp_threads, accumulate)


def _gemm_forward(input, weight, bias, relu, geometry, output):
    """output <- conv2d(input, weight) + bias, rectified if relu: im2col and a GEMM per
    block of images, or an implicit GEMM where it applies."""
    if _implicit_gemm_applies(input.dtype):
        g = geometry
        _implicit_gemm(input, weight, bias, relu, (g.stride_h, g.stride_w), (g.pad_h, g.pad_w),
                       g, output, False)
        return
    per_gemm = _images_per_gemm(input.shape[0], geometry)
    openmp_threads = kernel_threads(-(-input.shape[0] // per_gemm))
    scratch = workspace("columns", (openmp_threads, _gemm_workspace(weight, geometry, per_gemm)),
                        input.dtype)
    with single_threaded_blas():
        kernels.conv_gemm.conv2d_forward(input, weight, bias, relu, output, *geometry.kernel_args(),
                                         per_gemm, scratch, openmp_threads)


def _gemm_input_gradient(grad_output, weight, geometry, grad_input):
    """grad_input += conv2d's input gradient: a GEMM and col2im per block of images, or
    where an implicit GEMM applies, the convolution of grad_output with the kernel rotated
    by 180 degrees and its channel axes swapped, padded by dilation * (kernel - 1) -
    padding."""
    g = geometry
    kernel_h, kernel_w = weight.shape[2:]
    pad_h = g.dilation_h * (kernel_h - 1) - g.pad_h
    pad_w = g.dilation_w * (kernel_w - 1) - g.pad_w
    if (_implicit_gemm_applies(grad_output.dtype)
            and (g.stride_h, g.stride_w) == (1, 1) and min(pad_h, pad_w) >= 0):
        group_out = weight.shape[0] // g.groups
        rotated = np.ascontiguousarray(
            weight.reshape(g.groups, group_out, -1, kernel_h, kernel_w)
            .transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]).reshape(-1, group_out, kernel_h, kernel_w)
        _implicit_gemm(grad_output, rotated, None, False, (1, 1), (pad_h, pad_w), geometry,
                       grad_input, True)
        return
    per_gemm = _images_per_gemm(grad_output.shape[0], geometry)
    openmp_threads = kernel_threads(-(-grad_output.shape[0] // per_gemm))
    scratch = workspace("columns", (openmp_threads, _gemm_workspace(weight, geometry, per_gemm)),
                        grad_output.dtype)
    with single_threaded_blas():
        kernels.conv_gemm.conv2d_backward_input(grad_output, weight, grad_input,
                                                *geometry.kernel_args(), per_gemm, scratch,
                                                openmp_threads)


def _gemm_weight_gradient(grad_output, input, weight, geometry, grad_weight):
    """grad_weight += conv2d's weight gradient, summed over fixed chunks of the batch: by
    im2col and a GEMM per block of images, or an implicit GEMM where it applies."""
    batch = input.shape[0]
    if _implicit_gemm_applies(input.dtype):
        _implicit_weight_gradient(grad_output, input, weight, geometry, grad_weight)
        return
    per_gemm = _images_per_gemm(batch, geometry)
    # Chunks depend on the batch and the geometry only, never on the thread count.
    n_chunks = max(1, min(batch // per_gemm, MAX_WEIGHT_PARTIALS))
    openmp_threads = kernel_threads(n_chunks)
    scratch = workspace("columns", (openmp_threads, _gemm_workspace(weight, geometry, per_gemm)),
                        input.dtype)
    partials = workspace("weight_partials", (n_chunks, weight.shape[0], weight[0].size),
                         input.dtype)
    partials.fill(0)
    with single_threaded_blas():
        kernels.conv_gemm.conv2d_backward_weight(grad_output, input, weight, partials,
                                                 *geometry.kernel_args(), per_gemm, scratch,
                                                 openmp_threads)
    kernels.reduce.sum_partials(partials.reshape(n_chunks, grad_weight.size),
                                grad_weight.reshape(-1), get_num_threads())


def _implicit_weight_gradient(grad_output, input, weight, geometry, grad_weight):
    """grad_weight += conv2d's weight gradient by src/_conv_gemm.pyx's
    conv2d_backward_weight_implicit, summed over MAX_WEIGHT_PARTIALS chunks of the batch
    at most (fixed by the batch, never by the thread count)."""
    g = geometry
    batch, groups = input.shape[0], g.groups
    group_out = weight.shape[0] // groups
    n_chunks = max(1, min(batch, MAX_WEIGHT_PARTIALS))
    openmp_threads = kernel_threads(n_chunks)
    scratch = _implicit_workspace(input, group_out, g, weight, g.out_h, g.out_w, openmp_threads)
    pitch = kernels.conv_gemm.gradient_pitch(group_out)
    partials = workspace("weight_partials", (n_chunks, groups, weight[0].size, pitch),
                         input.dtype)
    partials.fill(0)
    kernels.conv_gemm.conv2d_backward_weight_implicit(
        grad_output, input, partials, *weight.shape[2:], g.stride_h, g.stride_w, g.pad_h,
        g.pad_w, g.dilation_h, g.dilation_w, scratch, openmp_threads)
    total = np.zeros(partials.shape[1:], input.dtype)
    kernels.reduce.sum_partials(partials.reshape(n_chunks, -1), total.reshape(-1),
                                get_num_threads())
    grad_weight += total[:, :, :group_out].transpose(0, 2, 1).reshape(weight.shape)


def _winograd_conv(input, weight, bias, relu, pad_h, pad_w, adjoint, output, pooled=None):
    """output <- the Winograd F(WINOGRAD_TILE x WINOGRAD_TILE, 3x3) convolution of input
    with weight, + bias, rectified if relu; or, with output None and pooled an (output,
    indices) pair, its 2x2 max pools and their switches (WINOGRAD_TILE 4 only).

    adjoint=True convolves with the kernel of the input gradient instead (weight rotated
    by 180 degrees, channels transposed): input is then grad_output and output grad_input.
    """
    batch, in_channels = input.shape[:2]
    if output is None:
        out_channels = pooled[0].shape[1]
        out_h, out_w = input.shape[2] + 2 * pad_h - 2, input.shape[3] + 2 * pad_w - 2
    else:
        out_channels, out_h, out_w = output.shape[1:]
    tile = WINOGRAD_TILE
    transformed = workspace("winograd_weight",
                            (kernels.winograd.transform_points(tile), in_channels,
                             kernels.winograd.round_up(out_channels)), input.dtype)
    kernels.winograd.transform_weight(weight, transformed, adjoint, tile,
                                      kernel_threads(in_channels))
    per_block = _winograd_images_per_block(batch, out_h, out_w, tile, WINOGRAD_TILES)
    openmp_threads = kernel_threads(-(-batch // per_block))
    scratch = workspace("winograd", (openmp_threads, kernels.winograd.workspace_size(
        in_channels, out_channels, out_h, out_w, per_block, tile)), input.dtype)
    with single_threaded_blas():
        kernels.winograd.conv2d_forward(input, transformed, bias, relu, output, pad_h, pad_w, tile,
                                        per_block, scratch, openmp_threads, *(pooled or ()))


def _winograd_weight_gradient(grad_output, input, weight, geometry, grad_weight):
    """grad_weight += conv2d's weight gradient by Winograd F(WINOGRAD_WEIGHT_TILE x
    WINOGRAD_WEIGHT_TILE, 3x3), summed in the transformed domain over fixed chunks of the
    batch, then transformed back."""
    batch, in_channels = input.shape[:2]
    if batch == 0:
        return
    out_channels = weight.shape[0]
    tile = WINOGRAD_WEIGHT_TILE
    points = kernels.winograd.transform_points(tile)
    per_block = _winograd_images_per_block(batch, geometry.out_h, geometry.out_w, tile,
                                           WINOGRAD_WEIGHT_TILES)
    # Chunks depend on the batch and the geometry only, never on the thread count.
    n_chunks = max(1, min(batch // per_block, MAX_WEIGHT_PARTIALS))
    openmp_threads = kernel_threads(n_chunks)
    scratch = workspace("winograd", (openmp_threads, kernels.winograd.workspace_size(
        in_channels, out_channels, geometry.out_h, geometry.out_w, per_block, tile)),
        input.dtype)
    partials = workspace("winograd_partials",
                         (in_channels, n_chunks, points, kernels.winograd.round_up(out_channels)),
                         input.dtype)
    with single_threaded_blas():
        kernels.winograd.conv2d_backward_weight(grad_output, input, partials, geometry.pad_h,
                                                geometry.pad_w, tile, per_block, scratch,
                                                openmp_threads)
    inverse_threads = kernel_threads(in_channels)
    sums = workspace("winograd_sums", (inverse_threads, points * partials.shape[3]), np.float64)
    kernels.winograd.inverse_weight(partials, grad_weight, sums, inverse_threads)


def _winograd_images_per_block(batch, out_h, out_w, tile, tiles):
    """Images whose tile x tile output tiles share one set of Winograd GEMMs: about tiles
    of them, but no more than leaves MIN_BLOCKS blocks to share among the threads."""
    return _block_size(batch, tiles // ((-(-out_h // tile)) * (-(-out_w // tile))))


def _block_size(batch, images):
    """images per block, capped so the batch makes at least MIN_BLOCKS blocks.

    Depends on shapes only, never on the thread count, so results do not either.
    """
    return max(1, min(images, batch // MIN_BLOCKS))


def _images_per_gemm(batch, geometry):
    """Images whose columns share one GEMM: enough for ~GEMM_COLUMNS columns (capped as
    _block_size says)."""
    return _block_size(batch, GEMM_COLUMNS // (geometry.out_h * geometry.out_w))


def _gemm_workspace(weight, geometry, per_gemm):
    """Elements per thread: the block's column matrix and its gathered output planes."""
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    rows = group_in * kernel_h * kernel_w + out_channels // geometry.groups
    return rows * per_gemm * geometry.out_h * geometry.out_w


def _padded_extent(weight, geometry):
    """Rows and columns of the zero-padded input planes the direct kernels read."""
    kernel_h, kernel_w = weight.shape[2:]
    g = geometry
    return ((g.out_h - 1) * g.stride_h + g.dilation_h * (kernel_h - 1) + 1,
            (g.out_w - 1) * g.stride_w + g.dilation_w * (kernel_w - 1) + 1)


def _bias_gradient(grad_output):
    batch, channels, height, width = grad_output.shape
    grad_bias = np.zeros(channels, grad_output.dtype)
    # Explicit sizes, not -1: NumPy cannot infer an axis of a zero-size array (N = 0).
    kernels.reduce.channel_sums(grad_output.reshape(batch, channels, height * width), grad_bias,
                                kernel_threads(channels))
    return grad_bias


# --- pooling ---------------------------------------------------------------------------

def _plane_threads(shape):
    """OpenMP threads for a kernel parallel over the N * C planes of shape."""
    return kernel_threads(shape[0] * shape[1])


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """2-D max pooling with argmax switches, as torch.nn.functional.max_pool2d(return_indices=True).

    Parameters
    ----------
    input : ndarray (N, C, H, W), float32 or float64
    kernel_size, dilation : int or (h, w) pair, positive
    stride : int, (h, w) pair or None (= kernel_size)
    padding : int or (h, w) pair, at most half the effective kernel
        dilation * (kernel_size - 1) + 1. Padding never wins a window; a dilated window
        that would hold padding only (possible on tiny inputs) is a ValueError.
    ceil_mode : bool
        Round the output size up; a last window that would start in the right padding
        is dropped.

    Returns
    -------
    output : ndarray (N, C, H_out, W_out), with
        H_out = floor((H + 2 * padding - dilation * (kH - 1) - 1) / stride) + 1
        (ceil with ceil_mode) and likewise W_out.
    indices : ndarray (N, C, H_out, W_out), int64
        The flat position h * W + w of each maximum inside its (n, c) plane: the first
        maximum in row-major window order, or the first NaN, which propagates.
    """
    input = float_arrays("max_pool2d", input=input)["input"]
    geometry = check_pool2d("max_pool2d", input.shape, kernel_size, stride, padding, dilation,
                            ceil_mode)
    shape = (*input.shape[:2], geometry.out_h, geometry.out_w)
    output = np.empty(shape, input.dtype)
    indices = np.empty(shape, np.int64)
    if _whole_2x2_windows(geometry, input.shape):
        kernels.pool.max_pool2d_2x2_forward(input, output, indices, _plane_threads(shape))
    else:
        kernels.pool.max_pool2d_forward(input, output, indices, *geometry.kernel_args(),
                                        _plane_threads(shape))
    return output, indices


def _whole_2x2_windows(geometry, input_shape):
    """Whether max_pool2d_2x2_forward applies: kernel 2, stride 2, no padding or dilation,
    and no window cut short by the input's edge (ceil_mode on an odd size cuts the last).

    The kernel keeps offsets within a window in 32-bit ints, hence the bound on the width.
    """
    height, width = input_shape[2:]
    return (geometry.kernel_args() == (2, 2, 2, 2, 0, 0, 1, 1)
            and 2 * geometry.out_h <= height and 2 * geometry.out_w <= width < 2**31 - 1)


def max_pool2d_backward(grad_output, indices, input_shape):
    """Gradient of max_pool2d with respect to its input: grad_output scattered through indices.

    Parameters
    ----------
    grad_output : ndarray (N, C, H_out, W_out)
    indices : ndarray (N, C, H_out, W_out), int64, from max_pool2d
    input_shape : (N, C, H, W) of the pooled input

    Returns
    -------
    grad_input : ndarray input_shape, the sum of grad_output over the outputs whose
        maximum each element was.
    """
    fn = "max_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    indices, input_shape = check_switches(fn, grad_output, indices, input_shape)
    grad_input = np.empty(input_shape, grad_output.dtype)
    kernels.pool.max_pool2d_backward(grad_output, indices, grad_input, _plane_threads(input_shape))
    return grad_input


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling, as torch.nn.functional.avg_pool2d.

    Parameters
    ----------
    input : ndarray (N, C, H, W), float32 or float64
    kernel_size : int or (h, w) pair, positive
    stride : int, (h, w) pair or None (= kernel_size)
    padding : int or (h, w) pair, at most half the kernel; zero padding
    ceil_mode : bool, as in max_pool2d
    count_include_pad : bool
        Divide by the window size counted within input + padding (a ceil_mode window
        running past the padding counts only up to it); else by the input elements only.
    divisor_override : nonzero int or None
        Divide every window sum by this instead.

    Returns
    -------
    output : ndarray (N, C, H_out, W_out), H_out and W_out as in max_pool2d with
        dilation 1. Window sums accumulate in double.
    """
    input = float_arrays("avg_pool2d", input=input)["input"]
    geometry = check_pool2d("avg_pool2d", input.shape, kernel_size, stride, padding, 1,
                            ceil_mode)
    divisor = check_divisor_override("avg_pool2d", divisor_override)
    output = np.empty((*input.shape[:2], geometry.out_h, geometry.out_w), input.dtype)
    kernels.pool.avg_pool2d_forward(input, output, *geometry.kernel_args()[:6],
                                    bool(count_include_pad), divisor, _plane_threads(input.shape))
    return output


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d with respect to its input.

    Takes grad_output (N, C, H_out, W_out), the input's shape (N, C, H, W) and the
    arguments of the forward call; returns grad_input of input_shape.
    """
    fn = "avg_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    input_shape = shape_tuple(fn, "input_shape", input_shape)
    geometry = check_pool2d(fn, input_shape, kernel_size, stride, padding, 1, ceil_mode)
    divisor = check_divisor_override(fn, divisor_override)
    check_grad_output(fn, grad_output, (*input_shape[:2], geometry.out_h, geometry.out_w))
    grad_input = np.empty(input_shape, grad_output.dtype)
    kernels.pool.avg_pool2d_backward(grad_output, grad_input, *geometry.kernel_args()[:6],
                                     bool(count_include_pad), divisor, _plane_threads(input_shape))
    return grad_input


def adaptive_avg_pool2d(input, output_size):
    """2-D adaptive average pooling, as torch.nn.functional.adaptive_avg_pool2d.

    Output element (i, j) averages input rows floor(i * H / H_out) to
    ceil((i + 1) * H / H_out) - 1, and likewise columns.

    Parameters
    ----------
    input : ndarray (N, C, H, W), float32 or float64
    output_size : int or (H_out, W_out) pair, positive; None in the pair keeps that size

    Returns
    -------
    output : ndarray (N, C, H_out, W_out); window sums accumulate in double.
    """
    input = float_arrays("adaptive_avg_pool2d", input=input)["input"]
    out_h, out_w = check_adaptive_pool2d("adaptive_avg_pool2d", input.shape, output_size)
    output = np.empty((*input.shape[:2], out_h, out_w), input.dtype)
    kernels.pool.adaptive_avg_pool2d_forward(input, output, _plane_threads(input.shape))
    return output


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """Gradient of adaptive_avg_pool2d: grad_output (N, C, H_out, W_out) -> grad_input."""
    fn = "adaptive_avg_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    input_shape = shape_tuple(fn, "input_shape", input_shape)
    check_rank(fn, "grad_output", grad_output, 4, "(N, C, H_out, W_out)")
    out_h, out_w = check_adaptive_pool2d(fn, input_shape, grad_output.shape[2:])
    check_grad_output(fn, grad_output, (*input_shape[:2], out_h, out_w))
    grad_input = np.empty(input_shape, grad_output.dtype)
    kernels.pool.adaptive_avg_pool2d_backward(grad_output, grad_input, _plane_threads(input_shape))
    return grad_input


def adaptive_max_pool2d(input, output_size):
    """2-D adaptive max pooling with switches, as torch's adaptive_max_pool2d(return_indices=True).

    Windows as in adaptive_avg_pool2d; maxima, ties and NaNs as in max_pool2d.

    Returns
    -------
    output : ndarray (N, C, H_out, W_out)
    indices : ndarray (N, C, H_out, W_out), int64 flat positions h * W + w in each plane
    """
    input = float_arrays("adaptive_max_pool2d", input=input)["input"]
    out_h, out_w = check_adaptive_pool2d("adaptive_max_pool2d", input.shape, output_size)
    shape = (*input.shape[:2], out_h, out_w)
    output = np.empty(shape, input.dtype)
    indices = np.empty(shape, np.int64)
    kernels.pool.adaptive_max_pool2d_forward(input, output, indices, _plane_threads(shape))
    return output, indices


def adaptive_max_pool2d_backward(grad_output, indices, input_shape):
    """Gradient of adaptive_max_pool2d: the same scatter through indices as max_pool2d_backward."""
    fn = "adaptive_max_pool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    indices, input_shape = check_switches(fn, grad_output, indices, input_shape)
    grad_input = np.empty(input_shape, grad_output.dtype)
    kernels.pool.max_pool2d_backward(grad_output, indices, grad_input, _plane_threads(input_shape))
    return grad_input


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d, as torch.nn.functional.max_unpool2d.

    Parameters
    ----------
    input : ndarray (N, C, H, W), float32 or float64
    indices : ndarray (N, C, H, W), int64, flat positions in the output planes
    kernel_size, stride, padding : those of the max_pool2d call (stride None = kernel_size)
    output_size : (H_out, W_out), (N, C, H_out, W_out) or None
        None gives H_out = (H - 1) * stride - 2 * padding + kH, and likewise W_out; an
        explicit size must lie strictly within one stride of that.

    Returns
    -------
    output : ndarray (N, C, H_out, W_out), zero except output[n, c].flat[indices[n, c]] =
        input[n, c] (of repeated indices the last in row-major order wins).
    """
    fn = "max_unpool2d"
    input = float_arrays(fn, input=input)["input"]
    indices, out_h, out_w = check_unpool2d(fn, input, indices, kernel_size, stride, padding,
                                           output_size)
    output = np.empty((*input.shape[:2], out_h, out_w), input.dtype)
    kernels.pool.max_unpool2d_forward(input, indices, output, _plane_threads(input.shape))
    return output


def max_unpool2d_backward(grad_output, indices):
    """Gradient of max_unpool2d with respect to its input: grad_output gathered at indices.

    grad_output (N, C, H_out, W_out), indices (N, C, H, W) int64 -> grad_input (N, C, H, W).
    """
    fn = "max_unpool2d_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    indices = check_unpool2d_backward(fn, grad_output, indices)
    grad_input = np.empty(indices.shape, grad_output.dtype)
    kernels.pool.max_unpool2d_backward(grad_output, indices, grad_input,
                                       _plane_threads(indices.shape))
    return grad_input


# --- interpolation ---------------------------------------------------------------------

def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize a batch of images, as torch.nn.functional.interpolate for 4-D input.

    Parameters
    ----------
    input : ndarray (N, C, H, W), float32 or float64
    size : int or (H_out, W_out) pair
    scale_factor : positive number or (h, w) pair
        Exactly one of size and scale_factor. A scale factor gives
        H_out = floor(H * scale_factor) and, unless recompute_scale_factor, is also the
        scale the source indices use (1 / scale_factor), as in PyTorch.
    mode : "nearest" or "bilinear"
        "nearest" is PyTorch's legacy rule: source index min(floor(dst * H / H_out), H - 1),
        computed in single precision (not "nearest-exact").
    align_corners : bool or None (= False); only with "bilinear"
        True maps the corner pixel centres onto each other: source = dst * (H - 1) / (H_out - 1);
        False uses half-pixel centres: source = max((dst + 0.5) * H / H_out - 0.5, 0).
    recompute_scale_factor : bool or None
        With scale_factor, derive the index scale from the sizes instead.

    Returns
    -------
    output : ndarray (N, C, H_out, W_out)
    """
    fn = "interpolate"
    input = float_arrays(fn, input=input)["input"]
    geometry = check_interpolate(fn, input.shape, size, scale_factor, mode, align_corners,
                                 recompute_scale_factor)
    output = np.empty((*input.shape[:2], geometry.out_h, geometry.out_w), input.dtype)
    threads = _plane_threads(input.shape)
    if geometry.mode == "nearest":
        kernels.interpolate.nearest_forward(input, output, geometry.scale_h, geometry.scale_w,
                                            threads)
    else:
        kernels.interpolate.bilinear_forward(input, output, geometry.align_corners,
                                             geometry.scale_h, geometry.scale_w, threads)
    return output


def interpolate_backward(grad_output, input_shape, size=None, scale_factor=None, mode="nearest",
                         align_corners=None, recompute_scale_factor=None):
    """Gradient of interpolate with respect to its input.

    Takes grad_output (N, C, H_out, W_out), the input's shape (N, C, H, W) and the
    arguments of the forward call; returns grad_input of input_shape.
    """
    fn = "interpolate_backward"
    grad_output = float_arrays(fn, grad_output=grad_output)["grad_output"]
    input_shape = shape_tuple(fn, "input_shape", input_shape)
    geometry = check_interpolate(fn, input_shape, size, scale_factor, mode, align_corners,
                                 recompute_scale_factor)
    check_grad_output(fn, grad_output, (*input_shape[:2], geometry.out_h, geometry.out_w))
    grad_input = np.empty(input_shape, grad_output.dtype)
    threads = _plane_threads(input_shape)
    if geometry.mode == "nearest":
        kernels.interpolate.nearest_backward(grad_output, grad_input, geometry.scale_h,
                                             geometry.scale_w, threads)
    else:
        kernels.interpolate.bilinear_backward(grad_output, grad_input, geometry.align_corners,
                                              geometry.scale_h, geometry.scale_w, threads)
    return grad_input


# --- activations -----------------------------------------------------------------------

def _chunk_threads(size):
    """OpenMP threads for an element-wise kernel over size elements."""
    return kernel_threads(kernels.activation.chunk_count(size))


def relu(input, inplace=False):
    """max(input, 0) element-wise, as torch.nn.functional.relu.

    Parameters
    ----------
    input : ndarray of any shape, float32 or float64
    inplace : bool
        Write the result into input, which must be a writeable ndarray, and return it.

    Returns
    -------
    output : ndarray of input's shape, bitwise np.maximum(input, 0): NaN propagates and
        -0.0 becomes +0.0.
    """
    fn = "relu"
    array = float_arrays(fn, input=input)["input"]
    if inplace:
        if not isinstance(input, np.ndarray):
            raise TypeError(f"{fn}: inplace=True needs an ndarray input, got "
                            f"{type(input).__name__}")
        if not input.flags.writeable:
            raise ValueError(f"{fn}: inplace=True needs a writeable input, got a read-only "
                             f"array of shape {input.shape}")
    output = array if inplace else np.empty(array.shape, array.dtype)
    kernels.activation.relu_forward(array.reshape(-1), output.reshape(-1),
                                    _chunk_threads(array.size))
    if inplace and output is not input:
        # The kernel worked on a contiguous copy of a strided input.
        np.copyto(input, output)
        return input
    return output


def relu_backward(grad_output, output):
    """Gradient of relu with respect to its input, given relu's output.

    Parameters
    ----------
    grad_output, output : ndarrays of one shape and dtype

    Returns
    -------
    grad_input : ndarray, bitwise grad_output * (output > 0): a product, so an infinite
        or NaN gradient where the output is not positive gives NaN, not 0.
    """
    fn = "relu_backward"
    arrays = float_arrays(fn, grad_output=grad_output, output=output)
    grad_output, output = arrays["grad_output"], arrays["output"]
    check_same_shape(fn, "grad_output", grad_output, "output", output)
    grad_input = np.empty(output.shape, output.dtype)
    kernels.activation.relu_backward(grad_output.reshape(-1), output.reshape(-1),
                                     grad_input.reshape(-1), _chunk_threads(output.size))
    return grad_input


def _gelu_approximate(fn, approximate):
    """approximate checked: True for "tanh", False for "none"."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{fn}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate == "tanh"


def gelu(input, approximate="none"):
    """x * Phi(x) element-wise, Phi the standard normal CDF, as torch.nn.functional.gelu.

    Parameters
    ----------
    input : ndarray of any shape, float32 or float64
    approximate : "none" or "tanh"
        "none": 0.5 x (1 + erf(x / sqrt(2))); "tanh": 0.5 x (1 + tanh(sqrt(2 / pi)
        (x + 0.044715 x^3))).

    Returns
    -------
    output : ndarray of input's shape. float32 comes from vectorised approximations of
        exp and erf (src/_gelu.h), within 1e-6 * max(1, |x|) of the float64 formula.
    """
    fn = "gelu"
    tanh = _gelu_approximate(fn, approximate)
    array = float_arrays(fn, input=input)["input"]
    output = np.empty(array.shape, array.dtype)
    kernels.activation.gelu_forward(array.reshape(-1), output.reshape(-1), tanh,
                                    _chunk_threads(array.size))
    return output


def gelu_backward(grad_output, input, approximate="none"):
    """Gradient of gelu with respect to its input: grad_output * (Phi(x) + x phi(x)), or
    the derivative of the tanh form.

    Parameters
    ----------
    grad_output, input : ndarrays of one shape and dtype
    approximate : "none" or "tanh", as given to gelu
    """
    fn = "gelu_backward"
    tanh = _gelu_approximate(fn, approximate)
    arrays = float_arrays(fn, grad_output=grad_output, input=input)
    grad_output, input = arrays["grad_output"], arrays["input"]
    check_same_shape(fn, "grad_output", grad_output, "input", input)
    grad_input = np.empty(input.shape, input.dtype)
    kernels.activation.gelu_backward(grad_output.reshape(-1), input.reshape(-1),
                                     grad_input.reshape(-1), tanh, _chunk_threads(input.size))
    return grad_input


# --- batch normalisation ---------------------------------------------------------------

def native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps,
                      *, activation=None):
    """Batch normalisation per channel, as PyTorch's native_batch_norm.

    input (N, C, *). In training, normalises with the batch statistics over N and the
    spatial axes, and blends them into running_mean / running_var in place (when given):
    running = (1 - momentum) * running + momentum * batch statistic, with the unbiased
    variance. Otherwise normalises with running_mean / running_var. activation="relu"
    applies max(output, 0) in the same pass, "gelu" and "gelu_tanh" GELU (see gelu; None:
    no activation); batch_norm_backward then takes the gradient through both, given
    activation and, for "relu", relu_output=output.

    Returns
    -------
    output : ndarray like input
    save_mean, save_invstd : ndarray (C,) float64
        The batch mean and 1 / sqrt(var + eps) that batch_norm_backward takes (empty
        arrays outside training).
    """
    fn = "batch_norm"
    input, weight, bias = (float_arrays(fn, input=input, weight=weight, bias=bias)[name]
                           for name in ("input", "weight", "bias"))
    check_batch_norm(fn, input, {"weight": weight, "bias": bias, "running_mean": running_mean,
                                 "running_var": running_var})
    activation = check_activation(fn, activation, BATCH_NORM_ACTIVATIONS)
    batch, channels = input.shape[:2]
    values = input.reshape(batch, channels, -1)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError(f"{fn}: running_mean and running_var are needed outside training")
        scale = 1 / np.sqrt(np.asarray(running_var, np.float64) + eps)
        if weight is not None:
            scale = scale * weight
        shift = (0 if bias is None else bias) - running_mean * scale
        output = values * scale.astype(input.dtype)[:, None]
        output += shift.astype(input.dtype)[:, None]
        if activation == "relu":
            np.maximum(output, 0, out=output)
        elif activation is not None:
            kernels.activation.gelu_forward(output.reshape(-1), output.reshape(-1),
                                            activation == "gelu_tanh", _chunk_threads(output.size))
        empty = np.empty(0, np.float64)
        return output.reshape(input.shape), empty, empty
    count = batch * values.shape[2]
    if count <= 1:
        raise ValueError(f"{fn}: expected more than 1 value per channel when training, got "
                         f"input shape {input.shape}")
    output = np.empty_like(values)
    mean, var = np.empty(channels), np.empty(channels)
    kernels.batchnorm.forward_train(values, weight, bias, eps, _BATCH_NORM_CODES[activation],
                                    output, mean, var, kernel_threads(channels))
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += momentum * var * (count / (count - 1))
    return output.reshape(input.shape), mean, 1 / np.sqrt(var + eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation, as torch.nn.functional.batch_norm (see native_batch_norm)."""
    return native_batch_norm(input, weight, bias, running_mean, running_var, training,
                             momentum, eps)[0]


# _batchnorm's codes for native_batch_norm's activations.
_BATCH_NORM_CODES = {None: kernels.batchnorm.NO_ACTIVATION, "relu": kernels.batchnorm.RELU,
                     "gelu": kernels.batchnorm.GELU, "gelu_tanh": kernels.batchnorm.GELU_TANH}


def batch_norm_backward(grad_output, input, weight, save_mean, save_invstd,
                        output_mask=(True, True, True), *, relu_output=None, activation=None,
                        bias=None):
    """Gradients of training-mode batch normalisation with respect to input, weight and bias.

    Takes the batch statistics native_batch_norm returned. Returns (grad_input,
    grad_weight, grad_bias), None where output_mask is False; weight may be None
    (no affine transform), and then grad_weight and grad_bias are None too.
    relu_output, the output of native_batch_norm(..., activation="relu"), takes the
    gradient through that ReLU as well, grad_output * (relu_output > 0) as nn.ReLU takes
    it, without a separate pass (activation is then "relu" or None). activation="gelu"
    or "gelu_tanh" takes it through native_batch_norm's GELU, from the normalised values
    computed again, which needs the bias too when there is a weight.
    """
    fn = "batch_norm_backward"
    arrays = float_arrays(fn, grad_output=grad_output, input=input, weight=weight, bias=bias,
                          relu_output=relu_output)
    grad_output, input, weight = arrays["grad_output"], arrays["input"], arrays["weight"]
    relu_output, bias = arrays["relu_output"], arrays["bias"]
    activation = check_activation(fn, activation, BATCH_NORM_ACTIVATIONS)
    if relu_output is not None and activation is None:
        activation = "relu"
    if (activation == "relu") != (relu_output is not None):
        raise ValueError(f"{fn}: relu_output must be given with activation='relu', and only then")
    if activation in ("gelu", "gelu_tanh") and (weight is None) != (bias is None):
        raise ValueError(f"{fn}: GELU needs the bias exactly when there is a weight")
    check_batch_norm(fn, input, {"weight": weight, "save_mean": save_mean,
                                 "save_invstd": save_invstd})
    check_grad_output(fn, grad_output, input.shape)
    batch, channels = input.shape[:2]
    values = input.reshape(batch, channels, -1)
    if relu_output is not None:
        if relu_output.shape != input.shape:
            raise ValueError(f"{fn}: relu_output must have the input's shape {input.shape}, "
                             f"got {relu_output.shape}")
        relu_output = relu_output.reshape(values.shape)
    # With an activation, grad_input holds the gradient through it between the passes.
    want_input = output_mask[0] or activation is not None
    grad_input = np.empty_like(values) if want_input else None
    grad_weight, grad_bias = np.empty(channels), np.empty(channels)
    kernels.batchnorm.backward(grad_output.reshape(values.shape), values, weight, bias,
                               np.asarray(save_mean, np.float64),
                               np.asarray(save_invstd, np.float64),
                               _BATCH_NORM_CODES[activation], relu_output, grad_input, grad_weight,
                               grad_bias, kernel_threads(channels))
    affine = weight is not None
    return (grad_input.reshape(input.shape) if output_mask[0] else None,
            grad_weight.astype(input.dtype) if affine and output_mask[1] else None,
            grad_bias.astype(input.dtype) if affine and output_mask[2] else None)
