"""Pooling and resampling layers: MaxPool2d, AvgPool2d, AdaptiveAvg/MaxPool2d, MaxUnpool2d,
Upsample, and a network through them."""
import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
from fastconv.nn.gradcheck import gradcheck

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

rng = np.random.default_rng(4321)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny shapes: a second OpenMP thread only adds waiting on a loaded machine."""
    threads = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    yield
    fastconv.set_num_threads(threads)


class PoolUnpool(nn.Module):
    """MaxPool2d(return_indices=True) then MaxUnpool2d: a Sequential cannot pass the indices.

    The windows do not overlap: where they do, one input can be the maximum of two
    windows and unpooling writes it once, so the pair is not differentiable as a whole.
    """

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d((2, 3), return_indices=True)
        self.unpool = nn.MaxUnpool2d((2, 3))

    def forward(self, x):
        pooled, indices = self.pool(x)
        return self.unpool(pooled, indices, output_size=x.shape)

    def backward(self, grad_output):
        return self.pool.backward(self.unpool.backward(grad_output))


LAYERS = [
    ("maxpool-3x2-s2-p1", lambda: nn.MaxPool2d((3, 2), stride=2, padding=1), (2, 3, 7, 6)),
    ("maxpool-dil-ceil", lambda: nn.MaxPool2d(2, stride=2, dilation=2, ceil_mode=True),
     (2, 2, 7, 7)),
    ("maxpool-indices", lambda: nn.MaxPool2d(2, return_indices=True), (2, 2, 4, 5)),
    ("avgpool-3-s2-p1", lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 6)),
    ("avgpool-nopad-ceil", lambda: nn.AvgPool2d((3, 2), stride=2, padding=1, ceil_mode=True,
                                                count_include_pad=False), (2, 2, 6, 5)),
    ("avgpool-divisor", lambda: nn.AvgPool2d(2, divisor_override=3), (1, 2, 4, 4)),
    ("adaptive-avg", lambda: nn.AdaptiveAvgPool2d((3, None)), (2, 3, 7, 5)),
    ("adaptive-avg-1", lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
    ("adaptive-max", lambda: nn.AdaptiveMaxPool2d((2, 3)), (2, 3, 5, 7)),
    ("upsample-nearest", lambda: nn.Upsample(scale_factor=2), (2, 2, 3, 4)),
    ("upsample-bilinear", lambda: nn.Upsample(size=(5, 7), mode="bilinear"), (2, 2, 3, 4)),
    ("upsample-bilinear-corners", lambda: nn.Upsample(scale_factor=2, mode="bilinear",
                                                      align_corners=True), (1, 2, 3, 3)),
    ("pool-unpool", PoolUnpool, (2, 2, 6, 7)),
]


@pytest.mark.parametrize("make, shape", [(m, s) for _, m, s in LAYERS],
                         ids=[name for name, _, _ in LAYERS])
def test_layer_gradients(make, shape):
    gradcheck(make().double(), rng.standard_normal(shape))


@pytest.mark.parametrize("make, shape", [(m, s) for _, m, s in LAYERS],
                         ids=[name for name, _, _ in LAYERS])
def test_float32_matches_float64(make, shape):
    x = rng.standard_normal(shape)
    results = []
    for dtype in (np.float32, np.float64):
        module = make()
        output = module(x.astype(dtype))
        output = output[0] if isinstance(output, tuple) else output
        assert output.dtype == dtype
        grad_input = module.backward(np.ones_like(output))
        assert grad_input.shape == x.shape and grad_input.dtype == dtype
        results.append((output, grad_input))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_max_pool_indices_and_unpool():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    output, indices = nn.MaxPool2d(2, return_indices=True)(x)
    np.testing.assert_array_equal(output[0, 0], [[5, 7], [13, 15]])
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices[0, 0], [[5, 7], [13, 15]])
    restored = nn.MaxUnpool2d(2)(output, indices)
    assert restored.shape == x.shape
    np.testing.assert_array_equal(restored[x == output.max()], 15)
    assert restored.sum() == output.sum()


def test_pooling_values():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    np.testing.assert_allclose(nn.AvgPool2d(2)(x)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(1)(x)[0, 0], [[7.5]])
    np.testing.assert_allclose(nn.AdaptiveMaxPool2d(1)(x)[0, 0], [[15]])
    np.testing.assert_allclose(nn.Upsample(scale_factor=2)(x)[0, 0, :2, :2], 0)
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2)"
    assert repr(nn.Upsample(scale_factor=2)) == "Upsample(scale_factor=2.0, mode='nearest')"


def test_network_with_pooling_gradients():
    fastconv.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))),
        nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)).double()
    x = rng.standard_normal((3, 2, 8, 8))
    target = np.array([2, 0, 1])
    loss = nn.CrossEntropyLoss()
    loss(model(x), target)
    model.zero_grad()
    grad_input = model.backward(loss.backward())
    eps = 1e-6
    for name, array, analytic in [("input", x, grad_input)] + [
            (name, p.data, p.grad) for name, p in model.named_parameters()]:
        flat = array.reshape(-1)
        for index in rng.permutation(flat.size)[:15]:
            original = flat[index]
            flat[index] = original + eps
            plus = loss(model(x), target)
            flat[index] = original - eps
            minus = loss(model(x), target)
            flat[index] = original
            assert analytic.reshape(-1)[index] == pytest.approx(
                (plus - minus) / (2 * eps), rel=1e-5, abs=1e-8), f"{name}[{index}]"
