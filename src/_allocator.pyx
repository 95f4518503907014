# cython: boundscheck=False, wraparound=False, cdivision=True
"""A caching allocator for NumPy array data: freed large blocks are kept and handed back
to the next request of exactly the same size.

A training step allocates the same arrays every step (activations, gradients, kernel
outputs), each a few to a few hundred megabytes. The C library returns such blocks to
the system when they are freed, so every step pays for page faults and for zeroing
fresh pages again, about a tenth of a NET-M step measured. Kept here instead, the
second step onwards allocates nothing new.

Installed through NumPy's PyDataMem_SetHandler (NumPy >= 1.22), which applies to the
arrays created in the current context from then on; arrays remember the handler that
allocated them, so arrays of either handler are always freed correctly. Blocks below
MIN_BLOCK go straight to the C library, whose own free lists serve them well. NumPy
passes free() the size it allocated, which is what the blocks are keyed by (NumPy's
own small-block cache relies on the same contract).

The cache is a small table of blocks; a lock guards it because NumPy may allocate from
any thread. When a freed block would push the cached total past the limit, the oldest
blocks are released first.
"""
from cpython.pycapsule cimport PyCapsule_New
from cpython.pythread cimport (PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_release_lock, PyThread_type_lock, WAIT_LOCK)
from libc.stdint cimport uint8_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset, strcpy

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void* address, size_t length, int advice)
    enum: MADV_HUGEPAGE

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void** pointer, size_t alignment, size_t size)

cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyDataMemAllocator:
        void* ctx
        void* (*malloc)(void* ctx, size_t size) noexcept nogil
        void* (*calloc)(void* ctx, size_t count, size_t item_size) noexcept nogil
        void* (*realloc)(void* ctx, void* pointer, size_t size) noexcept nogil
        void (*free)(void* ctx, void* pointer, size_t size) noexcept nogil

    ctypedef struct PyDataMem_Handler:
        char name[127]
        uint8_t version
        PyDataMemAllocator allocator

    object PyDataMem_SetHandler(object handler)
    object PyDataMem_GetHandler()
    int _import_array() except -1

_import_array()

cdef enum:
    # Smaller blocks come from the C library's free lists without page faults already.
    MIN_BLOCK = 1 << 18
    SLOTS = 256
    # Blocks from this size on are aligned to and backed by 2 MiB pages where the system
    # allows it, as NumPy's own allocator asks for (madvise, from 4 MiB): the kernels'
    # strided walks (channel planes, Winograd tiles) then miss the TLB far less.
    HUGE_BLOCK = 1 << 22
    HUGE_PAGE = 1 << 21


cdef struct Block:
    void* pointer
    size_t size
    size_t age


cdef Block blocks[SLOTS]
cdef size_t cached_bytes = 0, max_bytes = 0, clock = 0
cdef size_t hits = 0, misses = 0
cdef PyThread_type_lock lock = PyThread_allocate_lock()
cdef PyDataMem_Handler handler


cdef void* take(size_t size) noexcept nogil:
    """A cached block of exactly size bytes, removed from the cache, or NULL."""
    global cached_bytes, hits, misses
    cdef void* pointer = NULL
    cdef Py_ssize_t i
    PyThread_acquire_lock(lock, WAIT_LOCK)
    for i in range(SLOTS):
        if blocks[i].pointer != NULL and blocks[i].size == size:
            pointer = blocks[i].pointer
            blocks[i].pointer = NULL
            cached_bytes -= size
            break
    if pointer != NULL:
        hits += 1
    else:
        misses += 1
    PyThread_release_lock(lock)
    return pointer


cdef Py_ssize_t oldest() noexcept nogil:
    """The slot of the block cached longest ago, or -1 if none is; lock held."""
    cdef Py_ssize_t i, found = -1
    for i in range(SLOTS):
        if blocks[i].pointer != NULL and (found < 0 or blocks[i].age < blocks[found].age):
            found = i
    return found


