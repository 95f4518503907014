# cython: boundscheck=False, wraparound=False, cdivision=True
"""Element-wise ReLU and GELU, forward and backward, over flat contiguous arrays.

The arrays are cut into chunks of CHUNK elements, which OpenMP shares out statically:
an array of one chunk or less runs on one thread, so small arrays do not pay for a
thread team. Each element is computed alone, so results do not depend on the thread
count.
"""
from cython.parallel cimport prange
from _common cimport floating, gelu, gelu_gradient, rectify

cdef enum:
    # 128 KiB of float32: far more work than starting a thread costs, and still many
    # chunks per thread on a layer's activations.
    CHUNK = 32768


def chunk_count(Py_ssize_t size):
    """Chunks the kernels cut size elements into: more threads than this would idle."""
    return (size + CHUNK - 1) // CHUNK


def relu_forward(const floating[::1] input, floating[::1] output, int n_threads):
    """output <- max(input, 0) as np.maximum computes it (NaN propagates, -0.0 becomes
    +0.0). output may be input itself."""
    cdef Py_ssize_t size = input.shape[0], n_chunks = chunk_count(size), chunk, i
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, size)):
                output[i] = rectify(input[i])


def relu_backward(const floating[::1] grad_output, const floating[::1] output,
                  floating[::1] grad_input, int n_threads):
    """grad_input <- grad_output * (output > 0), as fastconv.nn.ReLU has always computed it.

    A product, not a select: where the output is not positive, an infinite or NaN
    gradient still gives NaN (inf * 0) and a negative one -0.0, so a NaN in the
    gradient is never hidden by a dead unit.
    """
    cdef Py_ssize_t size = output.shape[0], n_chunks = chunk_count(size), chunk, i
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, size)):
                # Multiplying by a bint instead compiles to a scalar loop, ten times slower.
                grad_input[i] = grad_output[i] * (<floating>1 if output[i] > 0 else <floating>0)


def gelu_forward(const floating[::1] input, floating[::1] output, bint approximate,
                 int n_threads):
    """output <- x Phi(x), Phi the standard normal CDF: 0.5 x (1 + erf(x / sqrt(2))), or
    with approximate its tanh form 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
    float32 by _gelu.h's vectorised approximations, float64 by libm. output may be input."""
    cdef Py_ssize_t size = input.shape[0], n_chunks = chunk_count(size), chunk, start, count
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            start = chunk * CHUNK
            count = min(CHUNK, size - start)
            gelu(&input[start], &output[start], count, approximate)


def gelu_backward(const floating[::1] grad_output, const floating[::1] input,
                  floating[::1] grad_input, bint approximate, int n_threads):
    """grad_input <- grad_output * GELU'(input): Phi(x) + x phi(x), or the derivative of
    the tanh form with approximate."""
    cdef Py_ssize_t size = input.shape[0], n_chunks = chunk_count(size), chunk, start, count
    with nogil:
        for chunk in prange(n_chunks, num_threads=n_threads, schedule="static"):
            start = chunk * CHUNK
            count = min(CHUNK, size - start)
            gelu_gradient(&grad_output[start], &input[start], &grad_input[start], count,
                          approximate)
