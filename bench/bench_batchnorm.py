"""BatchNorm2d in training mode (batch statistics), forward and forward+backward: fastconv.nn
beside torch.nn, and the reference's batch_norm (forward) once it has one."""
import numpy as np
import pytest

from fastconv.bench import FULL, Unavailable

BATCH = FULL.batch
# (channels, size): the activations BatchNorm2d normalises in NET-M.
SHAPES = [(64, 32), (128, 16), (256, 8)]
PASSES = ("forward", "forward+backward")


def _arrays(channels, size):
    rng = np.random.default_rng(0)
    input = rng.standard_normal((BATCH, channels, size, size), dtype=np.float32)
    return input, rng.standard_normal(input.shape, dtype=np.float32)


def _fastconv(channels, size, pass_):
    try:
        import fastconv.nn as nn
    except ImportError as error:
        raise Unavailable(f"fastconv.nn is not available yet ({error})") from None
    if not hasattr(nn, "BatchNorm2d"):
        raise Unavailable("fastconv.nn.BatchNorm2d is not available yet")
    layer = nn.BatchNorm2d(channels)
    layer.train()
    input, grad_output = _arrays(channels, size)
    if pass_ == "forward":
        return lambda: layer(input)

    def forward_backward():
        layer(input)
        layer.backward(grad_output)
    return forward_backward


def _reference(channels, size, pass_):
    import fastconv.reference as reference
    if not hasattr(reference, "batch_norm"):
        raise Unavailable("fastconv.reference.batch_norm is not available yet")
    if pass_ != "forward":
        raise Unavailable("fastconv.reference specifies no batch-norm backward")
    input, _ = _arrays(channels, size)
    mean, variance = np.zeros(channels, np.float32), np.ones(channels, np.float32)
    weight, bias = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    # torch.nn.functional.batch_norm's signature, as every reference op follows.
    return lambda: reference.batch_norm(input, mean, variance, weight, bias, training=True)


def _torch(channels, size, pass_):
    import torch
    layer = torch.nn.BatchNorm2d(channels)
    layer.train()
    input, grad_output = (torch.from_numpy(array) for array in _arrays(channels, size))
    if pass_ == "forward":
        def forward():
            with torch.no_grad():
                layer(input)
        return forward
    input.requires_grad_()

    def forward_backward():
        input.grad = None
        layer(input).backward(grad_output)
    return forward_backward


RUNNERS = {"fastconv": _fastconv, "reference": _reference, "torch": _torch}


@pytest.mark.parametrize("library", tuple(RUNNERS))
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: f"N{BATCH}-C{shape[0]}-{shape[1]}x{shape[1]}")
def bench_batchnorm(shape, pass_, library, measure):
    channels, size = shape
    measure(lambda: RUNNERS[library](channels, size, pass_), library,
            group=f"batch_norm N{BATCH}-C{channels}-{size}x{size} {pass_}")
