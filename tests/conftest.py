"""Fixtures shared by the test modules."""
import pytest

import fastconv


@pytest.fixture
def restore_num_threads():
    """Put the thread count back after a test that sets it."""
    previous = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(previous)
