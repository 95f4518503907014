"""Networks for 3x32x32 images (CIFAR-10): the zoo of `fastconv train` and the benchmarks.

Each builder takes the layer namespace to build from: fastconv.nn by default, or
torch.nn, whose layer names and signatures fastconv.nn shares. One definition builds
both libraries' copies, so the networks compared in `fastconv bench` are identical by
construction.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fastconv import init


def _default_nn(nn):
    if nn is None:
        import fastconv.nn as nn
    return nn


def net_s(nn=None, num_classes=10):
    """NET-S: conv5-32, pool, conv5-64, pool, fc256, fc10; ReLU after the convs and fc256.

    Input (N, 3, 32, 32), output logits (N, num_classes). About 0.033 GFLOP per image forward.
    """
    nn = _default_nn(nn)
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(),
        nn.Linear(256, num_classes))


def net_m(nn=None, num_classes=10):
    """NET-M: 3x3 convs 64-128-pool-128-256-pool-256-pool, BatchNorm + ReLU after each
    conv, global average pool, fc10.

    The convs have no bias: the BatchNorm after each one would cancel it.
    Input (N, 3, 32, 32), output logits (N, num_classes). About 0.46 GFLOP per image forward.
    """
    nn = _default_nn(nn)
    layers = []
    in_channels = 3
    for item in (64, 128, "pool", 128, 256, "pool", 256, "pool"):
        if item == "pool":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(in_channels, item, 3, padding=1, bias=False),
                   nn.BatchNorm2d(item), nn.ReLU()]
        in_channels = item
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes)]
    return nn.Sequential(*layers)


def lenet5(nn=None, num_classes=10):
    """LeNet-5 (LeCun et al., 1998) on 3 x 32 x 32 input, with ReLU and max pooling.

    conv 3->6 k5, pool 2, conv 6->16 k5, pool 2, fc 400->120->84->num_classes;
    62,006 parameters at 10 classes.
    """
    nn = _default_nn(nn)
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes))


def allcnn_c(nn=None, num_classes=10):
    """All-CNN-C (Springenberg et al., "Striving for Simplicity", 2015): no pooling,
    stride-2 convolutions downsample, a 1x1 convolution classifies and global average
    pooling reads out.

    BatchNorm follows each convolution but the last: without it the network needs
    hundreds of epochs, with it tens. The paper's dropout (0.2 on the input, 0.5 after
    each downsampling) is left out: it regularises 350 epochs without BatchNorm, and over
    30 epochs with BatchNorm it held training accuracy to 87.7% and test accuracy to 84.2%.
    """
    nn = _default_nn(nn)

    def conv(c_in, c_out, kernel, stride=1, padding=1):
        return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(
        *conv(3, 96, 3), *conv(96, 96, 3), *conv(96, 96, 3, stride=2),
        *conv(96, 192, 3), *conv(192, 192, 3), *conv(192, 192, 3, stride=2),
        *conv(192, 192, 3, padding=0), *conv(192, 192, 1, padding=0),
        nn.Conv2d(192, num_classes, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


def fastnet(nn=None, num_classes=10, widths=(32, 64, 128)):
    """A small residual-free network tuned for accuracy per CPU-minute.

    After the fast CIFAR-10 recipes (airbench): a stem convolution, then three blocks
    of conv - max pool - BN - GELU - conv - BN - GELU, each halving the resolution and
    widening, a global max pool and a linear read-out. All 3x3 convolutions at
    stride 1 with >= 32 channels: the shape the GEMM kernels run best.
    """
    nn = _default_nn(nn)
    stem = widths[0]
    layers = [nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
    c_in = stem
    for width in widths:
        layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.MaxPool2d(2),
                   nn.BatchNorm2d(width), nn.ReLU(),
                   nn.Conv2d(width, width, 3, padding=1, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU()]
        c_in = width
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes, bias=False)]
    return nn.Sequential(*layers)


def fastnet_wide(nn=None, num_classes=10):
    """fastnet at the widths of airbench94 (64, 256, 256): slower, more accurate."""
    return fastnet(nn, num_classes, widths=(64, 256, 256))


def _scale(nn, factor):
    """A layer y = x * factor (a constant) in the namespace nn: torch.nn has none, and
    torch's autograd ignores the backward that fastconv.nn calls."""
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.factor = factor

        def forward(self, input):
            return input * self.factor

        def backward(self, grad_output):
            return grad_output * self.factor

        def extra_repr(self):
            return f"{self.factor:g}"
    return Scale()


