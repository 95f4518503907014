"""The caching allocator: freed large arrays are reused, within the limit, and a training
step after the first allocates no new large blocks."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
import fastconv.optim as optim
from fastconv import models

MIB = 1 << 20


@pytest.fixture
def cache():
    """A cache of 64 MiB for the test, emptied before and restored after."""
    limit = fastconv.memory_cache_stats()["max_bytes"]
    fastconv.set_memory_cache(0)
    fastconv.set_memory_cache(64 * MIB)
    yield
    fastconv.set_memory_cache(limit)


def misses():
    return fastconv.memory_cache_stats()["misses"]


def test_a_freed_block_serves_the_next_array_of_its_size(cache):
    a = np.empty(MIB, np.uint8)
    address = a.ctypes.data
    del a
    before = fastconv.memory_cache_stats()
    b = np.empty(MIB, np.uint8)
    after = fastconv.memory_cache_stats()
    assert b.ctypes.data == address
    assert (after["hits"], after["misses"]) == (before["hits"] + 1, before["misses"])
    assert after["cached_bytes"] == before["cached_bytes"] - MIB
    c = np.empty(MIB + 1, np.uint8)  # other sizes never take it
    assert c.ctypes.data != address
    assert misses() == before["misses"] + 1


def test_zeros_from_a_reused_block_are_zero(cache):
    a = np.full(MIB // 8, 7.0)
    del a
    hits = fastconv.memory_cache_stats()["hits"]
    b = np.zeros(MIB // 8)
    assert fastconv.memory_cache_stats()["hits"] == hits + 1
    assert not b.any()


@pytest.mark.parametrize("make", [np.empty, np.zeros], ids=["empty", "zeros"])
def test_blocks_of_4_mib_and_more_start_on_a_2_mib_boundary(cache, make):
    """So that the system can back them with 2 MiB pages; fresh zeros are zero."""
    a = make(4 * MIB + 3, np.uint8)
    assert a.ctypes.data % (2 * MIB) == 0
    if make is np.zeros:
        assert not a.any()


def test_small_arrays_bypass_the_cache(cache):
    before = fastconv.memory_cache_stats()
    for _ in range(10):
        np.ones(before["min_block"] // 8 - 1)
    assert fastconv.memory_cache_stats() == before


def test_the_limit_releases_the_oldest_blocks(cache):
    fastconv.set_memory_cache(3 * MIB)
    arrays = [np.empty(MIB, np.uint8) for _ in range(4)]
    addresses = [a.ctypes.data for a in arrays]
    while arrays:
        del arrays[0]  # in order: a list frees its items last to first
    assert fastconv.memory_cache_stats()["cached_bytes"] == 3 * MIB
    # The first block freed was released; the three later ones are served again.
    again = [np.empty(MIB, np.uint8) for _ in range(3)]
    assert sorted(a.ctypes.data for a in again) == sorted(addresses[1:])
    big = np.empty(4 * MIB, np.uint8)
    del big  # larger than the whole limit: released, not cached
    assert fastconv.memory_cache_stats()["cached_bytes"] == 0


def test_zero_turns_the_cache_off_and_empties_it(cache):
    np.empty(MIB, np.uint8)  # freed at once
    fastconv.set_memory_cache(0)
    before = fastconv.memory_cache_stats()
    assert before["cached_bytes"] == 0 and before["max_bytes"] == 0
    np.empty(MIB, np.uint8)  # freed at once
    assert fastconv.memory_cache_stats() == before


def test_arrays_cross_threads_safely(cache):
    # Arrays made in another thread use NumPy's own handler (handlers are per context);
    # each array is freed by the handler that made it, wherever it dies.
    made_here = [np.ones(MIB // 8) for _ in range(4)]
    made_there = []

    def work():
        made_there.extend(np.ones(MIB // 8) for _ in range(4))
        made_here.clear()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert all(a.sum() == MIB // 8 for a in made_there)
    made_there.clear()


@pytest.mark.parametrize("max_bytes", [-1, 1.5, "1", True, None])
def test_bad_limit_is_a_value_error(max_bytes):
    with pytest.raises(ValueError, match="set_memory_cache: max_bytes"):
        fastconv.set_memory_cache(max_bytes)


def test_training_steps_after_the_first_allocate_no_new_large_arrays(cache):
    fastconv.manual_seed(0)
    model = models.fastnet()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 16)

    def step():
        optimizer.zero_grad()
        loss_fn(model(images), labels)
        model.backward(loss_fn.backward())
        optimizer.step()

    step()
    step()
    before = fastconv.memory_cache_stats()
    step()
    after = fastconv.memory_cache_stats()
    assert after["hits"] > before["hits"]
    assert after["misses"] == before["misses"]


@pytest.mark.parametrize("environment, expected", [
    ({}, None), ({"FASTCONV_MEMORY_CACHE": "12345"}, 12345), ({"FASTCONV_MEMORY_CACHE": "0"}, 0)])
def test_the_limit_at_import(environment, expected, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "FASTCONV_MEMORY_CACHE"}
    # The fastconv under test, wherever it lies (a source tree has no compiled kernels
    # unless built in place, so the child must not pick up one from its working directory).
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastconv.__file__))
    out = subprocess.run([sys.executable, "-c", "import fastconv; "
                          "print(fastconv.memory_cache_stats()['max_bytes'])"],
                         env={**env, **environment}, cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert int(out.stdout) == (max(2 << 30, physical // 4) if expected is None else expected)
