"""The Module API, BatchNorm statistics, init, fuse_conv_bn and training end to end."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
import fastconv.optim as optim
from fastconv import functional as F
from fastconv import init

rng = np.random.default_rng(99)


@pytest.fixture(autouse=True)
def one_thread():
    """Small shapes: two OpenMP threads on a loaded machine only add waiting."""
    threads = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    yield
    fastconv.set_num_threads(threads)


def small_cnn():
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                   nn.Conv2d(4, 6, 3, stride=2, bias=False))),
        ("classifier", nn.Sequential(nn.Flatten(), nn.Linear(6 * 3 * 3, 5))),
    ]))


# -- Module API -----------------------------------------------------------------------------

def test_state_dict_keys_follow_pytorch():
    keys = list(small_cnn().state_dict())
    assert keys == ["features.0.weight", "features.0.bias", "features.1.weight",
                    "features.1.bias", "features.1.running_mean", "features.1.running_var",
                    "features.1.num_batches_tracked", "features.3.weight",
                    "classifier.1.weight", "classifier.1.bias"]
    state = small_cnn().state_dict()
    assert state["features.1.num_batches_tracked"].dtype == np.int64
    assert state["features.1.num_batches_tracked"].shape == ()
    names = [name for name, _ in small_cnn().named_parameters()]
    assert names == [k for k in keys if "running" not in k and "tracked" not in k]


def pytorch_style_export(model):
    """What tensor.numpy() of a structurally identical torch model's state_dict gives."""
    return OrderedDict((key, rng.standard_normal(value.shape).astype(np.float32)
                        if value.dtype.kind == "f" else np.array(7, np.int64))
                       for key, value in model.state_dict().items())


def test_load_state_dict_from_pytorch_export():
    model = small_cnn()
    exported = pytorch_style_export(model)
    result = model.load_state_dict(exported)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, exported[key])
    assert model.features[1].num_batches_tracked == 7
    assert model.features[0].weight.dtype == np.float32


