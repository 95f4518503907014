"""Fused paths equal the unfused composition: BatchNorm + ReLU and BatchNorm + GELU forward
and backward, and Sequential handing a ReLU's or a GELU's work to the layer before it."""
import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
from fastconv import functional as F
from fastconv.nn.gradcheck import gradcheck

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

rng = np.random.default_rng(11)
DTYPES = [np.float32, np.float64]


def batch_norm_case(dtype, shape=(5, 6, 7, 3)):
    channels = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.uniform(0.5, 1.5, channels).astype(dtype)
    bias = rng.uniform(-0.5, 0.5, channels).astype(dtype)
    return x, weight, bias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_forward_is_relu_of_batch_norm(dtype, training):
    x, weight, bias = batch_norm_case(dtype)
    x[0, 0, 0, :2] = np.nan, -0.0
    stats = [rng.standard_normal(6).astype(dtype), rng.uniform(0.5, 2, 6).astype(dtype)]
    plain = F.native_batch_norm(x, weight, bias, *[s.copy() for s in stats], training, 0.1, 1e-5)
    fused = F.native_batch_norm(x, weight, bias, *[s.copy() for s in stats], training, 0.1, 1e-5,
                                activation="relu")
    np.testing.assert_array_equal(fused[0], np.maximum(plain[0], 0))
    for expected, got in zip(plain[1:], fused[1:]):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 8, 1, 33), (9, 2, 4)])
def test_batch_norm_relu_backward_is_batch_norm_backward_of_the_masked_gradient(dtype, affine,
                                                                                  shape):
    x, weight, bias = batch_norm_case(dtype, shape)
    weight, bias = (weight, bias) if affine else (None, None)
    output, mean, inv_std = F.native_batch_norm(x, weight, bias, None, None, True, 0.1, 1e-5,
                                                activation="relu")
    grad = rng.standard_normal(shape).astype(dtype)
    expected = F.batch_norm_backward(grad * (output > 0), x, weight, mean, inv_std)
    got = F.batch_norm_backward(grad, x, weight, mean, inv_std, relu_output=output)
    for e, g in zip(expected, got):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=1e-6 if dtype == np.float32 else 1e-13)
    # Only the requested gradients come back, the input gradient included.
    skipped = F.batch_norm_backward(grad, x, weight, mean, inv_std, (False, True, True),
                                    relu_output=output)
    assert skipped[0] is None


def test_bad_activation_and_relu_output_are_value_errors():
    x, weight, bias = batch_norm_case(np.float32)
    for activation in ("GELU", "", 1):
        with pytest.raises(ValueError, match="batch_norm: activation must be one of"):
            F.native_batch_norm(x, weight, bias, None, None, True, 0.1, 1e-5,
                                activation=activation)
    output, mean, inv_std = F.native_batch_norm(x, weight, bias, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="relu_output must have the input's shape"):
        F.batch_norm_backward(output, x, weight, mean, inv_std, relu_output=output[:1])
    with pytest.raises(TypeError, match="relu_output"):
        F.batch_norm_backward(output, x, weight, mean, inv_std,
                              relu_output=output.astype(np.float64))
    with pytest.raises(ValueError, match="relu_output must be given with activation='relu'"):
        F.batch_norm_backward(output, x, weight, mean, inv_std, activation="relu")
    with pytest.raises(ValueError, match="relu_output must be given with activation='relu'"):
        F.batch_norm_backward(output, x, weight, mean, inv_std, relu_output=output,
                              activation="gelu")
    with pytest.raises(ValueError, match="GELU needs the bias"):
        F.batch_norm_backward(output, x, weight, mean, inv_std, activation="gelu")


GELUS = [("gelu", "none"), ("gelu_tanh", "tanh")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation, approximate", GELUS)
def test_batch_norm_gelu_forward_is_gelu_of_batch_norm(activation, approximate, training, dtype):
    x, weight, bias = batch_norm_case(dtype)
    stats = [rng.standard_normal(6).astype(dtype), rng.uniform(0.5, 2, 6).astype(dtype)]
    plain = F.native_batch_norm(x, weight, bias, *[s.copy() for s in stats], training, 0.1, 1e-5)
    fused = F.native_batch_norm(x, weight, bias, *[s.copy() for s in stats], training, 0.1, 1e-5,
                                activation=activation)
    np.testing.assert_allclose(fused[0], F.gelu(plain[0], approximate), **tolerance(dtype))
    for expected, got in zip(plain[1:], fused[1:]):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 8, 1, 33), (9, 2, 4)])
