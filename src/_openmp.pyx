# cython: boundscheck=False, wraparound=False, cdivision=True
"""Whether the kernels were compiled with OpenMP: the only place that asks."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTCONV_OPENMP 1
    #else
    #define FASTCONV_OPENMP 0
    #endif
    """
    int FASTCONV_OPENMP


def openmp_enabled():
    return bool(FASTCONV_OPENMP)
