"""Fixtures shared by the test modules."""
import pytest

import fastconv
from fastconv._isa import available_levels
from fastconv._levels import LEVELS


@pytest.fixture
def restore_num_threads():
    """Put the thread count back after a test that sets it."""
    previous = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(previous)


@pytest.fixture(params=[level.name for level in LEVELS])
def isa_level(request):
    """Run the test once per ISA level the kernels are compiled for (fastconv._levels), the
    test-only avx512-on-avx2 included: each level's kernels against the same reference.
    A level this processor or build cannot run is skipped, saying why."""
    level = request.param
    if level not in available_levels():
        pytest.skip(f"ISA level {level} cannot run here: this processor and build run "
                    f"{available_levels()}")
    previous = fastconv.set_isa(level)
    yield level
    fastconv.set_isa(previous)
