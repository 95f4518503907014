# cython: boundscheck=False, wraparound=False, cdivision=True
"""Reductions shared by the backward passes; all accumulate in double."""
from cython.parallel cimport prange
from _common cimport floating


def sum_partials(const floating[:, ::1] partials, floating[::1] out, int n_threads):
    """out += partials.sum(axis=0), summed in a fixed order whatever the thread count."""
    cdef Py_ssize_t n_partials = partials.shape[0], size = partials.shape[1], i, k
    cdef double total
    with nogil:
        for i in prange(size, num_threads=n_threads, schedule="static"):
            total = 0
            for k in range(n_partials):
                total = total + partials[k, i]
            out[i] += <floating>total


def channel_sums(const floating[:, :, ::1] values, floating[::1] out, int n_threads):
    """out[c] += values[:, c, :].sum(): the bias gradient of values shaped (N, C, H*W)."""
    cdef Py_ssize_t batch = values.shape[0], channels = values.shape[1], size = values.shape[2]
    cdef Py_ssize_t c, n, p
    cdef double total
    with nogil:
        for c in prange(channels, num_threads=n_threads, schedule="static"):
            total = 0
            for n in range(batch):
                for p in range(size):
                    total = total + values[n, c, p]
            out[c] += <floating>total
