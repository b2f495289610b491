"""The same convolutional networks in PyTorch (eager), for side-by-side step-time ratios only.

Mirrors aigc_jax.models.convnets layer for layer, with the same parameter counts (BatchNorm running
statistics are buffers here and `batch_stats` there, parameters in neither):

- `TorchVggBnCNN` ~ `VggBnCNN`: stages of 3×3 conv (padding 1, no bias) → BatchNorm → ReLU, each ending
  in a 2×2 max-pool, then dropout → linear → ReLU → dropout → linear.
- `TorchDcganGenerator` ~ `DcganGenerator`: linear (no bias) → BN → ReLU → transposed conv 4×4/2 (no bias)
  → BN → ReLU → transposed conv 4×4/2 → tanh.
- `TorchDcganDiscriminator` ~ `DcganDiscriminator`: conv 4×4/2 → LeakyReLU 0.2 → conv 4×4/2 (no bias)
  → BN → LeakyReLU 0.2 → linear 1.
- Both take the same `quarter_convs`: 3×3 conv (padding 1, no bias) → BN → activation blocks at a
  quarter of the image size, after the first BN → ReLU (generator) or the second conv's (discriminator).

Differences that change no shape, parameter count or FLOP count:

- Layout: NCHW here (PyTorch's fast path on CPU), NHWC in Flax. Flattening before a dense layer
  therefore orders features (C, H, W) here and (H, W, C) there, and the generator reshapes its dense
  output to (2w, H/4, W/4) instead of (H/4, W/4, 2w): a fixed permutation of the dense weights.
- BatchNorm: Flax `momentum=0.9` (the weight of the old running average) is PyTorch `momentum=0.1`
  (the weight of the new batch statistic); eps is 1e-5 in both.
- Padding: Flax's 'SAME' for a 4×4 stride-2 conv on an even size pads 1 on each side, exactly
  PyTorch's `padding=1`. For the 4×4 stride-2 transposed convs, `ConvTranspose2d(padding=1)` doubles the
  size as Flax's 'SAME' does, but the two may align the kernel differently by a pixel, and Flax does
  not flip the kernel (`transpose_kernel=False`): a reparametrisation of the same layer.
- Max-pool floors odd sizes in both (7 → 3), as Flax's 'VALID' pooling does.
"""

from collections.abc import Callable, Sequence

import torch
from torch import nn


def param_count(module: nn.Module) -> int:
    """Trainable parameters (not BatchNorm running statistics, which are buffers)."""
    return sum(p.numel() for p in module.parameters())


def _quarter_blocks(channels: int, count: int, activation: Callable[[], nn.Module]) -> list[nn.Module]:
    """`count` × (3×3 conv, padding 1, no bias → BN → activation) at the same resolution and width."""
    blocks: list[nn.Module] = []
    for _ in range(count):
        blocks += [
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1),
            activation(),
        ]
    return blocks


class TorchVggBnCNN(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        stage_features: Sequence[int] = (32, 64, 128),
        stage_convs: Sequence[int] = (1, 2, 2),
        hidden: int = 256,
        dropout: float = 0.3,
        image_shape: Sequence[int] = (28, 28, 1),
    ):
        super().__init__()
        height, width, channels = image_shape
        layers: list[nn.Module] = []
        for features, convs in zip(stage_features, stage_convs, strict=True):
            for _ in range(convs):
                layers += [
                    nn.Conv2d(channels, features, 3, padding=1, bias=False),
                    nn.BatchNorm2d(features, eps=1e-5, momentum=0.1),
                    nn.ReLU(),
                ]
                channels = features
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * height * width, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        """Logits [B, classes]."""
        return self.head(self.features(x_BCHW))


class TorchDcganGenerator(nn.Module):
    def __init__(
        self,
        noise_dim: int = 100,
        width: int = 64,
        image_shape: Sequence[int] = (28, 28, 1),
        quarter_convs: int = 0,
    ):
        super().__init__()
        height, image_width, channels = image_shape
        self.start = (2 * width, height // 4, image_width // 4)
        self.project = nn.Linear(noise_dim, 2 * width * (height // 4) * (image_width // 4), bias=False)
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * width, eps=1e-5, momentum=0.1),
            nn.ReLU(),
            *_quarter_blocks(2 * width, quarter_convs, nn.ReLU),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width, eps=1e-5, momentum=0.1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z_BZ: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] in [-1, 1]."""
        return self.body(self.project(z_BZ).view(-1, *self.start))


class TorchDcganDiscriminator(nn.Module):
    def __init__(self, width: int = 64, image_shape: Sequence[int] = (28, 28, 1), quarter_convs: int = 0):
        super().__init__()
        height, image_width, channels = image_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width, eps=1e-5, momentum=0.1),
            nn.LeakyReLU(0.2),
            *_quarter_blocks(2 * width, quarter_convs, lambda: nn.LeakyReLU(0.2)),
            nn.Flatten(),
            nn.Linear(2 * width * (height // 4) * (image_width // 4), 1),
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        """Logits [B]."""
        return self.body(x_BCHW)[:, 0]
