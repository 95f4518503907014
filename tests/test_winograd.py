"""algo="winograd" against the NumPy reference, with F(4x4, 3x3) and F(2x2, 3x3) tiles.

Forward and both gradients (the input gradient by the Winograd kernel on grad_output,
by im2col beyond padding 2; the weight gradient from the same tiles) over named and
seeded random 3x3 layers (1..40 channels, odd and tiny images, padding 0..3 and (h, w)
pairs, batches of one and of several blocks, with and without bias) in float32 and
float64; each result is compared with the float64 reference on the same values. Beside
that: the 1e-3 float32 bound on 128- and 256-channel layers, central finite differences,
bitwise thread-count invariance, the kernel transform, the output transform and the
weight gradient's inverse transform against their matrix definitions, the forward pass
into a NaN-filled output (every tile written), the empty batch, and the ValueError for
unsupported layers.
"""
import functools
import zlib
from dataclasses import dataclass
from typing import Tuple, Union

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
import fastconv.reference as reference
from fastconv._isa import kernels

# Every test once per ISA level (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isa_level")

DTYPES = [np.float32, np.float64]
# Relative to max(1, max |expected|), as in test_conv2d: F(2x2, 3x3) rounds about as
# im2col does on these small layers (its transforms add a few additions per value).
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
# float32 bound on wide layers, relative to max |expected| (the task's accuracy target).
WIDE_LAYER_BOUND = 1e-3
RESULT_NAMES = ("output", "grad_input", "grad_weight", "grad_bias")


def dtype_id(dtype):
    return np.dtype(dtype).name


@dataclass(frozen=True)
class Layer:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    padding: Union[int, Tuple[int, int], str] = 1
    bias: bool = True
    label: str = ""

    @property
    def id(self):
        text = (f"N{self.batch}-C{self.in_channels}-F{self.out_channels}-"
                f"{self.height}x{self.width}-p{self.padding}" + ("" if self.bias else "-nobias"))
        return f"{self.label}:{text}" if self.label else text

    @property
    def output_size(self):
        if self.padding == "valid":
            pad_h = pad_w = 0
        elif self.padding == "same":
            pad_h = pad_w = 1
        else:
            pad_h, pad_w = self.padding if isinstance(self.padding, tuple) else (self.padding,) * 2
        return self.height + 2 * pad_h - 2, self.width + 2 * pad_w - 2

    def arrays(self, dtype, seed):
        """Seeded (input, weight, bias, grad_output) in dtype; values are N(0, 1)."""
        rng = np.random.default_rng(seed)
        input = rng.standard_normal((self.batch, self.in_channels, self.height, self.width))
        weight = rng.standard_normal((self.out_channels, self.in_channels, 3, 3))
        bias = rng.standard_normal(self.out_channels) if self.bias else None
        grad_output = rng.standard_normal((self.batch, self.out_channels) + self.output_size)
        return tuple(None if a is None else a.astype(dtype)
                     for a in (input, weight, bias, grad_output))


NAMED_LAYERS = [
    Layer(2, 3, 4, 1, 1, padding=1, label="input-1x1"),
    Layer(2, 3, 4, 1, 1, padding=2, label="input-1x1-pad2"),
    Layer(1, 2, 3, 2, 3, padding=1, label="input-2x3"),
    Layer(3, 5, 4, 5, 4, padding=1, label="odd-5x4"),
    Layer(2, 4, 6, 5, 4, padding=0, label="valid-5x4"),
    Layer(2, 4, 6, 7, 7, padding=2, label="pad2"),
    Layer(2, 4, 6, 7, 7, padding=3, label="pad3-input-gradient-by-im2col"),
    Layer(2, 3, 5, 6, 7, padding=(0, 2), label="pad-pair"),
    Layer(2, 3, 5, 6, 7, padding=(3, 1), label="pad-pair-beyond-2"),
    Layer(2, 4, 4, 6, 5, padding="same", label="same"),
    Layer(2, 4, 4, 6, 5, padding="valid", label="valid-string"),
    Layer(1, 1, 1, 3, 3, padding=0, label="one-output-pixel"),
    Layer(1, 40, 33, 7, 7, padding=1, label="channels-past-lanes"),
    # 15x15 outputs are 16 tiles of 4x4 (64 of 2x2), so WINOGRAD_TILES = 128 puts 8 (2)
    # images in a block: 37 images are full blocks and a partial one.
    Layer(37, 3, 5, 15, 15, padding=1, label="several-blocks"),
    Layer(3, 6, 9, 9, 8, padding=1, bias=False, label="nobias"),
    # float32 moves whole groups of 8 channels through vector transposes, 4 pixels at a
    # time, the last block of a row overlapping the one before; scalar loops the rest:
    # 20 and 19 channels, rows of 19 pixels, and 17x19 outputs of full and cropped 4x4
    # tiles exercise both sides of each boundary (the random layers: rows of 1 to 9).
    Layer(2, 20, 19, 17, 19, padding=1, label="vector-transposes"),
    Layer(2, 16, 8, 16, 16, padding=1, label="full-tiles-only"),
]


