# cython: boundscheck=False, wraparound=False, cdivision=True
"""Convolution as im2col + GEMM, forward and backward.

Images go through a GEMM `per_gemm` at a time: their column matrices sit side by side
in one (C_in / groups * kH * kW, per_gemm * out_h * out_w) matrix, because one small
image alone makes a GEMM too narrow to run at full speed. OpenMP runs over these blocks
of images (forward, input gradient) or over fixed chunks of the batch (weight gradient);
each thread owns its outputs and its workspace row and calls a single-threaded BLAS.

In float32 at the levels with _gemm_kernel.h (AVX2, AVX-512), every pass but a strided
layer's input gradient runs as an implicit GEMM instead (conv2d_forward_implicit,
conv2d_backward_weight_implicit): the kernel reads the column matrix's rows where they
lie in the padded image, and no column matrix is written.

Shapes: input (N, C_in, H, W), weight (C_out, C_in / groups, kH, kW),
output (N, C_out, out_h, out_w). workspace has one row per thread of
(C_in / groups * kH * kW + C_out / groups) * per_gemm * out_h * out_w elements.
"""
from cython.parallel cimport prange, threadid
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from _common cimport (floating, gemm, pad_plane, rectify_run, GEMM_KERNEL, LANES, PANEL,
                      sgemm_kernel_rows_a, sgemm_kernel_rows_b)
from _im2col cimport im2col_image, col2im_image


cdef inline bint reads_input_as_columns(Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                                        Py_ssize_t stride_h, Py_ssize_t stride_w,
                                        Py_ssize_t pad_h, Py_ssize_t pad_w,
                                        Py_ssize_t height, Py_ssize_t width,
                                        Py_ssize_t out_h, Py_ssize_t out_w) noexcept nogil:
    # A 1x1 kernel at stride 1 without padding: the image (C, H*W) already is its column matrix.
    return (kernel_h == 1 and kernel_w == 1 and stride_h == 1 and stride_w == 1
            and pad_h == 0 and pad_w == 0 and out_h == height and out_w == width)


cdef inline void gather_planes(const floating* first, Py_ssize_t image_stride,
                               Py_ssize_t count, Py_ssize_t planes, Py_ssize_t plane_size,
                               floating* block) noexcept nogil:
    """block (planes, count * plane_size) <- the planes of count consecutive images."""
    cdef Py_ssize_t b, p
    for b in range(count):
        for p in range(planes):
            memcpy(block + p * count * plane_size + b * plane_size,
                   first + b * image_stride + p * plane_size, plane_size * sizeof(floating))


cdef inline const floating* column_matrix(
        const floating* images, Py_ssize_t image_stride, Py_ssize_t count, bint direct_columns,
        Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width, Py_ssize_t kernel_h,
        Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
        Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t out_h,
        Py_ssize_t out_w, floating* buffer) noexcept nogil:
    """The (rows, count * pixels) column matrix of count consecutive images (image_stride
    apart): a single image that already is one (reads_input_as_columns), else their
    im2col matrices side by side in buffer."""
    cdef Py_ssize_t b, pixels = out_h * out_w
    if direct_columns and count == 1:
        return images
    for b in range(count):
        im2col_image(images + b * image_stride, channels, height, width, kernel_h, kernel_w,
                     stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, out_h, out_w,
                     buffer + b * pixels, count * pixels)
    return buffer


cdef inline Py_ssize_t panel_columns(Py_ssize_t columns) noexcept nogil:
    """columns rounded up to whole panels: the column count of the panel-stored matrix."""
    return (columns + PANEL - 1) // PANEL * PANEL


def panel_width():
    """Columns per panel of _gemm_kernel.h's panel-stored operands at this ISA level: two
    vectors (the Winograd transformed weights, the implicit GEMM's transposed gradient)."""
    return PANEL


# Whether float32 passes multiply with _gemm_kernel.h at this ISA level.
FLOAT32_GEMM_KERNEL = bool(GEMM_KERNEL)


