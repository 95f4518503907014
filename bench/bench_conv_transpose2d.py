"""conv_transpose2d forward and forward+backward: fastconv beside the reference and PyTorch."""
import pytest

from fastconv.bench import FULL, LAYER_CASES, Conv

BATCH = FULL.batch
CASES = [case for case in LAYER_CASES if isinstance(case, Conv) and case.transposed]


@pytest.mark.parametrize("library", ("fastconv", "reference", "torch"))
@pytest.mark.parametrize("pass_", Conv.passes)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label(BATCH))
def bench_conv_transpose2d(case, pass_, library, measure):
    measure(lambda: case.runner(library, pass_, BATCH), library,
            group=f"conv_transpose2d {case.label(BATCH)} {pass_}",
            flops=case.flops(BATCH, pass_))
