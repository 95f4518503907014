"""What the installed build can do."""
from fastconv._openmp import openmp_enabled
from fastconv._threads import blas_info, get_num_threads


def build_info():
    """A dict: whether OpenMP is compiled in, the BLAS libraries in use and the thread count."""
    import fastconv._conv_gemm  # noqa: F401  (loads the BLAS the kernels call)
    return {
        "openmp": openmp_enabled(),
        "num_threads": get_num_threads(),
        "blas": [{key: lib.get(key) for key in ("internal_api", "version", "filepath",
                                                "num_threads", "threading_layer")}
                 for lib in blas_info()],
    }
