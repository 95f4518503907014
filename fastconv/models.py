"""Reference networks for 3x32x32 images (CIFAR-10), used by the benchmarks.

Each builder takes the layer namespace to build from: fastconv.nn by default, or
torch.nn, whose layer names and signatures fastconv.nn shares. One definition builds
both libraries' copies, so the networks compared in `fastconv bench` are identical by
construction.
"""


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