def random_layer(rng):
    while True:
        padding = int(rng.integers(0, 4)) if rng.random() < 0.7 else (
            tuple(int(p) for p in rng.integers(0, 4, size=2)))
        layer = Layer(batch=int(rng.choice([1, 1, 2, 3, 20])),
                      in_channels=int(rng.integers(1, 41)), out_channels=int(rng.integers(1, 41)),
                      height=int(rng.integers(1, 10)), width=int(rng.integers(1, 10)),
                      padding=padding, bias=bool(rng.random() < 0.8))
        if min(layer.output_size) >= 1:
            return layer


LAYERS = NAMED_LAYERS + [random_layer(np.random.default_rng(2016)) for _ in range(40)]


def assert_close(actual, expected, dtype, name, tolerance=None):
    """actual within tolerance of expected, relative to max(1, max |expected|)."""
    assert actual is not None, f"{name} is None"
    assert actual.dtype == np.dtype(dtype), f"{name}: dtype {actual.dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    tolerance = TOLERANCE[np.dtype(dtype)] if tolerance is None else tolerance
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale,
                               err_msg=name)


def run(layer, arrays, algo="winograd"):
    input, weight, bias, grad_output = arrays
    output = F.conv2d(input, weight, bias, padding=layer.padding, algo=algo)
    grads = F.conv2d_backward(grad_output, input, weight, padding=layer.padding, algo=algo,
                              output_mask=(True, True, layer.bias))
    return (output,) + tuple(grads)


@functools.lru_cache(maxsize=None)
def expected_results(layer, dtype):
    """The float64 reference on the dtype values (read-only, shared by the tests)."""
    arrays = layer.arrays(dtype, seed=zlib.crc32(layer.id.encode()))
    input, weight, bias, grad_output = (None if a is None else a.astype(np.float64)
                                        for a in arrays)
    output = reference.conv2d(input, weight, bias, padding=layer.padding)
    grads = reference.conv2d_backward(grad_output, input, weight, padding=layer.padding,
                                      output_mask=(True, True, layer.bias))
    return arrays, (output,) + tuple(grads)


@pytest.fixture(params=[4, 2], ids=["F4x4", "F2x2"])
def tile(request, monkeypatch):
    """Both tile sizes, for the forward pass, the input gradient and the weight gradient."""
    monkeypatch.setattr(F, "WINOGRAD_TILE", request.param)
    monkeypatch.setattr(F, "WINOGRAD_WEIGHT_TILE", request.param)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.id)
def test_winograd_matches_reference(layer, dtype, tile):
    arrays, expected = expected_results(layer, np.dtype(dtype))
    for name, actual, wanted in zip(RESULT_NAMES, run(layer, arrays), expected):
        if wanted is None:
            assert actual is None, f"{name}: expected None"
        else:
            assert_close(actual, wanted, dtype, name)
            assert actual.flags.c_contiguous


def small_blocks(monkeypatch):
    """Blocks of a few images (an 8x7 output has 4 tiles of 4x4, 16 of 2x2), so small
    batches run several blocks, a partial last one, and several weight-gradient chunks."""
    monkeypatch.setattr(F, "WINOGRAD_TILES", 20)
    monkeypatch.setattr(F, "WINOGRAD_WEIGHT_TILES", 20)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_small_blocks_match_reference(padding, tile, monkeypatch):
    small_blocks(monkeypatch)
    layer = Layer(7, 5, 6, 8, 7, padding=padding)
    arrays, expected = expected_results(layer, np.dtype(np.float64))
    for name, actual, wanted in zip(RESULT_NAMES, run(layer, arrays), expected):
        assert_close(actual, wanted, np.float64, name)


