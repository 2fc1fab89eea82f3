"""Torch classifier networks: the report's bottleneck ResNet and its small Keras CNN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from malgan.nn.nets import IMG_SIZE, KERNEL, RGB, keras_init

RESNET_STAGES = (3, 4, 6)
RESNET_FILTERS = (64, 128, 256, 512)
BOTTLENECK_REDUCTION = 4  # bottleneck width = block output width / 4 (He et al. 2016)
RESNET_DROPOUT = 0.2
SIMPLE_CNN_WIDTHS = (32, 32, 64)
SIMPLE_CNN_HIDDEN = 64
POOL = 2


class Bottleneck(nn.Module):
    """Bottleneck residual block (He et al. 2016): 1x1 reduce, 3x3 (carries the stride), 1x1.

    The last BatchNorm's gain starts at zero so that each block starts as the identity (Goyal et
    al. 2017). A 1x1 strided convolution with BatchNorm projects the shortcut when the shape
    changes.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the 3x3 convolution and of the projection.
    """

    def __init__(self, *, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        mid = out_channels // BOTTLENECK_REDUCTION
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, KERNEL, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        nn.init.zeros_(self.body[-1].weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x [N, C_in, H, W] to [N, C_out, H/stride, W/stride]."""
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetClassifier(nn.Module):
    """The report's bottleneck ResNet (He et al. 2016), laid out for 64x64 cells.

    Stem: Conv3x3 stride 2 (3 -> filters[0]) + BatchNorm + ReLU, taking 64x64 to 32x32 without a
    max-pool (at this size a stride-1 stem would quadruple the cost of every stage). Then
    len(stages) stages: stage i has stages[i] bottleneck blocks of output width filters[i + 1]
    and bottleneck width filters[i + 1] // 4; the first block of every stage after the first
    halves the resolution (32, 16, 8 pixels for three stages), and the first block of every stage
    projects its shortcut with a 1x1 convolution. Global average pooling gives the features
    [N, filters[-1]], then dropout and a linear layer the logits. The last BatchNorm gain of
    each block starts at zero (Goyal et al. 2017). The defaults have 2,149,058 parameters
    (8.2 MiB as float32, less once export folds BatchNorm into the convolutions).

    Args:
        stages: Blocks per stage.
        filters: Stem width, then the output width of each stage (len(stages) + 1 entries).
        num_classes: Number of classes.
        dropout: Dropout probability on the pooled features during training.

    Raises:
        ValueError: If filters does not have one more entry than stages.
    """

    def __init__(
        self,
        *,
        stages: tuple[int, ...] = RESNET_STAGES,
        filters: tuple[int, ...] = RESNET_FILTERS,
        num_classes: int = 2,
        dropout: float = RESNET_DROPOUT,
    ) -> None:
        super().__init__()
        if len(filters) != len(stages) + 1:
            raise ValueError(
                f"filters needs len(stages) + 1 = {len(stages) + 1} entries, got {len(filters)}"
            )
        self.num_classes = num_classes
        self.img_size = IMG_SIZE
        self.feature_dim = filters[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(RGB, filters[0], KERNEL, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(filters[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for i, depth in enumerate(stages):
            for j in range(depth):
                blocks.append(
                    Bottleneck(
                        in_channels=filters[i] if j == 0 else filters[i + 1],
                        out_channels=filters[i + 1],
                        stride=2 if i > 0 and j == 0 else 1,
                    )
                )
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, num_classes)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classify x [N, 3, 64, 64] in [-1, 1]; returns (logits [N, K], features [N, F])."""
        features = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.head(self.dropout(features)), features


class SimpleCNN(nn.Module):
    """The report's small Keras CNN, 176,290 parameters.

    Three of (Conv3x3 'valid', ReLU, MaxPool 2) with 32, 32 and 64 channels (64 -> 31 -> 14 -> 6
    pixels), Flatten (6*6*64 = 2,304), Dense 64 + ReLU (the features), Dense num_classes.

    Args:
        num_classes: Number of classes.
    """

    def __init__(self, *, num_classes: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.img_size = IMG_SIZE
        self.feature_dim = SIMPLE_CNN_HIDDEN
        layers: list[nn.Module] = []
        size, c_in = IMG_SIZE, RGB
        for c_out in SIMPLE_CNN_WIDTHS:
            layers += [nn.Conv2d(c_in, c_out, KERNEL), nn.ReLU(inplace=True), nn.MaxPool2d(POOL)]
            size, c_in = (size - (KERNEL - 1)) // POOL, c_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(c_in * size * size, SIMPLE_CNN_HIDDEN), nn.ReLU())
        self.head = nn.Linear(SIMPLE_CNN_HIDDEN, num_classes)
        keras_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classify x [N, 3, 64, 64] in [-1, 1]; returns (logits [N, K], features [N, 64])."""
        features = self.hidden(self.body(x))
        return self.head(features), features
