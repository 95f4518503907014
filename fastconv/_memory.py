"""How much freed array memory fastconv keeps for reuse (the allocator is src/_allocator.pyx).

Importing fastconv installs the caching allocator for arrays created in the importing
thread's context, with a limit of default_bytes() unless the FASTCONV_MEMORY_CACHE
environment variable gives another number of bytes (0 turns the cache off).
"""
import os

from fastconv import _allocator


def default_bytes():
    """A quarter of the physical memory, and at least 2 GiB.

    A step keeps what it frees for the next one: about 0.7 GiB for NET-M at batch 128,
    1.5 GiB for airnet-wide at batch 1024 and 2.9 GiB at batch 2000, where a 2 GiB limit
    left 18 blocks a step to fresh pages (4.5% of the step). The cache never holds more
    than a step had in use at once.
    """
    return max(2 << 30, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)


def set_memory_cache(max_bytes):
    """Keep up to max_bytes of freed NumPy array data for reuse by arrays of the same size.

    Applies to arrays created afterwards in the calling thread's context (NumPy's memory
    handlers are per context). 0 turns caching off and releases what is cached.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"set_memory_cache: max_bytes must be a non-negative int, got {max_bytes!r}")
    _allocator.configure(max_bytes)


def memory_cache_stats():
    """What the cache holds and how it served requests of at least min_block bytes.

    Returns a dict: cached_bytes, max_bytes, hits (requests served from the cache),
    misses (requests that allocated new memory) and min_block. After the first step of a
    training loop, misses stop growing: the steady state allocates no new large arrays.
    """
    cached, limit, hits, misses = _allocator.stats()
    return {"cached_bytes": cached, "max_bytes": limit, "hits": hits, "misses": misses,
            "min_block": _allocator.min_block()}


def _configure_from_environment():
    value = os.environ.get("FASTCONV_MEMORY_CACHE", "").strip()
    set_memory_cache(int(value) if value.isdigit() else default_bytes())


_configure_from_environment()