def test_load_state_dict_validates_everything_before_writing():
    model = small_cnn()
    before = model.state_dict()
    bad = pytorch_style_export(model)
    bad["classifier.1.weight"] = np.zeros((5, 53), np.float32)  # the last key is wrong
    with pytest.raises(ValueError, match=r'size mismatch for "classifier.1.weight".*\(5, 53\)'):
        model.load_state_dict(bad)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    missing = pytorch_style_export(model)
    del missing["features.1.running_var"]
    missing["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(missing)
    assert 'missing key "features.1.running_var"' in str(error.value)
    assert 'unexpected key "extra.weight"' in str(error.value)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    result = model.load_state_dict(missing, strict=False)
    assert result.missing_keys == ["features.1.running_var"]
    assert result.unexpected_keys == ["extra.weight"]


def test_state_dict_is_a_copy_and_load_keeps_arrays():
    model = small_cnn()
    weight = model.features[0].weight.data
    state = model.state_dict()
    state["features.0.weight"][...] = 5
    assert not np.any(weight == 5)
    model.load_state_dict(state)
    assert model.features[0].weight.data is weight and np.all(weight == 5)


def test_repr_shows_structure_and_non_default_arguments():
    text = repr(small_cnn())
    assert "(features): Sequential(" in text
    assert "(0): Conv2d(3, 4, kernel_size=(3, 3), padding=(1, 1))" in text
    assert "(1): BatchNorm2d(4)" in text
    assert "(3): Conv2d(4, 6, kernel_size=(3, 3), stride=(2, 2), bias=False)" in text
    assert "(1): Linear(in_features=54, out_features=5)" in text
    assert repr(nn.BatchNorm2d(3, momentum=None)) == "BatchNorm2d(3, momentum=None)"
    assert repr(nn.CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(label_smoothing=0.1)"


def test_traversal_modes_grads_and_dtype():
    model = small_cnn()
    assert len(list(model.modules())) == 9
    assert [name for name, _ in model.named_children()] == ["features", "classifier"]
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    model.backward(np.ones_like(model(x)))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.features[1].running_var.dtype == np.float64
    assert model.features[1].num_batches_tracked.dtype == np.int64
    assert model(x.astype(np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 2)(np.ones((1, 2)))
    with pytest.raises(TypeError, match="does not match"):
        nn.BatchNorm2d(2)(np.ones((2, 2, 2, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.ReLU()(np.ones(3, np.int64))


def test_shared_parameters_count_once():
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert len(list(model.parameters())) == 2


def test_sequential_container_protocol():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(model) == 3 and isinstance(model[-1], nn.Linear)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    tail = model[1:]
    assert isinstance(tail, nn.Sequential) and list(tail._modules) == ["1", "2"]
    model.append(nn.Sigmoid())
    assert len(model) == 4 and "3.weight" not in model.state_dict()
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.ReLU(), "relu")


# -- BatchNorm statistics ---------------------------------------------------------------------

def batch_moments(x):
    mean = x.mean(axis=(0, 2, 3))
    return mean, x.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)


def test_batchnorm_train_eval_and_running_stats():
    bn = nn.BatchNorm2d(3, eps=1e-3, momentum=0.2).double()
    bn.weight.data[:] = [1.5, 0.5, -1.0]
    bn.bias.data[:] = [0.1, 0.2, 0.3]
    batches = [rng.standard_normal((4, 3, 2, 3)) * 2 + 1 for _ in range(2)]
    running_mean, running_var = np.zeros(3), np.ones(3)
    for x in batches:
        mean, var, unbiased = batch_moments(x)
        y = bn(x)
        expected = ((x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3)
                    * bn.weight.data[:, None, None] + bn.bias.data[:, None, None])
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
        running_mean = 0.8 * running_mean + 0.2 * mean
        running_var = 0.8 * running_var + 0.2 * unbiased
    np.testing.assert_allclose(bn.running_mean, running_mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, running_var, rtol=1e-12)
    assert bn.num_batches_tracked == 2
    bn.eval()
    x = batches[0]
    expected = ((x - running_mean[:, None, None]) / np.sqrt(running_var[:, None, None] + 1e-3)
                * bn.weight.data[:, None, None] + bn.bias.data[:, None, None])
    np.testing.assert_allclose(bn(x), expected, rtol=1e-12)
    assert bn.num_batches_tracked == 2


def test_batchnorm_momentum_none_is_cumulative_average():
    bn = nn.BatchNorm2d(2, momentum=None).double()
    batches = [rng.standard_normal((3, 2, 2, 2)) + i for i in range(3)]
    for x in batches:
        bn(x)
    moments = [batch_moments(x) for x in batches]
    np.testing.assert_allclose(bn.running_mean, np.mean([m[0] for m in moments], axis=0))
    np.testing.assert_allclose(bn.running_var, np.mean([m[2] for m in moments], axis=0))


def test_batchnorm_without_running_stats_and_single_values():
    bn = nn.BatchNorm2d(2, track_running_stats=False).double()
    assert "running_mean" not in bn.state_dict()
    x = rng.standard_normal((3, 2, 2, 2))
    bn.eval()
    out = bn(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(4)(np.ones((1, 4), np.float32))


def test_instancenorm_running_stats():
    norm = nn.InstanceNorm2d(2, momentum=0.5, track_running_stats=True).double()
    x = rng.standard_normal((3, 2, 4, 4))
    norm(x)
    np.testing.assert_allclose(norm.running_mean, 0.5 * x.mean(axis=(2, 3)).mean(axis=0))
    np.testing.assert_allclose(norm.running_var,
                               0.5 + 0.5 * x.var(axis=(2, 3), ddof=1).mean(axis=0))
    norm.eval()
    expected = ((x - norm.running_mean[:, None, None])
                / np.sqrt(norm.running_var[:, None, None] + 1e-5))
    np.testing.assert_allclose(norm(x), expected, rtol=1e-12)


# -- init ---------------------------------------------------------------------------------

def test_calculate_gain():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported"):
        init.calculate_gain("swish")


def test_init_distributions_and_fans():
    fastconv.manual_seed(0)
    weight = np.empty((64, 32, 3, 3), np.float32)  # fan_in 288, fan_out 576
    init.kaiming_uniform_(weight, nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / 288)
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.99 * bound
    init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
    assert weight.std() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    init.xavier_uniform_(weight, gain=2.0)
    assert np.abs(weight).max() <= 2 * math.sqrt(6 / (288 + 576))
    init.xavier_normal_(weight)
    assert weight.std() == pytest.approx(math.sqrt(2 / (288 + 576)), rel=0.03)
    init.normal_(weight, mean=3.0, std=0.5)
    assert weight.mean() == pytest.approx(3.0, abs=0.01)
    init.uniform_(weight, -2, -1)
    assert weight.min() >= -2 and weight.max() <= -1
    param = nn.Parameter(np.zeros((2, 3)))
    assert init.constant_(param, 0.5) is param and np.all(param.data == 0.5)
    assert np.all(init.ones_(param).data == 1) and np.all(init.zeros_(param).data == 0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.kaiming_uniform_(np.zeros(3))
    with pytest.raises(TypeError, match="float"):
        init.zeros_(np.zeros(3, np.int64))


def test_dirac_makes_convolution_the_identity():
    weight = init.dirac_(np.empty((6, 3, 3, 3)), groups=2)
    x = rng.standard_normal((2, 6, 5, 5))
    grouped = F.conv2d(x, weight, padding=1, groups=2)
    np.testing.assert_allclose(grouped, x)


def test_manual_seed_makes_models_reproducible():
    fastconv.manual_seed(42)
    first = small_cnn().state_dict()
    fastconv.manual_seed(42)
    second = small_cnn().state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


# -- fuse_conv_bn --------------------------------------------------------------------------

def test_fuse_conv_bn_matches_unfused_in_eval():
    fastconv.manual_seed(1)
    block = nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(4)))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), block,
                          nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2, affine=False))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean[:] = rng.standard_normal(channels)
            module.running_var[:] = rng.random(channels) + 0.5
            if module.affine:
                module.weight.data[:] = rng.standard_normal(channels)
                module.bias.data[:] = rng.standard_normal(channels)
    model.eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    fused = nn.fuse_conv_bn(model)
    np.testing.assert_allclose(fused(x), model(x), rtol=1e-4, atol=1e-5)
    kinds = [type(m).__name__ for m in fused.modules()]
    assert "BatchNorm2d" not in kinds and kinds.count("Identity") == 3
    assert model[0].bias is not fused[0].bias and isinstance(model[1], nn.BatchNorm2d)
    assert fused[3].body[0].bias is not None
    model.train()
    untouched = nn.fuse_conv_bn(model)
    assert isinstance(untouched[1], nn.BatchNorm2d)


# -- whole networks --------------------------------------------------------------------------

def network_loss_gradcheck(model, loss, x, target, checks=25, eps=1e-6):
    """d loss / d (input and every parameter) by backward vs central differences."""
    model.zero_grad()
    loss(model(x), target)
    grad_input = model.backward(loss.backward())
    arrays = [("input", x, grad_input)] + [(name, p.data, p.grad)
                                           for name, p in model.named_parameters()]
    for name, array, analytic in arrays:
        flat = array.reshape(-1)
        for index in rng.permutation(flat.size)[:checks]:
            original = flat[index]
            flat[index] = original + eps
            plus = loss(model(x), target)
            flat[index] = original - eps
            minus = loss(model(x), target)
            flat[index] = original
            numerical = (plus - minus) / (2 * eps)
            assert analytic.reshape(-1)[index] == pytest.approx(numerical, rel=1e-5, abs=1e-8), \
                f"{name}[{index}]"


def test_network_gradients_conv_bn_relu_residual_linear_loss():
    fastconv.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))),
        nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.GroupNorm(2, 6), nn.GELU(), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(6 * 2 * 2, 3)).double()
    x = rng.standard_normal((4, 2, 5, 5))
    target = np.array([0, 2, 1, 2])
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)

    class Seeded(nn.Module):
        """The model with Dropout's mask fixed by reseeding before every forward."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            fastconv.manual_seed(11)
            return self.inner(x)

        def backward(self, grad_output):
            return self.inner.backward(grad_output)

    network_loss_gradcheck(Seeded(model), loss, x, target)


def test_small_cnn_overfits_64_samples():
    fastconv.manual_seed(0)
    data = np.random.default_rng(5)
    x = data.standard_normal((64, 3, 8, 8)).astype(np.float32)
    y = data.integers(0, 10, 64)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32),
                          nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss_fn(model(x), y)
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
    model.eval()
    logits = model(x)
    assert loss_fn(logits, y) < 0.05
    assert np.all(logits.argmax(axis=1) == y)


# -- frozen parameters --------------------------------------------------------------------------

def frozen_net(seed=0):
    fastconv.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
                         nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 7 * 7, 3))


def gradients(model, x, frozen=(), first_only=True):
    for name, param in model.named_parameters():
        param.requires_grad = name not in frozen
    model.zero_grad()
    out = model(x)
    backward = model.backward_parameters if first_only else model.backward
    backward(np.ones_like(out))
    return {name: param.grad for name, param in model.named_parameters()}


def test_frozen_parameters_get_no_gradient_and_the_rest_are_unchanged():
    x = rng.standard_normal((2, 3, 8, 8))
    full = gradients(frozen_net().to(np.float64), x)
    frozen = ("0.weight", "3.weight", "6.bias")
    partial = gradients(frozen_net().to(np.float64), x, frozen)
    for name, grad in partial.items():
        if name in frozen:
            assert grad is None, name
        else:
            np.testing.assert_allclose(grad, full[name], rtol=1e-12, err_msg=name)


def test_a_frozen_stem_runs_no_backward():
    model = frozen_net().to(np.float64)
    x = rng.standard_normal((2, 3, 8, 8))
    full = gradients(model, x)
    calls = []
    stem = model[0]
    object.__setattr__(stem, "backward_parameters", lambda grad: calls.append("stem"))
    object.__setattr__(stem, "backward", lambda grad: calls.append("stem"))
    partial = gradients(model, x, frozen=("0.weight", "0.bias"))
    assert calls == [] and partial["0.weight"] is None and partial["0.bias"] is None
    for name in ("2.weight", "2.bias", "6.weight"):
        np.testing.assert_allclose(partial[name], full[name], rtol=1e-12, err_msg=name)
    # The full backward still runs every module: only the input-free variant may skip.
    gradients(model, x, frozen=("0.weight", "0.bias"), first_only=False)
    assert calls == ["stem"]


def test_requires_grad_and_the_optimizer_leave_frozen_parameters_alone():
    model = frozen_net()
    assert model.requires_grad_(False) is model
    assert not any(param.requires_grad for param in model.parameters())
    model[6].requires_grad_()
    before = {name: param.data.copy() for name, param in model.named_parameters()}
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    out = model(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    model.backward_parameters(np.ones_like(out))
    optimizer.step()
    for name, param in model.named_parameters():
        changed = not np.array_equal(param.data, before[name])
        assert changed == name.startswith("6."), name