def gradient_pitch(Py_ssize_t group_out):
    """group_out rounded up to whole vectors: the row pitch of
    conv2d_backward_weight_implicit's partials."""
    return (group_out + LANES - 1) // LANES * LANES


cdef struct Phases:
    # An image as the implicit GEMM reads it: each channel's zero-padded plane split into
    # stride_h x stride_w phase planes, phase (a, b) holding padded pixel (a + stride_h u,
    # b + stride_w v) at (u, v), extent_h x extent_w; output pixel (oh, ow) counts as
    # q = oh * extent_w + ow.
    Py_ssize_t stride_h, stride_w, pad_h, pad_w, extent_h, extent_w, plane, channel


cdef inline Phases phases_of(Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t kernel_h,
                             Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                             Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dilation_h,
                             Py_ssize_t dilation_w) noexcept nogil:
    cdef Phases layout
    layout.stride_h, layout.stride_w = stride_h, stride_w
    layout.pad_h, layout.pad_w = pad_h, pad_w
    layout.extent_h = out_h + dilation_h * (kernel_h - 1) // stride_h
    layout.extent_w = out_w + dilation_w * (kernel_w - 1) // stride_w
    layout.plane = layout.extent_h * layout.extent_w
    layout.channel = stride_h * stride_w * layout.plane
    return layout


cdef inline Py_ssize_t phases_size(Phases layout, Py_ssize_t channels) noexcept nogil:
    """Elements of an image's phase planes and of the overrun past them (see
    conv2d_forward_implicit): where the scratch after them starts."""
    return channels * layout.channel + PANEL + layout.extent_w


def implicit_workspace_size(Py_ssize_t in_channels, Py_ssize_t group_out, Py_ssize_t out_h,
                            Py_ssize_t out_w, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                            Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t dilation_h,
                            Py_ssize_t dilation_w):
    """Elements per thread of conv2d_forward_implicit and conv2d_backward_weight_implicit:
    the image's phase planes, the overrun past them (see conv2d_forward_implicit), then
    one group's products or transposed output gradient."""
    cdef Phases layout = phases_of(out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, 0, 0,
                                   dilation_h, dilation_w)
    cdef Py_ssize_t pixels = out_h * layout.extent_w
    return (phases_size(layout, in_channels)
            + max(group_out * panel_columns(pixels), pixels * gradient_pitch(group_out)))


