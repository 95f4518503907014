"""What the installed build can do."""
from fastconv import _isa
from fastconv._openmp import openmp_enabled
from fastconv._threads import blas_info, get_num_threads


def build_info():
    """A dict: whether OpenMP is compiled in; the ISA level whose kernels run, the levels
    this processor and build can run, and those the build has; whether float32 Winograd
    products use fastconv's own GEMM kernel at that level (else BLAS, as for everything
    else); the BLAS libraries in use and the thread count."""
    return {
        "openmp": openmp_enabled(),
        "isa": _isa.get_isa(),
        "isa_available": _isa.available_levels(),
        "isa_built": _isa.built_levels(),
        "winograd_gemm_kernel": _isa.kernels.winograd.FLOAT32_GEMM_KERNEL,
        "num_threads": get_num_threads(),
        "blas": [{key: lib.get(key) for key in ("internal_api", "version", "filepath",
                                                "num_threads", "threading_layer")}
                 for lib in blas_info()],
    }