WIDE_LAYERS = [Layer(2, 128, 128, 8, 8, label="wide-128"),
               Layer(1, 256, 64, 8, 8, label="wide-256-in"),
               Layer(1, 64, 256, 8, 8, padding=0, label="wide-256-out")]


@pytest.mark.parametrize("layer", WIDE_LAYERS, ids=lambda layer: layer.id)
def test_float32_error_on_wide_layers(layer, tile):
    """max |float32 - float64 reference| / max |reference| <= 1e-3, for every result."""
    arrays, expected = expected_results(layer, np.dtype(np.float32))
    for name, actual, wanted in zip(RESULT_NAMES, run(layer, arrays), expected):
        error = float(np.max(np.abs(actual - wanted)) / np.max(np.abs(wanted)))
        assert error <= WIDE_LAYER_BOUND, f"{name}: relative error {error:.2e}"


def central_difference(loss, array, step=1e-3):
    """d loss / d array by central differences (exact up to rounding: conv2d is linear)."""
    gradient = np.zeros_like(array)
    flat = array.reshape(-1)
    for k in range(flat.size):
        original = flat[k]
        flat[k] = original + step
        plus = loss()
        flat[k] = original - step
        minus = loss()
        flat[k] = original
        gradient.flat[k] = (plus - minus) / (2 * step)
    return gradient


@pytest.mark.parametrize("padding", [1, (2, 0)], ids=["p1", "p2x0"])
def test_gradients_match_central_differences(padding, tile):
    layer = Layer(2, 3, 2, 5, 4, padding=padding)
    input, weight, bias, _ = layer.arrays(np.float64, seed=3)
    projection = np.random.default_rng(4).standard_normal((2, 2) + layer.output_size)

    def loss():
        output = F.conv2d(input, weight, bias, padding=padding, algo="winograd")
        return float(np.sum(output * projection))

    grads = F.conv2d_backward(projection, input, weight, padding=padding, algo="winograd")
    for name, actual, array in zip(RESULT_NAMES[1:], grads, (input, weight, bias)):
        numeric = central_difference(loss, array)
        np.testing.assert_allclose(actual, numeric, rtol=1e-7, atol=1e-7, err_msg=name)


def assert_bitwise_equal(actual, expected, name):
    as_bits = np.uint32 if actual.dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(actual.view(as_bits), expected.view(as_bits), err_msg=name)


@pytest.mark.parametrize("blocks", ["default-blocks", "small-blocks"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layer", [Layer(37, 6, 10, 7, 7, label="several-blocks"),
                                   Layer(3, 16, 24, 12, 11, padding=2, label="wide-image"),
                                   Layer(5, 9, 7, 6, 6, padding=3, label="pad3")],
                         ids=lambda layer: layer.id)
def test_results_do_not_depend_on_thread_count(layer, dtype, blocks, tile, restore_num_threads,
                                               monkeypatch):
    if blocks == "small-blocks":
        small_blocks(monkeypatch)
    arrays = layer.arrays(dtype, seed=1)
    results = {}
    for threads in (1, 2):
        fastconv.set_num_threads(threads)
        results[threads] = run(layer, arrays)
    for name, actual, expected in zip(RESULT_NAMES, results[2], results[1]):
        assert_bitwise_equal(actual, expected, f"{name} with 2 threads")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("tile_size", [2, 4], ids=["F2x2", "F4x4"])
