"""Scratch buffers reused across calls, one set per Python thread.

Fresh large allocations cost page faults on every call; a buffer here grows to the
largest size asked for and is then reused. Kernels release the GIL, so each Python
thread keeps its own buffers.
"""
import threading

import numpy as np

_local = threading.local()


def workspace(name, shape, dtype):
    """An uninitialised C-contiguous array of this shape, backed by the buffer called name."""
    size = 1
    for extent in shape:
        size *= extent
    key = (name, np.dtype(dtype).str)
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = np.empty(max(size, 1), dtype=dtype)
    return buffer[:size].reshape(shape)
