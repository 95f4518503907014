"""Per-layer checks: finite-difference gradients (float64), float32 vs float64, losses."""
import math

import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
from fastconv import functional as F
from fastconv.nn.gradcheck import gradcheck

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

rng = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def one_thread():
    """These shapes are tiny: with two OpenMP threads on a loaded machine, each kernel call
    can wait milliseconds for its second thread. Results do not depend on the count."""
    threads = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    yield
    fastconv.set_num_threads(threads)


def randn(*shape):
    return rng.standard_normal(shape)


LAYERS = [
    ("conv-3x2-s2-p1", lambda: nn.Conv2d(3, 4, (3, 2), stride=2, padding=1), (2, 3, 7, 6)),
    ("conv-groups-dil", lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (2, 4, 6, 5)),
    ("conv-nobias-same", lambda: nn.Conv2d(2, 3, 4, padding="same", bias=False), (2, 2, 5, 5)),
    ("conv-valid-direct", lambda: nn.Conv2d(2, 3, 3, padding="valid", algo="direct"), (2, 2, 5, 4)),
    ("conv-im2col", lambda: nn.Conv2d(5, 3, 3, algo="im2col"), (2, 5, 5, 5)),
    ("convT-3x2-s2-op1", lambda: nn.ConvTranspose2d(3, 4, (3, 2), stride=2, padding=1,
                                                    output_padding=1), (2, 3, 3, 4)),
    ("convT-groups-dil-nobias", lambda: nn.ConvTranspose2d(4, 2, 3, groups=2, dilation=2,
                                                           bias=False), (2, 4, 3, 3)),
    ("linear", lambda: nn.Linear(5, 4), (3, 5)),
    ("linear-3d-nobias", lambda: nn.Linear(5, 4, bias=False), (2, 3, 5)),
    ("batchnorm2d", lambda: nn.BatchNorm2d(3), (4, 3, 3, 2)),
    ("batchnorm2d-noaffine", lambda: nn.BatchNorm2d(3, affine=False), (4, 3, 2, 2)),
    ("batchnorm2d-untracked", lambda: nn.BatchNorm2d(3, track_running_stats=False), (3, 3, 2, 2)),
    ("batchnorm1d-2d", lambda: nn.BatchNorm1d(4), (5, 4)),
    ("batchnorm1d-3d", lambda: nn.BatchNorm1d(4, momentum=None), (3, 4, 3)),
    ("groupnorm", lambda: nn.GroupNorm(2, 4), (3, 4, 3, 2)),
    ("groupnorm-noaffine", lambda: nn.GroupNorm(4, 4, affine=False), (2, 4, 3, 3)),
    ("layernorm-chw", lambda: nn.LayerNorm((3, 2, 2)), (3, 3, 2, 2)),
    ("layernorm-last-nobias", lambda: nn.LayerNorm(4, bias=False), (3, 2, 4)),
    ("layernorm-noaffine", lambda: nn.LayerNorm(4, elementwise_affine=False), (3, 4)),
    ("instancenorm", lambda: nn.InstanceNorm2d(3), (2, 3, 3, 3)),
    ("instancenorm-affine-tracked",
     lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 3, 2)),
    ("lrn-5", lambda: nn.LocalResponseNorm(5, alpha=0.5, beta=0.75, k=2.0), (2, 7, 2, 3)),
    ("lrn-2", lambda: nn.LocalResponseNorm(2, alpha=1.0, beta=0.5), (2, 3, 2, 2)),
    ("relu", lambda: nn.ReLU(), (2, 3, 4)),
    ("leaky-relu", lambda: nn.LeakyReLU(0.2), (2, 3, 4)),
    ("gelu", lambda: nn.GELU(), (2, 3, 4)),
    ("gelu-tanh", lambda: nn.GELU(approximate="tanh"), (2, 3, 4)),
    ("sigmoid", lambda: nn.Sigmoid(), (2, 3, 4)),
    ("tanh", lambda: nn.Tanh(), (2, 3, 4)),
    ("dropout", lambda: nn.Dropout(0.3), (4, 5)),
    ("dropout2d", lambda: nn.Dropout2d(0.5), (3, 4, 2, 2)),
    ("flatten", lambda: nn.Flatten(), (2, 3, 2, 2)),
    ("flatten-middle", lambda: nn.Flatten(1, 2), (2, 3, 2, 2)),
    ("identity", lambda: nn.Identity(3, key="ignored"), (2, 3)),
    ("sequential", lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)), (3, 4)),
    ("residual-identity", lambda: nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1),
                                                            nn.ReLU())), (2, 2, 4, 4)),
    ("residual-shortcut", lambda: nn.Residual(
        nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3)),
        nn.Sequential(nn.Conv2d(2, 3, 1, stride=2, bias=False), nn.BatchNorm2d(3))),
     (3, 2, 5, 5)),
    ("residual-identity-body", lambda: nn.Residual(nn.Identity()), (2, 3)),
]


