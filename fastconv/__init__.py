"""fastconv: a CNN engine for the CPU with Cython kernels under a NumPy front end."""
from fastconv._threads import get_num_threads, set_num_threads
from fastconv._info import build_info

__version__ = "0.1.0"
__all__ = ["build_info", "get_num_threads", "set_num_threads", "__version__"]