def airnet(nn=None, num_classes=10, widths=(32, 128, 128)):
    """The architecture of the airbench94 recipe (Keller Jordan, 2024) at half width.

    A frozen 2x2 patch-whitening convolution (3 -> 24 channels, 31x31 output, its weights
    set from the data by init_whitening; only its bias trains), then three blocks of
    conv - max pool - BN - GELU - conv - BN - GELU at widths 32/128/128 (15x15, 7x7, 3x3),
    a 3x3 max pool, a linear read-out without bias and a fixed 1/9 scale. The 3x3
    convolutions start as identities on their first input channels (Dirac) plus the usual
    random init on the rest; the BatchNorms have no trainable scale, so only their shifts
    train.
    """
    nn = _default_nn(nn)
    # torch.nn.init for torch.nn's tensors.
    inits = getattr(nn, "init", init)

    def conv(c_in, c_out):
        layer = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        inits.dirac_(layer.weight.data[:c_in])
        return layer

    def norm(channels):
        # PyTorch's momentum 0.4: running statistics follow the last few batches, which
        # suits the few large steps of this recipe.
        layer = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
        layer.weight.requires_grad = False
        return layer
    whiten = nn.Conv2d(3, 24, 2, bias=True)
    whiten.weight.requires_grad = False
    inits.zeros_(whiten.bias)
    layers, c_in = [whiten, nn.GELU()], 24
    for width in widths:
        layers += [conv(c_in, width), nn.MaxPool2d(2), norm(width), nn.GELU(),
                   conv(width, width), norm(width), nn.GELU()]
        c_in = width
    layers += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(c_in, num_classes, bias=False),
               _scale(nn, 1 / 9)]
    return nn.Sequential(*layers)


def airnet_wide(nn=None, num_classes=10):
    """airnet at airbench94's full widths (64, 256, 256)."""
    return airnet(nn, num_classes, widths=(64, 256, 256))


def check_whitening(conv):
    """Raise ValueError unless conv can be a whitening stem: a k x k convolution over C
    channels with 2 * C * k * k filters (what init_whitening needs)."""
    weight = getattr(getattr(conv, "weight", None), "data", None)
    if getattr(weight, "ndim", None) != 4:
        raise ValueError(f"init_whitening: needs a 2-D convolution, got {type(conv).__name__}")
    filters, channels, k_h, k_w = weight.shape
    if filters != 2 * channels * k_h * k_w:
        raise ValueError(f"init_whitening: a conv with {channels} input channels and a "
                         f"{k_h}x{k_w} kernel needs {2 * channels * k_h * k_w} filters, "
                         f"got {filters}")


def init_whitening(conv, images, eps=5e-4):
    """Set a k x k convolution with 2 * C * k * k outputs to whiten the k x k patches of images.

    Its filters are the eigenvectors of the patches' second-moment matrix, each divided by
    sqrt(eigenvalue + eps), followed by their negatives (so a ReLU after it keeps both
    signs). images: (N, C, H, W) float, normalised as the network sees them.
    """
    check_whitening(conv)
    weight = conv.weight.data
    filters, channels, k_h, k_w = weight.shape
    moments = np.zeros((filters // 2, filters // 2))
    count = 0
    for start in range(0, len(images), 500):     # chunks bound the patch copy's memory
        patches = sliding_window_view(images[start:start + 500], (k_h, k_w), axis=(2, 3))
        rows = patches.transpose(0, 2, 3, 1, 4, 5).reshape(-1, filters // 2).astype(np.float64)
        moments += rows.T @ rows
        count += len(rows)
    eigenvalues, eigenvectors = np.linalg.eigh(moments / count)
    scaled = (eigenvectors / np.sqrt(eigenvalues + eps)).T[::-1]     # largest first
    weight[...] = np.concatenate([scaled, -scaled]).reshape(weight.shape)


MODELS = {"lenet5": lenet5, "allcnn-c": allcnn_c, "fastnet": fastnet, "fastnet-wide": fastnet_wide,
          "airnet": airnet, "airnet-wide": airnet_wide, "net-s": net_s, "net-m": net_m}


def build(name, num_classes=10):
    """The model called name (one of MODELS), freshly initialised."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes)
