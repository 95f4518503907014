"""NET-S, NET-M, airnet and airnet-wide (fastconv.models): an SGD training step and inference,
fastconv.nn beside an identical torch.nn model. The reference has no layer API, so it has no
column here."""
import pytest

from fastconv.bench import FULL, NET_CASES, Net

BATCH = FULL.net_batch


@pytest.mark.parametrize("library", Net.libraries)
@pytest.mark.parametrize("pass_", Net.passes)
@pytest.mark.parametrize("case", NET_CASES, ids=lambda case: case.id(BATCH))
def bench_network(case, pass_, library, measure):
    measure(lambda: case.runner(library, pass_, BATCH), library,
            group=f"{case.id(BATCH)} {pass_}")