def test_forward_writes_every_output_tile(tile_size, dtype):
    """One block of five images, 10 tiles of 4x4 each (27 of 2x2), into a NaN-filled
    output: float32 transforms the products back in strips of 12 tiles, which cross the
    images' boundaries, and a tile left out would stay NaN."""
    layer = Layer(5, 8, 16, 5, 17)
    (input, weight, bias, _), (expected, *_) = expected_results(layer, np.dtype(dtype))
    transformed = np.empty((kernels.winograd.transform_points(tile_size), 8,
                            kernels.winograd.round_up(16)), dtype)
    kernels.winograd.transform_weight(weight, transformed, False, tile_size, 1)
    workspace = np.empty((1, kernels.winograd.workspace_size(8, 16, 5, 17, 5, tile_size)), dtype)
    output = np.full((5, 16, 5, 17), np.nan, dtype)
    kernels.winograd.conv2d_forward(input, transformed, bias, False, output, 1, 1, tile_size, 5,
                                    workspace, 1)
    assert_close(output, expected, dtype, "output")


# The kernel transforms of F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray 2016).
G = {2: np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]]),
     4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])}


# A^T of F(2x2, 3x3) and F(4x4, 3x3), which turns a transformed tile m into A^T m A.
A_T = {2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]]),
       4: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]])}
def unpanel(transformed):
    """transformed's point matrices row-major, from the panels of float32 transformed
    weights (blocks of the level's panel width, two lane groups, the last one lane group
    wide when the pitch is not a multiple of the panel, each block row-major and
    contiguous)."""
    if transformed.dtype != np.float32 or not kernels.winograd.FLOAT32_GEMM_KERNEL:
        return transformed
    panel = kernels.conv_gemm.panel_width()
    points, rows, pitch = transformed.shape
    flat = transformed.reshape(points, rows * pitch)
    blocks = [flat[:, start * rows:(start + width) * rows].reshape(points, rows, width)
              for start in range(0, pitch, panel) for width in [min(panel, pitch - start)]]
    return np.concatenate(blocks, axis=2)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("tile_size", [2, 4], ids=["F2x2", "F4x4"])
@pytest.mark.parametrize("adjoint", [False, True], ids=["forward", "adjoint"])
@pytest.mark.parametrize("columns", [10, 20, 33])
def test_transform_weight_is_g_g_gt(columns, adjoint, tile_size, dtype):
    """transformed[p] holds (G g G^T)[p] for each kernel, zeros past the channels; column
    counts that end in a partial lane group, a whole one and a partial panel (at 8 lanes;
    at 16, 10 and 33 end in partial lane groups)."""
    rows = 3
    out_channels, in_channels = (rows, columns) if adjoint else (columns, rows)
    weight = np.random.default_rng(0).standard_normal((out_channels, in_channels, 3, 3))
    points = (tile_size + 2) ** 2
    assert kernels.winograd.transform_points(tile_size) == points
    transformed = np.full((points, rows, kernels.winograd.round_up(columns)), np.nan, dtype)
    kernels.winograd.transform_weight(weight.astype(dtype), transformed, adjoint, tile_size, 1)
    transformed = unpanel(transformed)
    filters = weight[:, :, ::-1, ::-1] if adjoint else weight.transpose(1, 0, 2, 3)
    g = G[tile_size]
    expected = np.einsum("ai,rcij,bj->abrc", g, filters, g).reshape(points, rows, columns)
    tolerance = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(transformed[:, :, :columns], expected, rtol=tolerance,
                               atol=tolerance)
    assert not np.any(transformed[:, :, columns:])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("tile_size", [2, 4], ids=["F2x2", "F4x4"])
