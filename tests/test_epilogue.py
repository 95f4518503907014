"""The ReLU epilogue of conv2d (activation="relu") and the compiled relu / relu_backward.

conv2d(..., activation="relu") must be bitwise np.maximum(conv2d(...), 0) for every
algorithm, NaN and signed zeros included, and relu / relu_backward bitwise the NumPy
formulas fastconv.nn.ReLU used before them: np.maximum(x, 0) and
grad_output * (output > 0).
"""
import itertools
import zlib
from dataclasses import dataclass
from typing import Tuple, Union

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
import fastconv.nn as nn
import fastconv.reference as reference
from fastconv._isa import kernels

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

DTYPES = [np.float32, np.float64]
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
SPECIAL_VALUES = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-320, -1e-320, 1e-40, -1e-40,
                  3e38, -3e38, 1.0, -1.0]


def dtype_id(dtype):
    return np.dtype(dtype).name


def bits(array):
    """The array's bit patterns, so NaN payloads and signed zeros compare too."""
    array = np.ascontiguousarray(array)
    return array.view(np.uint32 if array.dtype == np.float32 else np.uint64)


def assert_bitwise_equal(actual, expected):
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_array_equal(bits(actual), bits(expected))


# --------------------------------------------------------------------------------------
# conv2d(activation="relu")
# --------------------------------------------------------------------------------------

Pair = Union[int, Tuple[int, int]]


