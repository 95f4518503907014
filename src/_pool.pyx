# cython: boundscheck=False, wraparound=False, cdivision=True
"""Pooling: max pooling with argmax switches, average pooling, adaptive pooling, max
unpooling, and their backward passes.

Each def kernel runs one prange over the N * C planes and calls a cdef function for one
plane, so a thread owns whole output planes (whole grad_input planes in the backward
scatters): overlapping windows never race and results do not depend on the thread count.
Shapes: input (N, C, H, W), output (N, C, out_h, out_w); pad_h / pad_w are the top / left
padding; indices hold the flat position h * W + w of each maximum inside its own plane.

The backward scatters and unpooling overwrite their output: each thread zeroes a plane just
before it scatters into it, so callers pass np.empty arrays. Zero-filled arrays from calloc
arrive as fresh pages every call, and faulting them in cost more than the scatter itself.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset
from _common cimport beats, floating


cdef enum:
    # Planes per task of max_pool2d_2x2_forward: narrow planes are vectorised across these.
    PLANE_GROUP = 16


# --- windows --------------------------------------------------------------------------

cdef inline Py_ssize_t first_tap(Py_ssize_t start, Py_ssize_t dilation) noexcept nogil:
    """The first position start + i * dilation (i >= 0) that is not negative."""
    if start >= 0:
        return start
    return start + (-start + dilation - 1) // dilation * dilation


cdef inline Py_ssize_t window_argmax(const floating* plane, Py_ssize_t width,
                                     Py_ssize_t h_start, Py_ssize_t h_end, Py_ssize_t step_h,
                                     Py_ssize_t w_start, Py_ssize_t w_end,
                                     Py_ssize_t step_w) noexcept nogil:
    """Flat index of the first maximum in a non-empty window, or of its first NaN.

    The window holds rows h_start, h_start + step_h, ... < h_end and likewise columns;
    row-major order decides which of equal maxima is first.
    """
    cdef Py_ssize_t h, w, best_index = h_start * width + w_start
    cdef floating value, best = plane[best_index]
    if best != best:
        return best_index
    h = h_start
    while h < h_end:
        w = w_start
        while w < w_end:
            value = plane[h * width + w]
            if value != value:
                return h * width + w
            # Selects rather than a branch: on real data "value > best" is a coin flip.
            best_index = h * width + w if value > best else best_index
            best = value if value > best else best
            w += step_w
        h += step_h
    return best_index


cdef inline Py_ssize_t avg_window(Py_ssize_t o, Py_ssize_t size, Py_ssize_t kernel,
                                  Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t* start,
                                  Py_ssize_t* end) noexcept nogil:
    """Clip average-pooling window o to the input as [start, end).

    Returns the window's length counted within input + padding, PyTorch's divisor
    with count_include_pad: with ceil_mode the last window may run past the padding too.
    """
    cdef Py_ssize_t lo = o * stride - pad
    cdef Py_ssize_t hi = min(lo + kernel, size + pad)
    start[0] = max(lo, 0)
    end[0] = min(hi, size)
    return hi - lo


cdef inline Py_ssize_t adaptive_start(Py_ssize_t o, Py_ssize_t out_size,
                                      Py_ssize_t size) noexcept nogil:
    """floor(o * size / out_size)"""
    return o * size // out_size


cdef inline Py_ssize_t adaptive_end(Py_ssize_t o, Py_ssize_t out_size,
                                    Py_ssize_t size) noexcept nogil:
    """ceil((o + 1) * size / out_size)"""
    return ((o + 1) * size + out_size - 1) // out_size


# --- one plane ------------------------------------------------------------------------

cdef void max_pool_plane(const floating* input, Py_ssize_t height, Py_ssize_t width,
                         floating* output, int64_t* indices, Py_ssize_t out_h, Py_ssize_t out_w,
                         Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                         Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                         Py_ssize_t dilation_h, Py_ssize_t dilation_w) noexcept nogil:
    cdef Py_ssize_t oh, ow, h_start, h_end, w_start, w_end, best
    for oh in range(out_h):
        h_start = oh * stride_h - pad_h
        h_end = min(h_start + (kernel_h - 1) * dilation_h + 1, height)
        h_start = first_tap(h_start, dilation_h)
        for ow in range(out_w):
            w_start = ow * stride_w - pad_w
            w_end = min(w_start + (kernel_w - 1) * dilation_w + 1, width)
            w_start = first_tap(w_start, dilation_w)
            best = window_argmax(input, width, h_start, h_end, dilation_h,
                                 w_start, w_end, dilation_w)
            output[oh * out_w + ow] = input[best]
            indices[oh * out_w + ow] = best


cdef inline void max_pool_2x2_run(const floating* input, Py_ssize_t width, Py_ssize_t oh,
                                  floating* output_row, int64_t* indices_row, Py_ssize_t start,
                                  Py_ssize_t stop) noexcept nogil:
    """Outputs start <= ow < stop of row oh for kernel 2, stride 2, no padding, dilation 1."""
    cdef Py_ssize_t ow, corner
    cdef floating best, lower
    # int, not Py_ssize_t: 32-bit lanes like the float32 values, so the selects vectorise
    # at full width (twice as fast); callers keep width + 1 within an int.
    cdef int best_offset, lower_offset
    for ow in range(start, stop):
        corner = 2 * oh * width + 2 * ow
        best, best_offset = input[corner], 0
        if beats(input[corner + 1], best):
            best, best_offset = input[corner + 1], 1
        lower, lower_offset = input[corner + width], <int>width
        if beats(input[corner + width + 1], lower):
            lower, lower_offset = input[corner + width + 1], <int>width + 1
        if beats(lower, best):
            best, best_offset = lower, lower_offset
        output_row[ow] = best
        indices_row[ow] = corner + best_offset


cdef void max_pool_2x2_plane(const floating* input, Py_ssize_t width, floating* output,
                             int64_t* indices, Py_ssize_t out_h,
                             Py_ssize_t out_w) noexcept nogil:
    """max_pool_plane for kernel 2, stride 2, no padding, dilation 1 and whole windows."""
    # The compiler vectorises a run 8 floats (4 doubles) at a time, then 4 (2), and does
    # what is left one output at a time, where beats() turns into unpredictable branches:
    # 15x15 planes took twice as long. So each row runs whole blocks of 8 or 4 outputs,
    # and a row end short of a block is done as one more block ending there, which
    # rewrites a few outputs with the same values.
    cdef Py_ssize_t block = 8 if out_w >= 8 else (4 if out_w >= 4 else 1)
    cdef Py_ssize_t whole = out_w - out_w % block
    cdef Py_ssize_t oh
    for oh in range(out_h):
        max_pool_2x2_run(input, width, oh, output + oh * out_w, indices + oh * out_w, 0, whole)
        if whole < out_w:
            max_pool_2x2_run(input, width, oh, output + oh * out_w, indices + oh * out_w,
                             out_w - block, out_w)


cdef void max_pool_2x2_across(const floating* input, Py_ssize_t plane_size, Py_ssize_t width,
                              floating* output, int64_t* indices, Py_ssize_t out_h,
                              Py_ssize_t out_w, Py_ssize_t planes) noexcept nogil:
    """max_pool_2x2_plane for up to PLANE_GROUP consecutive planes too narrow for its
    blocks of 4 (out_w < 4). Each output position is done for all the planes at once: its
    windows are copied to contiguous rows, where the compiler vectorises the comparisons
    (it would not with the planes' stride), and the results copied back. One plane at a
    time, 7x7 planes took as long as 15x15 ones, with 4.6 times the data."""
    cdef Py_ssize_t oh, ow, j, corner, at, out_at
    cdef Py_ssize_t out_size = out_h * out_w
    cdef floating window[4][PLANE_GROUP]
    cdef floating best[PLANE_GROUP]
    cdef int offset[PLANE_GROUP]
    cdef floating top, lower
    cdef int top_offset, lower_offset
    for oh in range(out_h):
        for ow in range(out_w):
            corner = 2 * oh * width + 2 * ow
            for j in range(planes):
                at = j * plane_size + corner
                window[0][j] = input[at]
                window[1][j] = input[at + 1]
                window[2][j] = input[at + width]
                window[3][j] = input[at + width + 1]
            for j in range(planes):
                top, top_offset = window[0][j], 0
                if beats(window[1][j], top):
                    top, top_offset = window[1][j], 1
                lower, lower_offset = window[2][j], <int>width
                if beats(window[3][j], lower):
                    lower, lower_offset = window[3][j], <int>width + 1
                if beats(lower, top):
                    top, top_offset = lower, lower_offset
                best[j], offset[j] = top, top_offset
            out_at = oh * out_w + ow
            for j in range(planes):
                output[j * out_size + out_at] = best[j]
                indices[j * out_size + out_at] = corner + offset[j]


cdef void avg_pool_plane(const floating* input, Py_ssize_t height, Py_ssize_t width,
                         floating* output, Py_ssize_t out_h, Py_ssize_t out_w,
                         Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                         Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                         bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    cdef Py_ssize_t oh, ow, h, w, h_start, h_end, w_start, w_end, pool_h, pool_w, divisor
    cdef double total
    for oh in range(out_h):
        pool_h = avg_window(oh, height, kernel_h, stride_h, pad_h, &h_start, &h_end)
        for ow in range(out_w):
            pool_w = avg_window(ow, width, kernel_w, stride_w, pad_w, &w_start, &w_end)
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                divisor = pool_h * pool_w
            else:
                divisor = (h_end - h_start) * (w_end - w_start)
            total = 0
            for h in range(h_start, h_end):
                for w in range(w_start, w_end):
                    total += input[h * width + w]
            output[oh * out_w + ow] = <floating>(total / divisor)


cdef void avg_pool_backward_plane(const floating* grad_output, Py_ssize_t out_h,
                                  Py_ssize_t out_w, floating* grad_input, Py_ssize_t height,
                                  Py_ssize_t width, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                                  Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                                  Py_ssize_t pad_w, bint count_include_pad,
                                  Py_ssize_t divisor_override) noexcept nogil:
    cdef Py_ssize_t oh, ow, h, w, h_start, h_end, w_start, w_end, pool_h, pool_w, divisor
    cdef floating delta
    memset(grad_input, 0, height * width * sizeof(floating))
    for oh in range(out_h):
        pool_h = avg_window(oh, height, kernel_h, stride_h, pad_h, &h_start, &h_end)
        for ow in range(out_w):
            pool_w = avg_window(ow, width, kernel_w, stride_w, pad_w, &w_start, &w_end)
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                divisor = pool_h * pool_w
            else:
                divisor = (h_end - h_start) * (w_end - w_start)
            delta = grad_output[oh * out_w + ow] / divisor
            # Rows innermost: GCC would vectorise a loop along the row and pay its setup,
            # more than the two or three additions, on every window (40% slower).
            for w in range(w_start, w_end):
                for h in range(h_start, h_end):
                    grad_input[h * width + w] += delta


cdef void adaptive_avg_pool_plane(const floating* input, Py_ssize_t height, Py_ssize_t width,
                                  floating* output, Py_ssize_t out_h,
                                  Py_ssize_t out_w) noexcept nogil:
    cdef Py_ssize_t oh, ow, h, w, h_start, h_end, w_start, w_end
    cdef double total
    for oh in range(out_h):
        h_start = adaptive_start(oh, out_h, height)
        h_end = adaptive_end(oh, out_h, height)
        for ow in range(out_w):
            w_start = adaptive_start(ow, out_w, width)
            w_end = adaptive_end(ow, out_w, width)
            total = 0
            for h in range(h_start, h_end):
                for w in range(w_start, w_end):
                    total += input[h * width + w]
            output[oh * out_w + ow] = <floating>(total / ((h_end - h_start) * (w_end - w_start)))


cdef void adaptive_avg_pool_backward_plane(const floating* grad_output, Py_ssize_t out_h,
                                           Py_ssize_t out_w, floating* grad_input,
                                           Py_ssize_t height, Py_ssize_t width) noexcept nogil:
    cdef Py_ssize_t oh, ow, h, w, h_start, h_end, w_start, w_end
    cdef floating delta
    memset(grad_input, 0, height * width * sizeof(floating))
    for oh in range(out_h):
        h_start = adaptive_start(oh, out_h, height)
        h_end = adaptive_end(oh, out_h, height)
        for ow in range(out_w):
            w_start = adaptive_start(ow, out_w, width)
            w_end = adaptive_end(ow, out_w, width)
            delta = grad_output[oh * out_w + ow] / ((h_end - h_start) * (w_end - w_start))
            for h in range(h_start, h_end):
                for w in range(w_start, w_end):
                    grad_input[h * width + w] += delta


cdef void adaptive_max_pool_plane(const floating* input, Py_ssize_t height, Py_ssize_t width,
                                  floating* output, int64_t* indices, Py_ssize_t out_h,
                                  Py_ssize_t out_w) noexcept nogil:
    cdef Py_ssize_t oh, ow, h_start, h_end, best
    for oh in range(out_h):
        h_start = adaptive_start(oh, out_h, height)
        h_end = adaptive_end(oh, out_h, height)
        for ow in range(out_w):
            best = window_argmax(input, width, h_start, h_end, 1, adaptive_start(ow, out_w, width),
                                 adaptive_end(ow, out_w, width), 1)
            output[oh * out_w + ow] = input[best]
            indices[oh * out_w + ow] = best


# --- kernels: one prange over the N * C planes -----------------------------------------

def max_pool2d_forward(const floating[:, :, :, ::1] input, floating[:, :, :, ::1] output,
                       int64_t[:, :, :, ::1] indices, Py_ssize_t kernel_h, Py_ssize_t kernel_w,
                       Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h,
                       Py_ssize_t pad_w, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                       int n_threads):
    """output, indices <- max_pool2d(input); every window must reach the input."""
    cdef Py_ssize_t channels = input.shape[1], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(input.shape[0] * channels, num_threads=n_threads, schedule="static"):
            n = plane // channels
            c = plane % channels
            max_pool_plane(&input[n, c, 0, 0], height, width, &output[n, c, 0, 0],
                           &indices[n, c, 0, 0], out_h, out_w, kernel_h, kernel_w,
                           stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)


def max_pool2d_2x2_forward(const floating[:, :, :, ::1] input, floating[:, :, :, ::1] output,
                           int64_t[:, :, :, ::1] indices, int n_threads):
    """max_pool2d_forward for kernel 2, stride 2, no padding, dilation 1, when every
    window lies whole inside the input (2 * out_h <= H, 2 * out_w <= W < 2**31 - 1)."""
    cdef Py_ssize_t width = input.shape[3], plane_size = input.shape[2] * width
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t out_size = out_h * out_w
    cdef Py_ssize_t planes = input.shape[0] * input.shape[1]
    cdef Py_ssize_t group, first, count, plane
    if planes == 0 or out_size == 0:
        return
    # Planes are contiguous, one after another, so a group of them is one strided block.
    cdef const floating* source = &input[0, 0, 0, 0]
    cdef floating* target = &output[0, 0, 0, 0]
    cdef int64_t* switches = &indices[0, 0, 0, 0]
    with nogil:
        for group in prange((planes + PLANE_GROUP - 1) // PLANE_GROUP, num_threads=n_threads,
                            schedule="static"):
            first = group * PLANE_GROUP
            count = min(PLANE_GROUP, planes - first)
            if out_w < 4:
                max_pool_2x2_across(source + first * plane_size, plane_size, width,
                                    target + first * out_size, switches + first * out_size,
                                    out_h, out_w, count)
            else:
                for plane in range(first, first + count):
                    max_pool_2x2_plane(source + plane * plane_size, width,
                                       target + plane * out_size, switches + plane * out_size,
                                       out_h, out_w)


def max_pool2d_backward(const floating[:, :, :, ::1] grad_output,
                        const int64_t[:, :, :, ::1] indices, floating[:, :, :, ::1] grad_input,
                        int n_threads):
    """grad_input <- grad_output summed into each plane at its indices (a scatter).

    The backward of max_pool2d and adaptive_max_pool2d; indices must lie in [0, H * W).
    """
    cdef Py_ssize_t channels = grad_input.shape[1]
    cdef Py_ssize_t size = grad_output.shape[2] * grad_output.shape[3]
    cdef Py_ssize_t plane_size = grad_input.shape[2] * grad_input.shape[3]
    cdef Py_ssize_t plane, n, c, i
    cdef const floating* gradient
    cdef const int64_t* switches
    cdef floating* target
    with nogil:
        for plane in prange(grad_input.shape[0] * channels, num_threads=n_threads,
                            schedule="static"):
            n = plane // channels
            c = plane % channels
            gradient = &grad_output[n, c, 0, 0]
            switches = &indices[n, c, 0, 0]
            target = &grad_input[n, c, 0, 0]
            memset(target, 0, plane_size * sizeof(floating))
            for i in range(size):
                target[switches[i]] += gradient[i]


def avg_pool2d_forward(const floating[:, :, :, ::1] input, floating[:, :, :, ::1] output,
                       Py_ssize_t kernel_h, Py_ssize_t kernel_w, Py_ssize_t stride_h,
                       Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                       bint count_include_pad, Py_ssize_t divisor_override, int n_threads):
    """output <- avg_pool2d(input), window sums in double; divisor_override 0 means none."""
    cdef Py_ssize_t channels = input.shape[1], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(input.shape[0] * channels, num_threads=n_threads, schedule="static"):
            n = plane // channels
            c = plane % channels
            avg_pool_plane(&input[n, c, 0, 0], height, width, &output[n, c, 0, 0], out_h, out_w,
                           kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                           count_include_pad, divisor_override)


def avg_pool2d_backward(const floating[:, :, :, ::1] grad_output,
                        floating[:, :, :, ::1] grad_input, Py_ssize_t kernel_h,
                        Py_ssize_t kernel_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
                        Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad,
                        Py_ssize_t divisor_override, int n_threads):
    """grad_input <- the avg_pool2d input gradient; divisor_override 0 means none."""
    cdef Py_ssize_t channels = grad_input.shape[1]
    cdef Py_ssize_t height = grad_input.shape[2], width = grad_input.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(grad_input.shape[0] * channels, num_threads=n_threads,
                            schedule="static"):
            n = plane // channels
            c = plane % channels
            avg_pool_backward_plane(&grad_output[n, c, 0, 0], out_h, out_w,
                                    &grad_input[n, c, 0, 0], height, width, kernel_h, kernel_w,
                                    stride_h, stride_w, pad_h, pad_w, count_include_pad,
                                    divisor_override)


def adaptive_avg_pool2d_forward(const floating[:, :, :, ::1] input,
                                floating[:, :, :, ::1] output, int n_threads):
    """output <- adaptive_avg_pool2d(input) for output's size, window sums in double."""
    cdef Py_ssize_t channels = input.shape[1], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(input.shape[0] * channels, num_threads=n_threads, schedule="static"):
            n = plane // channels
            c = plane % channels
            adaptive_avg_pool_plane(&input[n, c, 0, 0], height, width, &output[n, c, 0, 0],
                                    out_h, out_w)


def adaptive_avg_pool2d_backward(const floating[:, :, :, ::1] grad_output,
                                 floating[:, :, :, ::1] grad_input, int n_threads):
    """grad_input <- the adaptive_avg_pool2d input gradient."""
    cdef Py_ssize_t channels = grad_input.shape[1]
    cdef Py_ssize_t height = grad_input.shape[2], width = grad_input.shape[3]
    cdef Py_ssize_t out_h = grad_output.shape[2], out_w = grad_output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(grad_input.shape[0] * channels, num_threads=n_threads,
                            schedule="static"):
            n = plane // channels
            c = plane % channels
            adaptive_avg_pool_backward_plane(&grad_output[n, c, 0, 0], out_h, out_w,
                                             &grad_input[n, c, 0, 0], height, width)


def adaptive_max_pool2d_forward(const floating[:, :, :, ::1] input,
                                floating[:, :, :, ::1] output, int64_t[:, :, :, ::1] indices,
                                int n_threads):
    """output, indices <- adaptive_max_pool2d(input) for output's size."""
    cdef Py_ssize_t channels = input.shape[1], height = input.shape[2], width = input.shape[3]
    cdef Py_ssize_t out_h = output.shape[2], out_w = output.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(input.shape[0] * channels, num_threads=n_threads, schedule="static"):
            n = plane // channels
            c = plane % channels
            adaptive_max_pool_plane(&input[n, c, 0, 0], height, width, &output[n, c, 0, 0],
                                    &indices[n, c, 0, 0], out_h, out_w)


def max_unpool2d_forward(const floating[:, :, :, ::1] input, const int64_t[:, :, :, ::1] indices,
                         floating[:, :, :, ::1] output, int n_threads):
    """output <- zeros, then output[n, c].flat[indices[n, c, i, j]] = input[n, c, i, j].

    indices must lie in [0, out_h * out_w); of repeated indices the last in row-major
    order wins.
    """
    cdef Py_ssize_t channels = input.shape[1], size = input.shape[2] * input.shape[3]
    cdef Py_ssize_t plane_size = output.shape[2] * output.shape[3]
    cdef Py_ssize_t plane, n, c, i
    cdef const floating* values
    cdef const int64_t* switches
    cdef floating* target
    with nogil:
        for plane in prange(input.shape[0] * channels, num_threads=n_threads, schedule="static"):
            n = plane // channels
            c = plane % channels
            values = &input[n, c, 0, 0]
            switches = &indices[n, c, 0, 0]
            target = &output[n, c, 0, 0]
            memset(target, 0, plane_size * sizeof(floating))
            for i in range(size):
                target[switches[i]] = values[i]


def max_unpool2d_backward(const floating[:, :, :, ::1] grad_output,
                          const int64_t[:, :, :, ::1] indices, floating[:, :, :, ::1] grad_input,
                          int n_threads):
    """grad_input[n, c, i, j] = grad_output[n, c].flat[indices[n, c, i, j]]: a gather."""
    cdef Py_ssize_t channels = grad_input.shape[1]
    cdef Py_ssize_t size = grad_input.shape[2] * grad_input.shape[3]
    cdef Py_ssize_t plane, n, c, i
    cdef const floating* gradient
    cdef const int64_t* switches
    cdef floating* target
    with nogil:
        for plane in prange(grad_input.shape[0] * channels, num_threads=n_threads,
                            schedule="static"):
            n = plane // channels
            c = plane % channels
            gradient = &grad_output[n, c, 0, 0]
            switches = &indices[n, c, 0, 0]
            target = &grad_input[n, c, 0, 0]
            for i in range(size):
                target[i] = gradient[switches[i]]