@pytest.mark.parametrize("make, shape", [(m, s) for _, m, s in LAYERS],
                         ids=[name for name, _, _ in LAYERS])
def test_layer_gradients(make, shape):
    fastconv.manual_seed(0)
    module = make().double()
    gradcheck(module, randn(*shape))


@pytest.mark.parametrize("make, shape", [(m, s) for _, m, s in LAYERS],
                         ids=[name for name, _, _ in LAYERS])
def test_float32_matches_float64(make, shape):
    fastconv.manual_seed(0)
    module32 = make()
    fastconv.manual_seed(0)
    module64 = make().double()
    x = randn(*shape)
    grad = randn(*np.shape(module64(x)))
    results = []
    for module, dtype in ((module32, np.float32), (module64, np.float64)):
        fastconv.manual_seed(5)
        output = module(x.astype(dtype))
        assert output.dtype == dtype
        grad_input = module.backward(grad.astype(dtype))
        assert grad_input.dtype == dtype and grad_input.shape == x.shape
        results.append((output, grad_input))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for (name, p32), (_, p64) in zip(module32.named_parameters(), module64.named_parameters()):
        np.testing.assert_allclose(p32.grad, p64.grad, rtol=1e-4, atol=1e-4, err_msg=name)


def test_backward_accumulates_into_grad():
    layer = nn.Linear(3, 2).double()
    x, grad = randn(4, 3), randn(4, 2)
    layer(x)
    layer.backward(grad)
    first = layer.weight.grad.copy()
    layer(x)
    layer.backward(grad)
    np.testing.assert_allclose(layer.weight.grad, 2 * first)
    np.testing.assert_allclose(first, grad.T @ x)


def test_eval_mode_stores_nothing_and_backward_explains():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Dropout(), nn.Linear(12, 2))
    model.eval()
    model(np.ones((2, 2, 4, 4), np.float32))
    assert all(module._cache is None for module in model.modules())
    with pytest.raises(RuntimeError, match="training mode"):
        model.backward(np.ones((2, 2), np.float32))


def test_backward_releases_the_cache():
    layer = nn.ReLU()
    layer(np.ones(3))
    layer.backward(np.ones(3))
    assert layer._cache is None
    with pytest.raises(RuntimeError, match="ReLU.backward"):
        layer.backward(np.ones(3))


def test_conv_backward_asks_only_for_needed_gradients(monkeypatch):
    masks = []
    original = F.conv2d_backward

    def recording(*args, output_mask, **kwargs):
        masks.append(output_mask)
        return original(*args, output_mask=output_mask, **kwargs)

    monkeypatch.setattr(F, "conv2d_backward", recording)
    x = np.ones((1, 2, 4, 4), np.float32)
    for bias in (True, False):
        conv = nn.Conv2d(2, 2, 3, bias=bias)
        conv.backward(np.ones_like(conv(x)))
    assert masks == [(True, True, True), (True, True, False)]


def test_conv_transpose_output_size_and_inverse_shape():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    up = nn.ConvTranspose2d(5, 3, 3, stride=2, padding=1)
    assert up.weight.shape == (5, 3, 3, 3)
    for size in (7, 8):
        x = np.zeros((1, 3, size, size), np.float32)
        y = conv(x)
        assert up(y, output_size=x.shape).shape == x.shape
        up.backward(np.ones(x.shape, np.float32))
    with pytest.raises(ValueError, match="not reachable"):
        up(np.zeros((1, 5, 4, 4), np.float32), output_size=(10, 10))
    bound = 1 / math.sqrt(3 * 9)  # PyTorch's fan_in for a transposed weight: C_out * kH * kW
    assert np.abs(up.weight.data).max() <= bound