@dataclass(frozen=True)
class Layer:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: Tuple[int, int] = (3, 3)
    stride: Pair = 1
    padding: Union[Pair, str] = 1
    dilation: Pair = 1
    groups: int = 1

    @property
    def id(self):
        kernel_h, kernel_w = self.kernel
        return (f"N{self.batch}-C{self.in_channels}-F{self.out_channels}-{self.height}x"
                f"{self.width}-k{kernel_h}x{kernel_w}-s{self.stride}-p{self.padding}"
                f"-d{self.dilation}-g{self.groups}").replace(" ", "")

    @property
    def winograd(self):
        return (self.kernel == (3, 3) and self.stride == 1 and self.dilation == 1
                and self.groups == 1)

    def arguments(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def arrays(self, dtype, seed):
        rng = np.random.default_rng(seed)
        input = rng.standard_normal((self.batch, self.in_channels, self.height, self.width))
        weight = rng.standard_normal((self.out_channels, self.in_channels // self.groups,
                                      *self.kernel))
        bias = rng.standard_normal(self.out_channels)
        return input.astype(dtype), weight.astype(dtype), bias.astype(dtype)


NAMED_LAYERS = [
    Layer(1, 3, 5, 7, 6),
    Layer(2, 4, 6, 5, 4, kernel=(3, 2), padding=(1, 0)),
    Layer(3, 6, 9, 9, 8, stride=2, padding=1),
    Layer(2, 6, 4, 8, 7, stride=(2, 1), dilation=(1, 2), padding=2),
    Layer(2, 6, 9, 7, 5, groups=3),
    Layer(2, 4, 4, 6, 5, groups=4, padding="same"),
    Layer(1, 16, 33, 9, 11),  # a last Winograd lane group of one channel
    # 5x4 outputs: two images per GEMM and per Winograd block, with a partial last block.
    Layer(9, 8, 10, 5, 4),
    Layer(2, 5, 7, 1, 1, kernel=(1, 1), padding=0),
]


def random_layer(rng):
    while True:
        groups = int(rng.choice([1, 1, 1, 2, 3]))
        kernel = tuple(int(k) for k in rng.integers(1, 4, size=2))
        layer = Layer(batch=int(rng.choice([1, 2, 3, 9])),
                      in_channels=groups * int(rng.integers(1, 7)),
                      out_channels=groups * int(rng.integers(1, 12)),
                      height=int(rng.integers(1, 12)), width=int(rng.integers(1, 12)),
                      kernel=kernel, stride=int(rng.integers(1, 3)),
                      padding=int(rng.integers(0, 3)), dilation=int(rng.integers(1, 3)),
                      groups=groups)
        kernel_h, kernel_w = kernel
        if (layer.height + 2 * layer.padding > layer.dilation * (kernel_h - 1)
                and layer.width + 2 * layer.padding > layer.dilation * (kernel_w - 1)):
            return layer


def random_winograd_layer(rng):
    return Layer(batch=int(rng.choice([1, 2, 9])), in_channels=int(rng.integers(1, 20)),
                 out_channels=int(rng.integers(1, 20)), height=int(rng.integers(3, 14)),
                 width=int(rng.integers(3, 14)), padding=int(rng.integers(0, 3)))


RNG = np.random.default_rng(6)
LAYERS = (NAMED_LAYERS + [random_layer(RNG) for _ in range(10)]
          + [random_winograd_layer(RNG) for _ in range(6)])
# Winograd runs with both output transforms, F(4x4) (the default) and F(2x2).
CASES = ([(layer, algo, None) for layer in LAYERS for algo in ("direct", "im2col", "auto")]
         + [(layer, "winograd", tile) for layer in LAYERS if layer.winograd for tile in (4, 2)])


def case_id(case):
    layer, algo, tile = case
    return f"{layer.id}-{algo}" + (f"-F{tile}x{tile}" if tile else "")


@pytest.fixture
def single_thread(restore_num_threads):
    """One thread for the sweeps of tiny calls, which on a loaded machine would mostly
    wait for descheduled threads; the thread-count tests cover two."""
    fastconv.set_num_threads(1)


def test_cases_cover_every_algorithm_and_geometry():
    assert {algo for _, algo, _ in CASES} == {"direct", "im2col", "winograd", "auto"}
    assert any(layer.groups > 1 for layer in LAYERS)
    assert any(layer.stride != 1 for layer in LAYERS)
    assert any(layer.batch == 1 for layer in LAYERS)
    assert any(layer.kernel[0] != layer.kernel[1] for layer in LAYERS)
    assert sum(layer.winograd for layer in LAYERS) >= 8


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_relu_epilogue_is_maximum_of_the_convolution(case, dtype, with_bias, single_thread,
                                                     monkeypatch):
    layer, algo, tile = case
    if tile:
        monkeypatch.setattr(F, "WINOGRAD_TILE", tile)
    input, weight, bias = layer.arrays(dtype, seed=zlib.crc32(layer.id.encode()))
    bias = bias if with_bias else None
    plain = F.conv2d(input, weight, bias, **layer.arguments(), algo=algo)
    fused = F.conv2d(input, weight, bias, **layer.arguments(), algo=algo, activation="relu")
    # Without negative and positive values the comparison would not show the ReLU.
    assert (plain < 0).any() and (plain > 0).any()
    assert_bitwise_equal(fused, np.maximum(plain, 0))
    expected = reference.conv2d(input.astype(np.float64), weight.astype(np.float64),
                                None if bias is None else bias.astype(np.float64),
                                **layer.arguments(), activation="relu")
    scale = max(1.0, float(np.abs(expected).max()))
    tolerance = TOLERANCE[np.dtype(dtype)]
    np.testing.assert_allclose(fused, expected, rtol=tolerance, atol=tolerance * scale)


def test_reference_activation_is_maximum_of_the_reference():
    layer = NAMED_LAYERS[2]
    input, weight, bias = layer.arrays(np.float64, seed=1)
    plain = reference.conv2d(input, weight, bias, **layer.arguments())
    assert (plain < 0).any()
    assert_bitwise_equal(reference.conv2d(input, weight, bias, **layer.arguments(),
                                          activation="relu"), np.maximum(plain, 0))
    assert_bitwise_equal(reference.conv2d(input, weight, bias, **layer.arguments(),
                                          activation=None), plain)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("algo, tile", [("direct", None), ("im2col", None), ("winograd", 4),
                                        ("winograd", 2)])
def test_relu_epilogue_propagates_nan(algo, tile, dtype, monkeypatch):
    if tile:
        monkeypatch.setattr(F, "WINOGRAD_TILE", tile)
    layer = Layer(9, 16, 20, 9, 7)
    input, weight, bias = layer.arrays(dtype, seed=3)
    input[4, 2, 3, 3] = np.nan  # one image's outputs near (3, 3): NaN in every channel
    bias[5] = np.nan  # channel 5: NaN everywhere
    bias[7] = -np.inf  # channel 7: -inf, which the ReLU turns into 0 (NaN in image 4)
    plain = F.conv2d(input, weight, bias, padding=1, algo=algo)
    fused = F.conv2d(input, weight, bias, padding=1, algo=algo, activation="relu")
    assert np.isnan(fused[:, 5]).all()
    assert np.isnan(fused[4, :, 3, 3]).all()
    assert np.isnan(fused).sum() == np.isnan(plain).sum()
    assert (fused[:4, 7] == 0).all() and (fused[5:, 7] == 0).all()
    assert_bitwise_equal(fused, np.maximum(plain, 0))


@pytest.mark.parametrize("algo", ["direct", "im2col", "winograd"])
def test_relu_epilogue_turns_negative_zeros_positive(algo):
    # Zero input, negative weights and a bias of -0.0: the direct kernel sums -0.0 terms
    # onto -0.0, so its plain output is all -0.0, which np.maximum(x, 0) makes +0.0.
    input = np.zeros((2, 16, 5, 4))
    weight = -np.ones((16, 16, 3, 3))
    bias = np.full(16, -0.0)
    plain = F.conv2d(input, weight, bias, padding=1, algo=algo)
    fused = F.conv2d(input, weight, bias, padding=1, algo=algo, activation="relu")
    if algo == "direct":
        assert np.signbit(plain).all()
    assert not np.signbit(fused).any()
    assert_bitwise_equal(fused, np.maximum(plain, 0))


@pytest.mark.parametrize("algo", ["direct", "im2col", "winograd"])
def test_relu_epilogue_does_not_depend_on_thread_count(algo, restore_num_threads):
    layer = Layer(13, 16, 18, 7, 6)
    input, weight, bias = layer.arrays(np.float32, seed=4)
    results = []
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        results.append(F.conv2d(input, weight, bias, padding=1, algo=algo,
                                activation="relu"))
    assert_bitwise_equal(results[1], results[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("tile", [4, 2], ids=["F4x4", "F2x2"])
def test_winograd_output_transform_relu_of_special_values(tile, dtype):
    """The Winograd output transform alone, on products no GEMM gives: channels whose
    products and bias are all -0.0 (so some outputs are -0.0), NaN and infinities. 19
    channels (two full lane groups and three more) and a 9x11 output (full and cropped
    tiles), so that the vector and the scalar stores both run."""
    channels, out_h, out_w, side = 19, 9, 11, tile + 2
    tiles = -(-out_h // tile) * -(-out_w // tile)
    rng = np.random.default_rng(12)
    products = rng.standard_normal((tiles, side * side, kernels.winograd.round_up(channels)))
    products = products.astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    negative_zero = [2, 9, 17]
    products[:, :, negative_zero] = -0.0
    bias[negative_zero] = -0.0
    products[3, 7, 4] = np.nan
    products[0, 0, 12] = np.inf  # the first point reaches only the tile's first pixel
    products[4, 0, 13] = -np.inf
    plain = np.empty((channels, out_h, out_w), dtype)
    fused = np.empty_like(plain)
    kernels.winograd.output_transform(products, bias, False, plain, tile)
    kernels.winograd.output_transform(products, bias, True, fused, tile)
    assert np.signbit(plain[negative_zero]).any()
    assert np.isnan(plain).any() and np.isposinf(plain).any() and np.isneginf(plain).any()
    assert not np.signbit(fused).any()
    assert_bitwise_equal(fused, np.maximum(plain, 0))


@pytest.mark.parametrize("activation", ["tanh", "ReLU", "", True, 0])
def test_unknown_activation_is_a_value_error(activation):
    input, weight, bias = Layer(1, 2, 3, 4, 4).arrays(np.float32, seed=5)
    for conv2d in (F.conv2d, reference.conv2d):
        with pytest.raises(ValueError, match=r"conv2d: activation must be one of \(None, "
                                             r"'relu'\), got " + repr(activation)):
            conv2d(input, weight, bias, activation=activation)


# --------------------------------------------------------------------------------------
# relu and relu_backward
# --------------------------------------------------------------------------------------

CHUNK = 32768
# Empty, one element, around one chunk and several chunks with a partial last one.
SIZES = [0, 1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]


def mixed_values(size, dtype, seed):
    """Normal values with every special value (NaN, inf, +-0.0, subnormals) sprinkled in."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(size)
    specials = rng.integers(0, size, size=min(size, 64)) if size else []
    values[specials] = rng.choice(SPECIAL_VALUES, size=len(specials))
    return values.astype(dtype)


def test_chunk_count_matches_the_tests_chunk_size():
    assert [kernels.activation.chunk_count(size) for size in SIZES] == [0, 1, 1, 1, 1, 2, 4]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("size", SIZES)
def test_relu_is_numpy_maximum_bitwise(size, dtype):
    input = mixed_values(size, dtype, seed=size)
    assert_bitwise_equal(F.relu(input), np.maximum(input, 0))
    assert_bitwise_equal(F.relu(input), reference.relu(input))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_relu_of_special_values(dtype):
    input = np.array(SPECIAL_VALUES, dtype)
    output = F.relu(input)
    assert_bitwise_equal(output, np.maximum(input, 0))
    # Spelled out, so the test does not rest on NumPy's choices alone.
    assert np.isnan(output[:2]).all()
    assert not np.signbit(output[2:]).any()
    assert (output[input > 0] == input[input > 0]).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("size", SIZES)
def test_relu_backward_is_the_numpy_formula_bitwise(size, dtype):
    grad_output = mixed_values(size, dtype, seed=size + 1)
    output = F.relu(mixed_values(size, dtype, seed=size + 2))
    with np.errstate(invalid="ignore"):
        expected = grad_output * (output > 0)
    assert_bitwise_equal(F.relu_backward(grad_output, output), expected)
    with np.errstate(invalid="ignore"):
        assert_bitwise_equal(F.relu_backward(grad_output, output),
                             reference.relu_backward(grad_output, output))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_relu_backward_of_special_values(dtype):
    # Every pairing of a special gradient with a special output.
    grad_output, output = (np.array(values, dtype) for values in
                           zip(*itertools.product(SPECIAL_VALUES, repeat=2)))
    grad_input = F.relu_backward(grad_output, output)
    with np.errstate(invalid="ignore"):
        assert_bitwise_equal(grad_input, grad_output * (output > 0))
    # inf * 0 where the output is not positive: NaN, as the product has always given.
    dead_infinite = np.isinf(grad_output) & ~(output > 0)
    assert dead_infinite.any() and np.isnan(grad_input[dead_infinite]).all()
    live = output > 0
    assert_bitwise_equal(grad_input[live], grad_output[live])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_relu_inplace(dtype):
    input = mixed_values(3 * (CHUNK + 1), dtype, seed=8).reshape(3, -1)
    expected = np.maximum(input, 0)
    output = F.relu(input, inplace=True)
    assert output is input
    assert_bitwise_equal(input, expected)


def test_relu_inplace_on_a_strided_view_writes_through():
    base = mixed_values(4 * 6 * 10, np.float32, seed=9).reshape(4, 6, 10)
    untouched = base.copy()
    view = base[:, ::2, 1:]
    expected = np.maximum(view, 0)
    output = F.relu(view, inplace=True)
    assert output is view
    assert_bitwise_equal(view, expected)
    mask = np.ones(base.shape, bool)
    mask[:, ::2, 1:] = False
    assert_bitwise_equal(base[mask], untouched[mask])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_non_contiguous_inputs(dtype):
    values = mixed_values(5 * 6 * 7 * 8, dtype, seed=10).reshape(5, 6, 7, 8)
    gradients = mixed_values(values.size, dtype, seed=11).reshape(values.shape)
    kept = values.copy()
    for strided in (lambda a: a.transpose(0, 2, 3, 1), lambda a: a[:, :, ::2, ::-1],
                    np.asfortranarray):
        input, grad_output = strided(values), strided(gradients)
        output = F.relu(input)
        assert output.flags.c_contiguous and not np.shares_memory(output, values)
        assert_bitwise_equal(output, np.maximum(input, 0))
        output = strided(np.maximum(values, 0))
        with np.errstate(invalid="ignore"):
            assert_bitwise_equal(F.relu_backward(grad_output, output),
                                 grad_output * (output > 0))
    assert_bitwise_equal(values, kept)


def test_zero_dimensional_and_list_inputs():
    assert_bitwise_equal(F.relu(np.float32(-2.0)), np.maximum(np.float32(-2.0), 0))
    assert F.relu(np.float32(-2.0)).shape == ()
    assert_bitwise_equal(F.relu([[-1.0, 2.0]]), np.array([[0.0, 2.0]]))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_relu_does_not_depend_on_thread_count(dtype, restore_num_threads):
    input = mixed_values(5 * CHUNK + 11, dtype, seed=12)
    grad_output = mixed_values(input.size, dtype, seed=13)
    results = []
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        output = F.relu(input)
        results.append((output, F.relu_backward(grad_output, output)))
    for one_thread, two_threads in zip(*results):
        assert_bitwise_equal(two_threads, one_thread)
    assert_bitwise_equal(results[1][0], np.maximum(input, 0))


def test_relu_errors():
    with pytest.raises(TypeError, match="relu: input must be float32 or float64"):
        F.relu(np.arange(3))
    with pytest.raises(TypeError, match="relu: inplace=True needs an ndarray input, got list"):
        F.relu([1.0, -1.0], inplace=True)
    read_only = np.zeros(3)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="relu: inplace=True needs a writeable input"):
        F.relu(read_only, inplace=True)
    assert_bitwise_equal(F.relu(read_only), np.zeros(3))
    with pytest.raises(ValueError, match=r"relu_backward: grad_output and output must have "
                                         r"the same shape, got \(2, 3\) and \(3, 2\)"):
        F.relu_backward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="relu_backward: all arrays must share one dtype"):
        F.relu_backward(np.zeros(3, np.float32), np.zeros(3))


# --------------------------------------------------------------------------------------
# nn.ReLU on the kernels
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("inplace", [False, True], ids=["copy", "inplace"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_relu_layer_matches_its_numpy_formulas(dtype, inplace):
    input = mixed_values(2 * 3 * 40 * 50, dtype, seed=14).reshape(2, 3, 40, 50)
    grad_output = mixed_values(input.size, dtype, seed=15).reshape(input.shape)
    expected = np.maximum(input, 0)
    with np.errstate(invalid="ignore"):
        expected_grad = grad_output * (expected > 0)
    layer = nn.ReLU(inplace=inplace)
    output = layer(input)
    assert (output is input) == inplace
    assert_bitwise_equal(output, expected)
    assert_bitwise_equal(layer.backward(grad_output), expected_grad)
