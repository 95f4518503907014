"""What the installed build can do."""
from fastconv._openmp import openmp_enabled
from fastconv._threads import blas_info, get_num_threads
from fastconv._winograd import FLOAT32_GEMM_KERNEL


def build_info():
    """A dict: whether OpenMP is compiled in, whether float32 Winograd products use
    fastconv's AVX2 GEMM kernel (else BLAS, as for everything else), the BLAS libraries
    in use and the thread count."""
    import fastconv._conv_gemm  # noqa: F401  (loads the BLAS the kernels call)
    return {
        "openmp": openmp_enabled(),
        "winograd_gemm_kernel": FLOAT32_GEMM_KERNEL,
        "num_threads": get_num_threads(),
        "blas": [{key: lib.get(key) for key in ("internal_api", "version", "filepath",
                                                "num_threads", "threading_layer")}
                 for lib in blas_info()],
    }
