"""max_pool2d (with indices) and avg_pool2d, forward and forward+backward: fastconv beside
the reference and PyTorch."""
import pytest

from fastconv.bench import FULL, LAYER_CASES, Pool

BATCH = FULL.batch
CASES = [case for case in LAYER_CASES if isinstance(case, Pool)]


@pytest.mark.parametrize("library", ("fastconv", "reference", "torch"))
@pytest.mark.parametrize("pass_", Pool.passes)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id(BATCH))
def bench_pool(case, pass_, library, measure):
    measure(lambda: case.runner(library, pass_, BATCH), library,
            group=f"{case.id(BATCH)} {pass_}")
