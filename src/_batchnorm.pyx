# cython: boundscheck=False, wraparound=False, cdivision=True
"""Batch normalisation over (N, L) per channel of an (N, C, L) array, forward and backward.

A thread owns channels. Each kernel makes one pass for the per-channel sums (in double,
so the variance can come from the sum of squares) and one pass for the output, where a
NumPy composition makes five or more. A ReLU or GELU after the normalisation can be
applied in the same pass (forward) and its gradient taken in the same passes (backward),
which saves the activation layer's own two passes over the activations. GELU's backward
recomputes its input from the normalisation's input rather than keeping it.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt
from _common cimport dot, floating, gelu, gelu_gradient, rectify, total

# The activation argument: what follows the normalisation in the same pass.
cpdef enum:
    NO_ACTIVATION = 0
    RELU = 1
    GELU = 2
    GELU_TANH = 3


def forward_train(const floating[:, :, ::1] input, const floating[::1] weight,
                  const floating[::1] bias, double eps, int activation,
                  floating[:, :, ::1] output, double[::1] mean, double[::1] var, int n_threads):
    """output <- (input - mean) / sqrt(var + eps) * weight + bias with the batch statistics,
    which come back in mean and var (biased); then, by activation, rectify(output) (RELU,
    as np.maximum(output, 0)) or GELU (GELU, GELU_TANH: as _activation.gelu_forward).
    weight and bias may be None."""
    cdef Py_ssize_t batch = input.shape[0], channels = input.shape[1], length = input.shape[2]
    cdef bint affine = weight is not None
    cdef bint relu = activation == RELU
    cdef bint gelu_after = activation == GELU or activation == GELU_TANH
    cdef double count = batch * length
    cdef Py_ssize_t c, n, i
    cdef double sum_x, sum_squares, mu, variance
    cdef floating scale, shift
    cdef const floating* row
    cdef floating* out_row
    with nogil:
        for c in prange(channels, num_threads=n_threads, schedule="static"):
            sum_x = 0
            sum_squares = 0
            for n in range(batch):
                row = &input[n, c, 0]
                sum_x = sum_x + total(row, length)
                sum_squares = sum_squares + dot(row, row, 1, length)
            mu = sum_x / count
            variance = max(sum_squares / count - mu * mu, 0.0)
            mean[c] = mu
            var[c] = variance
            scale = <floating>(1 / sqrt(variance + eps))
            if affine:
                scale = scale * weight[c]
            shift = <floating>(-mu) * scale + (bias[c] if affine else 0)
            for n in range(batch):
                row = &input[n, c, 0]
                out_row = &output[n, c, 0]
                if relu:
                    for i in range(length):
                        out_row[i] = rectify(row[i] * scale + shift)
                else:
                    for i in range(length):
                        out_row[i] = row[i] * scale + shift
                    if gelu_after:
                        gelu(out_row, out_row, length, activation == GELU_TANH)


def backward(const floating[:, :, ::1] grad_output, const floating[:, :, ::1] input,
             const floating[::1] weight, const floating[::1] bias, const double[::1] mean,
             const double[::1] inv_std, int activation, const floating[:, :, ::1] relu_output,
             floating[:, :, ::1] grad_input, double[::1] grad_weight, double[::1] grad_bias,
             int n_threads):
    """Gradients through forward_train with its batch statistics (mean, inv_std) and
    activation.

    grad_weight[c] = sum(g * x_hat), grad_bias[c] = sum(g), and, if grad_input is not
    None, grad_input = weight * inv_std * (g - mean(g) - x_hat * mean(g * x_hat)).
    weight and bias may be None (no affine transform). With RELU, relu_output is
    forward_train's output and g is grad_output * (relu_output > 0), as the ReLU layer
    computes it; with GELU or GELU_TANH, g is grad_output times GELU's derivative at
    the normalised values, which are computed again as forward_train computed them. With
    an activation grad_input is required, and holds g between the passes.
    """
    cdef Py_ssize_t batch = input.shape[0], channels = input.shape[1], length = input.shape[2]
    cdef bint affine = weight is not None, want_input = grad_input is not None
    cdef bint shifted = bias is not None
    cdef bint relu = activation == RELU
    cdef bint gelu_after = activation == GELU or activation == GELU_TANH
    cdef double count = batch * length
    cdef Py_ssize_t c, n, i
    cdef double sum_g, sum_gx, scale
    cdef floating k_grad, k_input, k_const, normal_scale, normal_shift
    cdef const floating* g_row
    cdef const floating* x_row
    cdef const floating* y_row
    cdef floating* out_row
    with nogil:
        for c in prange(channels, num_threads=n_threads, schedule="static"):
            sum_g = 0
            sum_gx = 0
            # forward_train's scale and shift, in the same operations.
            normal_scale = <floating>inv_std[c]
            if affine:
                normal_scale = normal_scale * weight[c]
            normal_shift = <floating>(-mean[c]) * normal_scale + (bias[c] if shifted else 0)
            for n in range(batch):
                g_row = &grad_output[n, c, 0]
                if gelu_after:
                    # The gradient at the recomputed normalised row, summed while in cache.
                    out_row = &grad_input[n, c, 0]
                    x_row = &input[n, c, 0]
                    for i in range(length):
                        out_row[i] = x_row[i] * normal_scale + normal_shift
                    gelu_gradient(g_row, out_row, out_row, length, activation == GELU_TANH)
                    g_row = out_row
                if relu:
                    # The masked row, summed while it is still in cache.
                    out_row = &grad_input[n, c, 0]
                    y_row = &relu_output[n, c, 0]
                    for i in range(length):
                        # A multiply, not a select, as nn.ReLU takes it (NaN stays NaN);
                        # by a float, as a C comparison's int compiles to a slow loop.
                        out_row[i] = g_row[i] * (<floating>1 if y_row[i] > 0 else <floating>0)
                    g_row = out_row
                sum_g = sum_g + total(g_row, length)
                sum_gx = sum_gx + dot(g_row, &input[n, c, 0], 1, length)
            # sum(g * (x - mean)) from sum(g * x): one pass over the data instead of two.
            sum_gx = sum_gx - mean[c] * sum_g
            grad_bias[c] = sum_g
            grad_weight[c] = sum_gx * inv_std[c]
            if not want_input:
                continue
            scale = inv_std[c] * (weight[c] if affine else 1)
            k_grad = <floating>scale
            k_input = <floating>(-scale * inv_std[c] * inv_std[c] * sum_gx / count)
            k_const = <floating>(-scale * sum_g / count - k_input * mean[c])
            for n in range(batch):
                g_row = &grad_input[n, c, 0] if relu or gelu_after else &grad_output[n, c, 0]
                x_row = &input[n, c, 0]
                out_row = &grad_input[n, c, 0]
                for i in range(length):
                    out_row[i] = k_grad * g_row[i] + k_input * x_row[i] + k_const

