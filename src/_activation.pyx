# cython: boundscheck=False, wraparound=False, cdivision=True
"""Element-wise ReLU, forward and backward, over flat contiguous arrays.

The arrays are cut into chunks of CHUNK elements, which OpenMP shares out statically:
an array of one chunk or less runs on one thread, so small arrays do not pay for a
thread team. Each element is computed alone, so results do not depend on the thread
count.
"""
from cython.parallel cimport prange
from _common cimport floating, rectify

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