@pytest.mark.parametrize("activation, approximate", GELUS)
def test_batch_norm_gelu_backward_is_batch_norm_backward_of_gelu_backward(
        activation, approximate, dtype, affine, shape):
    x, weight, bias = batch_norm_case(dtype, shape)
    weight, bias = (weight, bias) if affine else (None, None)
    normalised, mean, inv_std = F.native_batch_norm(x, weight, bias, None, None, True, 0.1, 1e-5)
    grad = rng.standard_normal(shape).astype(dtype)
    expected = F.batch_norm_backward(F.gelu_backward(grad, normalised, approximate), x, weight,
                                     mean, inv_std)
    got = F.batch_norm_backward(grad, x, weight, mean, inv_std, activation=activation, bias=bias)
    for e, g in zip(expected, got):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, **tolerance(dtype))


def unfused_run(model, x, grad):
    """Forward and backward module by module, as if no module fused anything."""
    for module in model:
        x = module(x)
    for module in reversed(list(model)):
        grad = module.backward(grad)
    return x, grad


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def assert_training_step_matches_the_composition(build, x, fused_indices):
    """A fused forward + backward of build() equals a module-by-module one of another build()."""
    fused, plain = build(), build()
    out = fused(x)
    assert fused._fused == fused_indices
    grad = rng.standard_normal(out.shape).astype(x.dtype)
    grad_input = fused.backward(grad)
    expected_out, expected_grad = unfused_run(plain, x, grad)
    np.testing.assert_allclose(out, expected_out, **tolerance(x.dtype))
    np.testing.assert_allclose(grad_input, expected_grad, **tolerance(x.dtype))
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, err_msg=name, **tolerance(x.dtype))
    for key, value in plain.state_dict().items():  # running statistics too
        np.testing.assert_allclose(fused.state_dict()[key], value, err_msg=key,
                                   **tolerance(x.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_fuses_batch_norm_and_relu_like_the_composition(dtype):
    def build():
        fastconv.manual_seed(3)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.Conv2d(4, 5, 3), nn.BatchNorm2d(5), nn.ReLU(inplace=True),
                             nn.Flatten(), nn.Linear(5 * 4 * 4, 3), nn.ReLU()).to(dtype)
    assert_training_step_matches_the_composition(
        build, rng.standard_normal((6, 3, 6, 6)).astype(dtype), [2, 5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_fuses_batch_norm_and_gelu_like_the_composition(dtype):
    def build():
        fastconv.manual_seed(3)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.GELU(),
                             nn.Conv2d(4, 5, 3), nn.BatchNorm2d(5), nn.GELU(approximate="tanh"),
                             nn.Conv2d(5, 2, 1), nn.GELU(),  # not fused: conv2d fuses ReLU only
                             nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).to(dtype)
    assert_training_step_matches_the_composition(
        build, rng.standard_normal((6, 3, 6, 6)).astype(dtype), [2, 5])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_fused_batch_norm_gelu_passes_gradcheck(approximate):
    fastconv.manual_seed(5)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.GELU(approximate)).double()
    assert gradcheck(model, rng.standard_normal((4, 3, 3, 3)))
    assert model._fused == [1]


def test_fused_batch_norm_relu_passes_gradcheck():
    fastconv.manual_seed(5)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()).double()
    assert gradcheck(model, rng.standard_normal((4, 3, 3, 3)))
    assert model._fused == [1]


def conv_net(dtype, bias):
    fastconv.manual_seed(7)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, bias=bias), nn.ReLU(),
                         nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 3)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_relu_fuses_in_training_like_the_composition(dtype):
    assert_training_step_matches_the_composition(
        lambda: conv_net(dtype, True), rng.standard_normal((5, 3, 9, 9)).astype(dtype), [2, 4])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_eval_mode_folds_batch_norm_into_the_conv_before_it(dtype, bias):
    fused, plain = conv_net(dtype, bias), conv_net(dtype, bias)
    x = rng.standard_normal((5, 3, 9, 9)).astype(dtype)
    for model in (fused, plain):  # running statistics away from their initial values
        for _ in range(3):
            model(x * 2 + 1)
        model.eval()
    out = fused(x)
    assert fused._fused == [1, 2, 4, 6]
    expected = x
    for module in plain:
        expected = module(expected)
    # Folding rounds the weights once more: float32 gets a looser bound.
    np.testing.assert_allclose(out, expected, rtol=1e-4 if dtype == np.float32 else 1e-11,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_no_folding_into_a_conv_in_training_mode():
    model = conv_net(np.float64, True)
    model[1].eval()  # its weights are still being trained: folding would mix up the gradients
    model(rng.standard_normal((2, 3, 9, 9)))
    assert model._fused == [2, 4]  # the BatchNorm runs on its own, its ReLU fused into it


def test_batch_norm_of_the_wrong_width_is_not_folded_and_raises_its_own_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5)).eval()
    with pytest.raises(ValueError, match="BatchNorm2d: expected input"):
        model(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))


