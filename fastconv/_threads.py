"""The thread count every kernel runs with, and how it is split between OpenMP and BLAS."""
import os

from threadpoolctl import ThreadpoolController

from fastconv._openmp import openmp_enabled


def _default_num_threads():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_num_threads = _default_num_threads()
_blas_controller = None


def set_num_threads(n):
    """Set the number of threads the kernels use (OpenMP and BLAS together never exceed it)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n


def get_num_threads():
    """The number of threads the kernels use: set_num_threads, else OMP_NUM_THREADS, else the cores."""
    return _num_threads


def kernel_threads(work_items):
    """OpenMP threads for a kernel with this many independent work items."""
    return max(1, min(_num_threads, work_items)) if openmp_enabled() else 1


def single_threaded_blas():
    """Context manager limiting BLAS to one thread while the GEMM kernels run.

    The kernels call BLAS from inside their OpenMP threads, so BLAS threads would
    multiply with them; and a multi-threaded GEMM sums in another order, which would
    make results depend on the thread count.
    """
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def blas_info():
    """The BLAS libraries the kernels may call, as threadpoolctl reports them."""
    return ThreadpoolController().select(user_api="blas").info()