cdef inline Py_ssize_t* tap_offsets(Py_ssize_t rows, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                                    Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                                    Phases layout) noexcept nogil:
    """A new array (NULL if out of memory) of where row (c, i, j) of a group's column matrix
    starts in its phase planes, for the rows c * kH * kW + i * kW + j < rows: tap (i, j)
    reads padded row oh * stride_h + i * dilation_h, which is row oh + i * dilation_h //
    stride_h of phase i * dilation_h % stride_h (and the same along the columns)."""
    cdef Py_ssize_t* offsets = <Py_ssize_t*>malloc(rows * sizeof(Py_ssize_t))
    cdef Py_ssize_t r, row, column
    if offsets != NULL:
        for r in range(rows):
            row = r // kernel_w % kernel_h * dilation_h
            column = r % kernel_w * dilation_w
            offsets[r] = (r // (kernel_h * kernel_w) * layout.channel
                          + (row % layout.stride_h * layout.stride_w
                             + column % layout.stride_w) * layout.plane
                          + row // layout.stride_h * layout.extent_w
                          + column // layout.stride_w)
    return offsets


cdef inline void split_image(const float* image, Py_ssize_t channels, Py_ssize_t height,
                             Py_ssize_t width, Phases layout, float* phases) noexcept nogil:
    """The image's zero-padded planes into their phase planes, and the overrun past them
    zeroed."""
    cdef Py_ssize_t c, a, b, u, v, h, w
    cdef const float* plane
    cdef float* out
    for c in range(channels):
        plane = image + c * height * width
        if layout.stride_h == 1 and layout.stride_w == 1:
            pad_plane(plane, height, width, layout.pad_h, layout.pad_w, layout.extent_h,
                      layout.extent_w, phases + c * layout.channel)
            continue
        for a in range(layout.stride_h):
            for b in range(layout.stride_w):
                out = phases + c * layout.channel + (a * layout.stride_w + b) * layout.plane
                for u in range(layout.extent_h):
                    h = a + u * layout.stride_h - layout.pad_h
                    for v in range(layout.extent_w):
                        w = b + v * layout.stride_w - layout.pad_w
                        out[u * layout.extent_w + v] = (plane[h * width + w] if 0 <= h < height
                                                        and 0 <= w < width else 0)
    memset(phases + channels * layout.channel, 0, (PANEL + layout.extent_w) * sizeof(float))


cdef inline const float* image_phases(const float* image, Py_ssize_t channels,
                                      Py_ssize_t height, Py_ssize_t width, Phases layout,
                                      bint in_place, float* phases) noexcept nogil:
    """The image's phase planes: the image itself with in_place (a 1x1 kernel at stride 1
    without padding, whose planes are their own phase planes, read by the caller only
    where they lie), else split_image's copy in phases."""
    if in_place:
        return image
    split_image(image, channels, height, width, layout, phases)
    return phases


def conv2d_forward_implicit(const float[:, :, :, ::1] input, const float[:, :, :, ::1] weight,
                            const float[::1] bias, bint relu, float[:, :, :, ::1] output,
                            Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                            Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                            Py_ssize_t groups, float[:, ::1] workspace, int n_threads,
                            bint accumulate):
    """output <- conv2d(input, weight) + bias (bias may be None), rectified with relu, or
    with accumulate output += conv2d(input, weight), by _gemm_kernel.h without a column
    matrix (an implicit GEMM); float32 at levels with the kernel only
    (FLOAT32_GEMM_KERNEL).

    Each image is copied once into zero-padded planes, each split into stride_h x
    stride_w phase planes (see Phases; at stride 1 the padded plane itself) extent_w =
    out_w + dilation_w * (kW - 1) // stride_w wide. Over those, output pixel (oh, ow)
    counted as q = oh * extent_w + ow, kernel tap (c, i, j) reads the value at
    tap_offsets' offset + q: for every tap, the column matrix's row is a contiguous run of
    the phase planes, which the kernel reads where it lies, and no column matrix is
    written (im2col wrote kH * kW copies of each image, the 5x5 layers' main cost). The
    products have extent_w columns per output row; the extra ones, and those past the last
    row, are computed and dropped, and may read up to PANEL + extent_w values past the
    planes.
    """
    cdef Py_ssize_t batch = input.shape[0], in_channels = input.shape[1]
    cdef Py_ssize_t height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t rows = group_in * kernel_h * kernel_w
    cdef Phases layout = phases_of(out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                                   pad_w, dilation_h, dilation_w)
    cdef Py_ssize_t extent_w = layout.extent_w, columns = panel_columns(out_h * extent_w)
    cdef bint has_bias = bias is not None
    # Without an overrun (whole panels of pixels), the kernel may read a 1x1 layer's input
    # where it lies: the copy cost a third of the 128->64 layer's forward pass.
    cdef bint in_place = (reads_input_as_columns(kernel_h, kernel_w, stride_h, stride_w, pad_h,
                                                 pad_w, height, width, out_h, out_w)
                          and out_h * out_w % PANEL == 0)
    cdef Py_ssize_t n, g, o, oh, p
    cdef const float* phases
    cdef float* products
    cdef float* out_plane
    cdef Py_ssize_t* offsets = tap_offsets(rows, kernel_h, kernel_w, dilation_h, dilation_w,
                                           layout)
    if offsets == NULL:
        raise MemoryError()
    with nogil:
        for n in prange(batch, num_threads=n_threads, schedule="static"):
            products = &workspace[threadid(), 0] + phases_size(layout, in_channels)
            phases = image_phases(&input[n, 0, 0, 0], in_channels, height, width, layout,
                                  in_place, &workspace[threadid(), 0])
            for g in range(groups):
                sgemm_kernel_rows_b(group_out, columns, rows, &weight[g * group_out, 0, 0, 0],
                                    rows, phases + g * group_in * layout.channel, offsets,
                                    products, columns)
                for o in range(group_out):
                    out_plane = &output[n, g * group_out + o, 0, 0]
                    for oh in range(out_h):
                        if accumulate:
                            for p in range(out_w):
                                out_plane[oh * out_w + p] += products[o * columns
                                                                      + oh * extent_w + p]
                        else:
                            memcpy(out_plane + oh * out_w, products + o * columns
                                   + oh * extent_w, out_w * sizeof(float))
                    if has_bias:
                        for p in range(out_h * out_w):
                            out_plane[p] += bias[g * group_out + o]
                    if relu:
                        rectify_run(out_plane, out_h * out_w)
    free(offsets)


def conv2d_backward_weight_implicit(const float[:, :, :, ::1] grad_output,
                                    const float[:, :, :, ::1] input,
                                    float[:, :, :, ::1] partials, Py_ssize_t kernel_h,
                                    Py_ssize_t kernel_w, Py_ssize_t stride_h,
                                    Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                                    Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                                    float[:, ::1] workspace, int n_threads):
    """partials[k, g] += the weight gradient of group g over chunk k of the batch, as
    (C_in / groups * kH * kW, gradient_pitch(C_out / groups)): the transpose of
    conv2d_backward_weight's, with the columns past C_out / groups zero. Each chunk holds
    the consecutive images chunk * N // n_chunks up to the next chunk's first, so the
    sums do not depend on the thread count.

    The gradient of tap row r of the column matrix (conv2d_forward_implicit's runs of the
    phase planes) is sum over q of X[r, q] grad_output[o, q], with grad_output laid out
    extent_w pixels to a row like the products, zero in the extra columns: _gemm_kernel.h
    multiplies the runs where they lie with that transposed gradient, in panels.
    """
    cdef Py_ssize_t batch = input.shape[0], in_channels = input.shape[1]
    cdef Py_ssize_t height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = grad_output.shape[1], out_h = grad_output.shape[2]
    cdef Py_ssize_t out_w = grad_output.shape[3]
    cdef Py_ssize_t n_chunks = partials.shape[0], groups = partials.shape[1]
    cdef Py_ssize_t rows = partials.shape[2], pitch = partials.shape[3]
    cdef Py_ssize_t group_in = in_channels // groups, group_out = out_channels // groups
    cdef Phases layout = phases_of(out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                                   pad_w, dilation_h, dilation_w)
    cdef Py_ssize_t extent_w = layout.extent_w, pixels = out_h * extent_w
    # The rows read here end with the pixels: a 1x1 layer's input can be read in place.
    cdef bint in_place = reads_input_as_columns(kernel_h, kernel_w, stride_h, stride_w, pad_h,
                                                pad_w, height, width, out_h, out_w)
    cdef Py_ssize_t chunk, n, g, o, oh, ow, start
    cdef const float* phases
    cdef float* gradient
    cdef const float* source
    cdef Py_ssize_t* offsets = tap_offsets(rows, kernel_h, kernel_w, dilation_h, dilation_w,
                                           layout)
    if offsets == NULL:
        raise MemoryError()
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            gradient = &workspace[threadid(), 0] + phases_size(layout, in_channels)
            for n in range(chunk * batch // n_chunks, (chunk + 1) * batch // n_chunks):
                phases = image_phases(&input[n, 0, 0, 0], in_channels, height, width, layout,
                                      in_place, &workspace[threadid(), 0])
                for g in range(groups):
                    # (pixels, pitch) in panels of PANEL columns, the last LANES wide when
                    # pitch is not a multiple of PANEL, as the kernel reads B.
                    memset(gradient, 0, pixels * pitch * sizeof(float))
                    for o in range(group_out):
                        start = o - o % PANEL
                        source = &grad_output[n, g * group_out + o, 0, 0]
                        for oh in range(out_h):
                            for ow in range(out_w):
                                gradient[start * pixels + (oh * extent_w + ow)
                                         * min(PANEL, pitch - start) + o - start] = \
                                    source[oh * out_w + ow]
                    sgemm_kernel_rows_a(rows, pitch, pixels,
                                        phases + g * group_in * layout.channel, offsets,
                                        gradient, &partials[chunk, g, 0, 0], pitch)
    free(offsets)


def conv2d_forward(const floating[:, :, :, ::1] input, const floating[:, :, :, ::1] weight,
                   const floating[::1] bias, bint relu, floating[:, :, :, ::1] output,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                   Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups,
                   Py_ssize_t per_gemm, floating[:, ::1] workspace, int n_threads):
    """output <- conv2d(input, weight) + bias (bias may be None), rectified with relu.

    Bias and ReLU go onto each output plane right after its block's GEMM, while it is
    still in cache, rather than in another pass over the whole output.
    """
    cdef Py_ssize_t batch = input.shape[0], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t rows = group_in * kernel_h * kernel_w, pixels = out_h * out_w
    cdef Py_ssize_t n_blocks = (batch + per_gemm - 1) // per_gemm
    cdef bint has_bias = bias is not None
    cdef bint direct_columns = reads_input_as_columns(kernel_h, kernel_w, stride_h, stride_w,
                                                      pad_h, pad_w, height, width, out_h, out_w)
    cdef Py_ssize_t block, first, count, width_block, n, b, g, c, p
    cdef bint direct_output
    cdef const floating* columns
    cdef floating* buffer
    cdef floating* product
    cdef floating* out_plane
    with nogil:
        for block in prange(n_blocks, num_threads=n_threads, schedule="static"):
            first = block * per_gemm
            count = min(per_gemm, batch - first)
            width_block = count * pixels
            buffer = &workspace[threadid(), 0]
            product = buffer + rows * width_block
            direct_output = count == 1
            for g in range(groups):
                if direct_output:
                    product = &output[first, g * group_out, 0, 0]
                columns = column_matrix(&input[first, g * group_in, 0, 0],
                                        input.shape[1] * height * width, count, direct_columns,
                                        group_in, height, width, kernel_h, kernel_w, stride_h,
                                        stride_w, pad_h, pad_w, dilation_h, dilation_w, out_h,
                                        out_w, buffer)
                gemm(False, False, <int>group_out, <int>width_block, <int>rows, <floating>1,
                     &weight[g * group_out, 0, 0, 0], <int>rows, columns, <int>width_block,
                     <floating>0, product, <int>width_block)
                for b in range(count):
                    n = first + b
                    for c in range(group_out):
                        out_plane = &output[n, g * group_out + c, 0, 0]
                        if not direct_output:
                            memcpy(out_plane, product + c * width_block + b * pixels,
                                   pixels * sizeof(floating))
                        if has_bias:
                            for p in range(pixels):
                                out_plane[p] += bias[g * group_out + c]
                        if relu:
                            rectify_run(out_plane, pixels)


def conv2d_backward_input(const floating[:, :, :, ::1] grad_output,
                          const floating[:, :, :, ::1] weight, floating[:, :, :, ::1] grad_input,
                          Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                          Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                          Py_ssize_t groups, Py_ssize_t per_gemm, floating[:, ::1] workspace,
                          int n_threads):
    """grad_input += the input gradient: a GEMM with the transposed weight, then col2im."""
    cdef Py_ssize_t batch = grad_input.shape[0], height = grad_input.shape[2]
    cdef Py_ssize_t width = grad_input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t rows = group_in * kernel_h * kernel_w, pixels = out_h * out_w
    cdef Py_ssize_t n_blocks = (batch + per_gemm - 1) // per_gemm
    cdef bint direct_columns = reads_input_as_columns(kernel_h, kernel_w, stride_h, stride_w,
                                                      pad_h, pad_w, height, width, out_h, out_w)
    cdef Py_ssize_t block, first, count, width_block, b, g
    cdef const floating* gradients
    cdef floating* buffer
    cdef floating* gathered
    with nogil:
        for block in prange(n_blocks, num_threads=n_threads, schedule="static"):
            first = block * per_gemm
            count = min(per_gemm, batch - first)
            width_block = count * pixels
            buffer = &workspace[threadid(), 0]
            gathered = buffer + rows * width_block
            for g in range(groups):
                if count == 1:
                    gradients = &grad_output[first, g * group_out, 0, 0]
                else:
                    gather_planes(&grad_output[first, g * group_out, 0, 0],
                                  out_channels * pixels, count, group_out, pixels, gathered)
                    gradients = gathered
                if direct_columns and count == 1:
                    gemm(True, False, <int>rows, <int>pixels, <int>group_out, <floating>1,
                         &weight[g * group_out, 0, 0, 0], <int>rows, gradients, <int>pixels,
                         <floating>1, &grad_input[first, g * group_in, 0, 0], <int>pixels)
                    continue
                gemm(True, False, <int>rows, <int>width_block, <int>group_out, <floating>1,
                     &weight[g * group_out, 0, 0, 0], <int>rows, gradients, <int>width_block,
                     <floating>0, buffer, <int>width_block)
                for b in range(count):
                    col2im_image(buffer + b * pixels, group_in, height, width, kernel_h,
                                 kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                                 dilation_w, out_h, out_w, &grad_input[first + b, g * group_in, 0, 0],
                                 width_block)


def conv2d_backward_weight(const floating[:, :, :, ::1] grad_output,
                           const floating[:, :, :, ::1] input, const floating[:, :, :, ::1] weight,
                           floating[:, :, ::1] grad_weight_partials,
                           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                           Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                           Py_ssize_t groups, Py_ssize_t per_gemm, floating[:, ::1] workspace,
                           int n_threads):
    """grad_weight_partials[k] += the weight gradient of chunk k of the batch.

    weight gives the kernel's shape only. The batch is cut into
    grad_weight_partials.shape[0] fixed chunks of consecutive images (partials shaped
    (n_chunks, C_out, C_in / groups * kH * kW)), so the sums do not depend on the
    thread count.
    """
    cdef Py_ssize_t batch = input.shape[0], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_channels = weight.shape[0], group_in = weight.shape[1]
    cdef Py_ssize_t kernel_h = weight.shape[2], kernel_w = weight.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t group_out = out_channels // groups
    cdef Py_ssize_t rows = group_in * kernel_h * kernel_w, pixels = out_h * out_w
    cdef Py_ssize_t n_chunks = grad_weight_partials.shape[0]
    cdef bint direct_columns = reads_input_as_columns(kernel_h, kernel_w, stride_h, stride_w,
                                                      pad_h, pad_w, height, width, out_h, out_w)
    cdef Py_ssize_t chunk, first, last, count, width_block, b, g
    cdef floating* buffer
    cdef floating* gathered
    cdef const floating* columns
    cdef const floating* gradients
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            buffer = &workspace[threadid(), 0]
            first = chunk * batch // n_chunks
            last = (chunk + 1) * batch // n_chunks
            while first < last:
                count = min(per_gemm, last - first)
                width_block = count * pixels
                gathered = buffer + rows * width_block
                for g in range(groups):
                    if count == 1:
                        gradients = &grad_output[first, g * group_out, 0, 0]
                    else:
                        gather_planes(&grad_output[first, g * group_out, 0, 0],
                                      out_channels * pixels, count, group_out, pixels, gathered)
                        gradients = gathered
                    columns = column_matrix(&input[first, g * group_in, 0, 0],
                                            input.shape[1] * height * width, count,
                                            direct_columns, group_in, height, width, kernel_h,
                                            kernel_w, stride_h, stride_w, pad_h, pad_w,
                                            dilation_h, dilation_w, out_h, out_w, buffer)
                    gemm(False, True, <int>group_out, <int>rows, <int>width_block, <floating>1,
                         gradients, <int>width_block, columns, <int>width_block, <floating>1,
                         &grad_weight_partials[chunk, g * group_out, 0], <int>rows)
                first = first + count
