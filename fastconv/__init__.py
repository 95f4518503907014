"""fastconv: a CNN engine for the CPU with Cython kernels under a NumPy front end."""
# Before the imports: the autotune cache, read at import, records the version.
__version__ = "0.1.0"

from fastconv._threads import get_num_threads, set_num_threads
from fastconv._autotune import conv_algorithms, set_conv_autotune
from fastconv._info import build_info
from fastconv._isa import get_isa, set_isa
from fastconv._memory import memory_cache_stats, set_memory_cache
from fastconv._random import manual_seed
from fastconv._serialize import load, save
from fastconv.summary import summary

__all__ = ["build_info", "conv_algorithms", "get_isa", "get_num_threads", "load",
           "manual_seed", "memory_cache_stats", "save", "set_conv_autotune", "set_isa",
           "set_memory_cache", "set_num_threads", "summary", "__version__"]