def test_default_initialisation_bounds():
    fastconv.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, groups=2)
    bound = 1 / math.sqrt(4 * 9)
    for param in (conv.weight, conv.bias):
        assert param.dtype == np.float32
        assert np.abs(param.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.95 * bound
    linear = nn.Linear(50, 7)
    assert np.abs(linear.weight.data).max() <= 1 / math.sqrt(50)
    assert np.abs(linear.bias.data).max() <= 1 / math.sqrt(50)
    norm = nn.BatchNorm2d(4)
    np.testing.assert_array_equal(norm.weight.data, 1)
    np.testing.assert_array_equal(norm.bias.data, 0)


def test_relu_inplace_and_gelu_values():
    x = np.array([-1.0, 0.5, 2.0])
    y = nn.ReLU(inplace=True)(x)
    assert y is x and list(x) == [0.0, 0.5, 2.0]
    z = np.array([-1.0, 0.0, 1.5])
    expected = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in z]
    np.testing.assert_allclose(nn.GELU()(z), expected, rtol=1e-14)
    np.testing.assert_allclose(nn.LeakyReLU(0.1)(z), [-0.1, 0.0, 1.5])


def test_dropout_scaling_and_eval_identity():
    fastconv.manual_seed(3)
    layer = nn.Dropout(0.25)
    x = np.ones((200, 100), np.float32)
    y = layer(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert nn.Dropout(1.0)(x).max() == 0
    layer.eval()
    assert layer(x) is x
    channel = nn.Dropout2d(0.5)(np.ones((8, 16, 3, 3)))
    assert np.all(channel.std(axis=(2, 3)) == 0)


def test_dropout_mask_reproducible_with_manual_seed():
    x = np.ones((10, 10))
    fastconv.manual_seed(7)
    first = nn.Dropout()(x)
    fastconv.manual_seed(7)
    np.testing.assert_array_equal(nn.Dropout()(x), first)


# -- losses ---------------------------------------------------------------------------------

def loss_gradcheck(loss, x, target, grad=None, eps=1e-6):
    value = loss(x, target)
    analytic = loss.backward(grad)
    weights = 1.0 if grad is None else grad
    numerical = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shifted = x.copy()
        shifted[index] += eps
        plus = np.sum(np.asarray(loss(shifted, target)) * weights)
        shifted[index] -= 2 * eps
        minus = np.sum(np.asarray(loss(shifted, target)) * weights)
        numerical[index] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-8)
    return value


CROSS_ENTROPY = [
    ("plain", {}, (5, 4), "index"),
    ("weights", {"weight": np.array([0.5, 2.0, 1.0, 3.0])}, (5, 4), "index"),
    ("ignore", {"ignore_index": 2}, (6, 4), "index"),
    ("smoothing", {"label_smoothing": 0.2}, (5, 4), "index"),
    ("all", {"weight": np.array([0.5, 2.0, 1.0, 3.0]), "ignore_index": 1,
             "label_smoothing": 0.1}, (6, 4), "index"),
    ("sum", {"reduction": "sum", "label_smoothing": 0.3}, (5, 4), "index"),
    ("kdim", {"label_smoothing": 0.1}, (2, 4, 3, 2), "index"),
    ("unbatched", {}, (4,), "index"),
    ("probabilities", {"weight": np.array([0.5, 2.0, 1.0, 3.0]), "label_smoothing": 0.2},
     (5, 4), "probability"),
]


def _targets(kind, shape):
    if kind == "index":
        target_shape = (shape[:1] + shape[2:]) if len(shape) > 1 else ()
        return rng.integers(0, shape[1] if len(shape) > 1 else shape[0], target_shape)
    probabilities = rng.random(shape)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kwargs, shape, kind", [c[1:] for c in CROSS_ENTROPY],
                         ids=[c[0] for c in CROSS_ENTROPY])
