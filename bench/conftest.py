"""Shared set-up for the benchmarks: one thread count for every library, and `measure`.

Every case is timed per library (fastconv, the NumPy reference, PyTorch when torch
imports) in one pytest-benchmark group, so `pytest bench/ --benchmark-only` prints them
side by side. Cases and their callables come from fastconv.bench, as `fastconv bench` uses.
"""
import pytest

from fastconv.bench import Unavailable, import_torch


def pytest_addoption(parser):
    group = parser.getgroup("fastconv benchmarks")
    group.addoption("--bench-threads", type=int, default=None,
                    help="threads for every library (default: fastconv.get_num_threads())")
    group.addoption("--bench-rounds", type=int, default=5,
                    help="timed rounds for fastconv and PyTorch, after one warm-up (default 5)")
    group.addoption("--bench-reference-rounds", type=int, default=2,
                    help="timed rounds for the slow NumPy reference (default 2)")


@pytest.fixture(scope="session", autouse=True)
def thread_limit(request):
    """Limit fastconv, the BLAS and OpenMP pools and PyTorch to the same thread count."""
    import fastconv
    import fastconv.functional  # noqa: F401  (threadpool_limits reaches loaded libraries only)
    import fastconv.reference  # noqa: F401
    from threadpoolctl import threadpool_limits

    torch, _ = import_torch()
    threads = request.config.getoption("--bench-threads") or fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    if torch:
        torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        yield threads


@pytest.fixture
def measure(benchmark, request):
    """measure(make_runner, library, group, flops=None): benchmark the callable make_runner()
    builds, in the given group; skip with the reason when the library or op is missing."""
    def run(make_runner, library, group, flops=None):
        if library == "torch":
            torch, reason = import_torch()
            if torch is None:
                pytest.skip(reason)
        try:
            function = make_runner()
        except Unavailable as reason:
            pytest.skip(str(reason))
        option = "--bench-reference-rounds" if library == "reference" else "--bench-rounds"
        benchmark.group = group
        benchmark.extra_info.update(library=library, flops=flops)
        benchmark.pedantic(function, rounds=request.config.getoption(option),
                           warmup_rounds=1, iterations=1)
    return run
