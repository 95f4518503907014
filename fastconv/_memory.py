"""How much freed array memory fastconv keeps for reuse (the allocator is src/_allocator.pyx).

Importing fastconv installs the caching allocator for arrays created in the importing
thread's context, with a limit of DEFAULT_BYTES unless the FASTCONV_MEMORY_CACHE
environment variable gives another number of bytes (0 turns the cache off).
"""
import os

from fastconv import _allocator

# A NET-M training step at batch 128 keeps about 0.7 GB of freed blocks for its next
# step; the limit leaves room for networks a few times larger without holding on to
# more memory than such a step would.
DEFAULT_BYTES = 2 << 30


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
    set_memory_cache(int(value) if value.isdigit() else DEFAULT_BYTES)


_configure_from_environment()
