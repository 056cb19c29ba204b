"""ResNets in torchvision's layout, randomly initialised (He et al. 2016, "Deep Residual Learning for
Image Recognition"; the module and parameter layout of ``torchvision/models/resnet.py``).

FDAE's image encoder is torchvision's ``resnet18(weights=None)`` without its classifier
(``wuancong/FDAE cmfnet/content_mask_generator.py``). torchvision cannot be installed next to the
CPU torch build this project runs on, so the network is written here: the same stem (7x7 stride-2
convolution, BatchNorm, ReLU, 3x3 stride-2 max-pool), the same four stages of basic or bottleneck
blocks (stride 2 in the first 3x3 convolution of stages 2-4, a 1x1 convolution + BatchNorm on the
shortcut where the shape changes), global average pooling and an optional linear classifier, and
torchvision's initialisation (Kaiming-normal fan-out convolutions, BatchNorm weight 1 and bias 0,
PyTorch's default Linear init). Parameter counts equal torchvision's: ResNet-18 11,689,512 and
ResNet-50 25,557,032 with the 1000-class classifier, 11,176,512 and 23,508,032 without.

``widths`` and ``blocks`` shrink the network for CPU tests (e.g. a one-block-per-stage ResNet of
widths 32, 64, 128, 128); the paper configurations are :func:`resnet18` and :func:`resnet50`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from disentkit.errors import ConfigError

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet", "resnet18", "resnet50", "RESNET_DEPTHS"]

#: torchvision's block kind and blocks per stage for each depth
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    """The projection shortcut (1x1 convolution + BatchNorm) where the shape changes."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(cin, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, torchvision's "ResNet v1.5"), 1x1 expand by 4 (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A torchvision-layout ResNet ``(B, C, H, W) -> (B, num_classes)``, or the pooled features
    ``(B, feature_dim)`` when ``num_classes`` is 0 (no classifier: FDAE's trunk).

    Module names match torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``), so a
    torchvision state dict loads into it.
    """

    def __init__(self, block: Literal["basic", "bottleneck"] = "basic",
                 blocks: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512),
                 num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ConfigError(f"resnet block must be 'basic' or 'bottleneck', got {str(block)[:40]!r}")
        blocks, widths = tuple(int(b) for b in blocks), tuple(int(w) for w in widths)
        if len(blocks) != 4 or len(widths) != 4 or min(blocks) < 1 or min(widths) < 1:
            raise ConfigError(f"a resnet has 4 stages: give 4 positive block counts and 4 widths, got "
                              f"blocks {list(blocks)[:8]} and widths {list(widths)[:8]}")
        kind = _BLOCKS[block]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = widths[0]
        stages = []
        for i, (count, width) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(count):
                layers.append(kind(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width * kind.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        #: width of the pooled features
        self.feature_dim = cin
        self.fc = nn.Linear(cin, num_classes) if num_classes else None
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's init: Kaiming-normal (fan-out, ReLU) convolutions, BatchNorm (1, 0);
        the classifier keeps PyTorch's default Linear init."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """The globally pooled features ``(B, feature_dim)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.features(x)
        return f if self.fc is None else self.fc(f)


def resnet(depth: int = 18, *, widths: Sequence[int] | None = None, blocks: Sequence[int] | None = None,
           num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """A ResNet of torchvision's ``depth`` (18, 34, 50), optionally narrowed (``widths``) or made
    shallower (``blocks`` per stage) for small tests."""
    if depth not in RESNET_DEPTHS:
        raise ConfigError(f"resnet depth must be one of {', '.join(map(str, RESNET_DEPTHS))}, got "
                          f"{str(depth)[:20]}")
    kind, default_blocks = RESNET_DEPTHS[depth]
    return ResNet(kind, blocks or default_blocks, widths or (64, 128, 256, 512),  # type: ignore[arg-type]
                  num_classes=num_classes, in_channels=in_channels)


def resnet18(num_classes: int = 1000) -> ResNet:
    """torchvision's ``resnet18(weights=None)`` (11,689,512 parameters; 0 classes: the trunk)."""
    return resnet(18, num_classes=num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """torchvision's ``resnet50(weights=None)`` (25,557,032 parameters)."""
    return resnet(50, num_classes=num_classes)
