"""conv2d forward and forward+backward: fastconv per algorithm beside the reference and PyTorch."""
import pytest

from fastconv.bench import FULL, LAYER_CASES, Conv

BATCH = FULL.batch
CASES = [case for case in LAYER_CASES if isinstance(case, Conv) and not case.transposed]
IMPLEMENTATIONS = ("fastconv-direct", "fastconv-im2col", "fastconv-winograd", "fastconv-auto",
                   "reference", "torch")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("pass_", Conv.passes)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label(BATCH))
def bench_conv2d(case, pass_, implementation, measure):
    library, _, algo = implementation.partition("-")
    if algo == "winograd" and (case.kernel, case.stride, case.dilation, case.groups) != (3, 1, 1, 1):
        pytest.skip("winograd takes 3x3 kernels at stride 1 without dilation or groups only")
    options = {"algo": algo} if algo else {}
    measure(lambda: case.runner(library, pass_, BATCH, **options), library,
            group=f"conv2d {case.label(BATCH)} {pass_}", flops=case.flops(BATCH, pass_))