def test_backward_parameters_skips_only_the_input_gradient(monkeypatch):
    masks = []
    conv2d_backward = F.conv2d_backward

    def recording(*args, **kwargs):
        masks.append(kwargs["output_mask"])
        return conv2d_backward(*args, **kwargs)

    model, twin = conv_net(np.float64, True), conv_net(np.float64, True)
    x = rng.standard_normal((3, 3, 9, 9))
    grad = rng.standard_normal((3, 3))
    twin(x)
    twin.backward(grad)
    model(x)
    monkeypatch.setattr(F, "conv2d_backward", recording)
    assert model.backward_parameters(grad) is None
    assert [mask[0] for mask in masks] == [True, True, False]  # last layer first
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


# Convolutions whose 2x2 max pools conv2d_max_pool2d takes from each Winograd output tile:
# (batch, C_in, C_out, H, W, padding), odd and even output sizes, tiles cut at the edges,
# channels that leave a partial group of 8.
POOLED_CONVS = [(3, 5, 16, 9, 9, 1), (2, 8, 20, 7, 11, 1), (4, 16, 64, 15, 15, 1),
                (2, 3, 9, 6, 5, 0), (1, 24, 17, 31, 30, 1), (5, 7, 3, 4, 4, 1), (2, 4, 8, 4, 5, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", POOLED_CONVS, ids=lambda case: "N{}-C{}-F{}-{}x{}-p{}".format(*case))
def test_conv_max_pool_is_max_pool_of_the_conv_bitwise(case, threads, with_bias, activation,
                                                       dtype, restore_num_threads):
    batch, c_in, c_out, height, width, padding = case
    fastconv.set_num_threads(threads)
    x = rng.standard_normal((batch, c_in, height, width)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype) if with_bias else None
    # Ties and NaN: a zero kernel gives every window four equal maxima (the bias, or
    # zeros that relu may turn from -0.0); a NaN pixel poisons the windows around it.
    weight[0] = 0
    x[0, 0, height // 2, width // 2] = np.nan
    output, indices, conv_shape = F.conv2d_max_pool2d(x, weight, bias, padding=padding,
                                                      algo="winograd", activation=activation)
    conv = F.conv2d(x, weight, bias, padding=padding, algo="winograd", activation=activation)
    expected, expected_indices = F.max_pool2d(conv, 2)
    assert conv_shape == conv.shape
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(output.view(f"u{output.itemsize}"),
                                  expected.view(f"u{output.itemsize}"))
    np.testing.assert_array_equal(indices, expected_indices)


def test_conv_max_pool_fuses_only_winograd_and_composes_the_rest(monkeypatch):
    pooled = []
    winograd_conv = F._winograd_conv

    def recording(*args):
        pooled.append(len(args) > 8)
        return winograd_conv(*args)
    monkeypatch.setattr(F, "_winograd_conv", recording)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    for algo, kernel in (("winograd", 3), ("im2col", 3), ("im2col", 1), ("direct", 3)):
        weight = rng.standard_normal((6, 4, kernel, kernel)).astype(np.float32)
        output, indices, shape = F.conv2d_max_pool2d(x, weight, algo=algo)
        expected, expected_indices = F.max_pool2d(F.conv2d(x, weight, algo=algo), 2)
        np.testing.assert_array_equal(output, expected)
        np.testing.assert_array_equal(indices, expected_indices)
    assert pooled == [True, False]  # the fused call, then the reference conv2d's
    with pytest.raises(ValueError, match="conv2d_max_pool2d: weight"):
        F.conv2d_max_pool2d(x, weight[:, :3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_fuses_conv_and_max_pool_like_the_composition(dtype):
    def build():
        fastconv.manual_seed(3)
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.MaxPool2d(2),
                             nn.BatchNorm2d(16), nn.GELU(),
                             nn.Conv2d(16, 16, 3, padding=1), nn.MaxPool2d((2, 2), 2),
                             nn.Conv2d(16, 8, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True),
                             nn.Flatten(), nn.Linear(8, 3)).to(dtype)
    # The pools after the first two convolutions are the convolutions' work (their
    # backward still runs on its own); the ceil_mode one is not.
    model = build()
    model(rng.standard_normal((2, 3, 9, 9)).astype(dtype))
    assert model[1]._cache is not None and model[7]._cache is not None
    assert_training_step_matches_the_composition(
        build, rng.standard_normal((5, 3, 9, 9)).astype(dtype), [3])