def test_output_transform_is_at_m_a(tile_size, dtype):
    """image[c] holds A^T m A + bias[c] of each tile m, cropped to the image: 19 channels
    (two full lane groups and three more) and a 9x11 output (full and cropped tiles)."""
    channels, out_h, out_w, side = 19, 9, 11, tile_size + 2
    tiles_h, tiles_w = -(-out_h // tile_size), -(-out_w // tile_size)
    rng = np.random.default_rng(5)
    products = rng.standard_normal((tiles_h * tiles_w, side * side,
                                    kernels.winograd.round_up(channels))).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    # NaN-filled, so that a pixel left unwritten fails the comparison.
    image = np.full((channels, out_h, out_w), np.nan, dtype)
    kernels.winograd.output_transform(products, bias, False, image, tile_size)
    m = products[:, :, :channels].astype(np.float64).reshape(tiles_h, tiles_w, side, side,
                                                             channels)
    y = np.einsum("ip,hwpqc,jq->chiwj", A_T[tile_size], m, A_T[tile_size])
    expected = y.reshape(channels, tiles_h * tile_size, tiles_w * tile_size)[:, :out_h, :out_w]
    assert_close(image, expected + bias[:, None, None], dtype, "image")


@pytest.mark.parametrize("tile_size", [2, 4], ids=["F2x2", "F4x4"])
def test_inverse_weight_is_gt_u_g(tile_size):
    """grad_weight[o, i] += G^T (partials[i] summed over chunks)[:, o] G, added to what
    grad_weight held."""
    out_channels, in_channels, n_chunks = 11, 3, 3
    points = (tile_size + 2) ** 2
    rng = np.random.default_rng(1)
    partials = rng.standard_normal((in_channels, n_chunks, points,
                                    kernels.winograd.round_up(out_channels)))
    grad_weight = rng.standard_normal((out_channels, in_channels, 3, 3))
    sums = np.full((1, points * partials.shape[3]), np.nan)
    expected = grad_weight.copy()
    kernels.winograd.inverse_weight(partials, grad_weight, sums, 1)
    side = tile_size + 2
    u = partials.sum(axis=1)[:, :, :out_channels].reshape(in_channels, side, side, out_channels)
    g = G[tile_size]
    expected += np.einsum("ai,cabo,bj->ocij", g, u, g)
    np.testing.assert_allclose(grad_weight, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_empty_batch_gives_zero_weight_gradient(dtype, tile):
    input = np.zeros((0, 16, 6, 5), dtype)
    weight = np.ones((8, 16, 3, 3), dtype)
    grad_input, grad_weight, grad_bias = F.conv2d_backward(
        np.zeros((0, 8, 6, 5), dtype), input, weight, padding=1, algo="winograd")
    assert grad_input.shape == input.shape
    assert not np.any(grad_weight) and not np.any(grad_bias)


UNSUPPORTED = [
    ("kernel-5x5", (4, 3, 5, 5), {}),
    ("kernel-3x2", (4, 3, 3, 2), {}),
    ("kernel-1x1", (4, 3, 1, 1), {}),
    ("stride-2", (4, 3, 3, 3), dict(stride=2)),
    ("stride-1x2", (4, 3, 3, 3), dict(stride=(1, 2))),
    ("dilation-2", (4, 3, 3, 3), dict(dilation=2)),
    ("groups-3", (6, 1, 3, 3), dict(groups=3)),
]


@pytest.mark.parametrize("weight_shape, kwargs", [(s, k) for _, s, k in UNSUPPORTED],
                         ids=[name for name, _, _ in UNSUPPORTED])
def test_unsupported_layer_is_a_value_error(weight_shape, kwargs):
    input = np.zeros((2, 3, 9, 9))
    weight = np.zeros(weight_shape)
    output = F.conv2d(input, weight, **kwargs, algo="im2col")
    message = r"algo='winograd' needs a 3x3 kernel, stride 1, dilation 1 and groups 1"
    with pytest.raises(ValueError, match=r"^conv2d: " + message):
        F.conv2d(input, weight, **kwargs, algo="winograd")
    with pytest.raises(ValueError, match=r"^conv2d_backward: " + message):
        F.conv2d_backward(np.zeros_like(output), input, weight, **kwargs, algo="winograd")


@pytest.mark.parametrize("layer, algo", [
    (Layer(2, 16, 16, 6, 5, label="wide"), "winograd"),
    (Layer(2, 32, 64, 4, 4, padding=0, label="wider"), "winograd"),
    (Layer(2, 3, 32, 6, 5, label="rgb-first-layer"), "im2col"),
    (Layer(2, 32, 8, 6, 5, label="narrow-output"), "im2col"),
], ids=lambda value: value.id if isinstance(value, Layer) else value)
def test_auto_takes_winograd_for_wide_3x3_layers(layer, algo):
    """algo="auto" gives exactly the results of the algorithm it should have picked."""
    arrays = layer.arrays(np.float32, seed=0)
    for name, actual, expected in zip(RESULT_NAMES, run(layer, arrays, "auto"),
                                      run(layer, arrays, algo)):
        assert_bitwise_equal(actual, expected, name)