cdef void release_until(size_t limit, Py_ssize_t slots_needed) noexcept nogil:
    """Free the oldest blocks until at most limit bytes stay cached and slots_needed
    slots are empty; lock held."""
    global cached_bytes
    cdef Py_ssize_t i, empty = 0
    for i in range(SLOTS):
        empty += blocks[i].pointer == NULL
    while cached_bytes > limit or empty < slots_needed:
        i = oldest()
        if i < 0:
            return
        free(blocks[i].pointer)
        blocks[i].pointer = NULL
        cached_bytes -= blocks[i].size
        empty += 1


cdef void* fresh(size_t size) noexcept nogil:
    """A new block of size bytes from the C library, or NULL."""
    cdef void* pointer = NULL
    if size < HUGE_BLOCK:
        return malloc(size)
    if posix_memalign(&pointer, HUGE_PAGE, size) != 0:
        return NULL
    madvise(pointer, size, MADV_HUGEPAGE)
    return pointer


cdef void* cached_malloc(void* ctx, size_t size) noexcept nogil:
    cdef void* pointer = take(size) if size >= MIN_BLOCK else NULL
    return pointer if pointer != NULL else fresh(size)


cdef void* cached_calloc(void* ctx, size_t count, size_t item_size) noexcept nogil:
    cdef size_t size = count * item_size
    cdef void* pointer = NULL
    if item_size != 0 and size // item_size != count:
        return NULL
    if size >= MIN_BLOCK:
        pointer = take(size)
    if pointer == NULL:
        if size < HUGE_BLOCK:
            return calloc(count, item_size)
        pointer = fresh(size)
    if pointer != NULL:
        memset(pointer, 0, size)
    return pointer


cdef void* cached_realloc(void* ctx, void* pointer, size_t size) noexcept nogil:
    return realloc(pointer, size)


cdef void cached_free(void* ctx, void* pointer, size_t size) noexcept nogil:
    global cached_bytes, clock
    cdef Py_ssize_t i
    if size < MIN_BLOCK:
        free(pointer)
        return
    PyThread_acquire_lock(lock, WAIT_LOCK)
    if size > max_bytes:
        free(pointer)
    else:
        release_until(max_bytes - size, 1)
        for i in range(SLOTS):
            if blocks[i].pointer == NULL:
                clock += 1
                blocks[i].pointer, blocks[i].size, blocks[i].age = pointer, size, clock
                cached_bytes += size
                break
    PyThread_release_lock(lock)


strcpy(handler.name, b"fastconv_cache")
handler.version = 1
handler.allocator.ctx = NULL
handler.allocator.malloc = cached_malloc
handler.allocator.calloc = cached_calloc
handler.allocator.realloc = cached_realloc
handler.allocator.free = cached_free
_capsule = PyCapsule_New(&handler, b"mem_handler", NULL)
_default = PyDataMem_GetHandler()


def configure(size_t limit):
    """Keep up to limit bytes of freed blocks (0: none, and NumPy's own allocator for new
    arrays) for arrays created in the current context from now on; releases what no longer fits."""
    global max_bytes
    with nogil:
        PyThread_acquire_lock(lock, WAIT_LOCK)
        max_bytes = limit
        release_until(limit, 0)
        PyThread_release_lock(lock)
    PyDataMem_SetHandler(_capsule if limit else _default)


def stats():
    """(cached bytes, limit, hits, misses): hits and misses count requests of at least
    MIN_BLOCK bytes since the module was loaded."""
    cdef size_t snapshot[4]
    with nogil:
        PyThread_acquire_lock(lock, WAIT_LOCK)
        snapshot[:] = [cached_bytes, max_bytes, hits, misses]
        PyThread_release_lock(lock)
    return tuple(snapshot)


def min_block():
    """Bytes below which requests bypass the cache."""
    return MIN_BLOCK