def test_cross_entropy_gradient(kwargs, shape, kind):
    x, target = randn(*shape), _targets(kind, shape)
    if kwargs.get("ignore_index") is not None and kind == "index":
        target.reshape(-1)[::3] = kwargs["ignore_index"]
    loss_gradcheck(nn.CrossEntropyLoss(**kwargs), x, target)
    none = nn.CrossEntropyLoss(**dict(kwargs, reduction="none"))
    losses = loss_gradcheck(none, x, target, grad=randn(*np.shape(none(x, target))))
    assert losses.shape == ((shape[:1] + shape[2:]) if len(shape) > 1 else ())


def _cross_entropy_reference(x, target, weight, ignore_index, smoothing):
    """PyTorch's documented formula, written element by element."""
    n, classes = x.shape
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    total, denominator = 0.0, 0.0
    for i in range(n):
        if target[i] == ignore_index:
            continue
        y = target[i]
        total += -(1 - smoothing) * weight[y] * log_p[i, y]
        total += -smoothing / classes * sum(weight[c] * log_p[i, c] for c in range(classes))
        denominator += weight[y]
    return total / denominator


def test_cross_entropy_value_matches_formula():
    x = randn(7, 5)
    target = np.array([0, 4, 2, 2, 1, 3, 4])
    weight = np.array([1.0, 0.2, 3.0, 0.7, 1.5])
    loss = nn.CrossEntropyLoss(weight=weight, ignore_index=4, label_smoothing=0.15)
    value = loss(x, target)
    assert isinstance(value, float)
    assert value == pytest.approx(_cross_entropy_reference(x, target, weight, 4, 0.15), rel=1e-12)
    plain = nn.CrossEntropyLoss()(x, target)
    assert plain == pytest.approx(_cross_entropy_reference(x, target, np.ones(5), -100, 0.0),
                                  rel=1e-12)


def test_cross_entropy_errors_and_stability():
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="out of bounds"):
        loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="target of shape"):
        loss(np.zeros((2, 3)), np.array([0, 1, 2]))
    huge = np.array([[1000.0, -1000.0], [0.0, 0.0]], np.float32)
    assert np.isfinite(loss(huge, np.array([0, 1])))
    assert np.all(np.isfinite(loss.backward()))


@pytest.mark.parametrize("p, margin, weighted, reduction",
                         [(1, 1.0, False, "mean"), (2, 0.5, True, "mean"),
                          (1, 2.0, True, "sum"), (2, 1.0, False, "none")])
def test_multi_margin_loss(p, margin, weighted, reduction):
    x, target = randn(6, 4), rng.integers(0, 4, 6)
    weight = rng.random(4) + 0.5 if weighted else None
    loss = nn.MultiMarginLoss(p=p, margin=margin, weight=weight, reduction=reduction)
    grad = randn(6) if reduction == "none" else None
    value = loss_gradcheck(loss, x, target, grad)
    w = np.ones(4) if weight is None else weight
    expected = [sum(w[target[i]] * max(0.0, margin - x[i, target[i]] + x[i, c]) ** p
                    for c in range(4) if c != target[i]) / 4 for i in range(6)]
    want = {"mean": np.mean(expected), "sum": np.sum(expected), "none": expected}[reduction]
    np.testing.assert_allclose(value, want, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction):
    x, target = randn(3, 4), randn(3, 4)
    loss = nn.MSELoss(reduction=reduction)
    grad = randn(3, 4) if reduction == "none" else None
    value = loss_gradcheck(loss, x, target, grad)
    squares = (x - target) ** 2
    want = {"mean": squares.mean(), "sum": squares.sum(), "none": squares}[reduction]
    np.testing.assert_allclose(value, want, rtol=1e-12)


def test_loss_backward_scales_by_grad():
    x, target = randn(4, 3), rng.integers(0, 3, 4)
    loss = nn.CrossEntropyLoss()
    loss(x, target)
    unit = loss.backward()
    loss(x, target)
    np.testing.assert_allclose(loss.backward(2.5), 2.5 * unit)
    none = nn.CrossEntropyLoss(reduction="none")
    none(x, target)
    with pytest.raises(ValueError, match="needs grad"):
        none.backward()
