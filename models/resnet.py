"""Residual networks for 32x32 images (He et al. 2016, "Deep Residual Learning for Image
Recognition", Section 4.2), of which the LOSSGRAD paper trains ResNet-56 on CIFAR-10.

The network is a 3x3 convolution with 16 channels, then three stages of ``n`` basic blocks
each (16, 32 and 64 channels on 32x32, 16x16 and 8x8 feature maps), global average pooling
and a linear classifier: ``6n + 2`` weighted layers, so ResNet-56 is ``n = 9``. A basic
block is conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN, added to the shortcut, then ReLU. The
first block of stages two and three halves the resolution with a stride-2 convolution; its
shortcut has no parameters ("option A"): it keeps every other pixel and pads the missing
channels with zeros. He et al. report 0.85 M parameters for ResNet-56.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_CHANNELS = (16, 32, 64)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class ZeroPadShortcut(nn.Module):
    """The parameter-free shortcut of a block that changes shape: spatial subsampling by
    ``stride`` and zero channels appended equally on both sides up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels or (out_channels - in_channels) % 2:
            raise ValueError(
                f"option-A shortcut needs an even channel increase, got {in_channels} -> "
                f"{out_channels}"
            )
        self.stride = stride
        self.pad = (out_channels - in_channels) // 2

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        subsampled = inputs[:, :, :: self.stride, :: self.stride]
        return F.pad(subsampled, (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch normalisation and an identity (or zero-padded)
    shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.bn1(self.conv1(inputs)))
        return F.relu(self.bn2(self.conv2(hidden)) + self.shortcut(inputs))


class CifarResNet(nn.Module):
    """ResNet of depth ``6n + 2`` for 32x32 images.

    Args:
        depth: 20, 32, 44, 56, 110, ... (``depth - 2`` divisible by 6); 56 in the paper.
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input images.

    Weights are initialised as He et al. did: convolutions and the linear layer from
    Kaiming-normal (fan-in, ReLU gain), BatchNorm scales 1 and shifts 0, the linear bias 0.
    """

    def __init__(self, depth: int = 56, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth={depth}; expected 6n + 2 with n >= 1 (20, 32, 44, 56, 110)")
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            _conv3x3(in_channels, STAGE_CHANNELS[0]),
            nn.BatchNorm2d(STAGE_CHANNELS[0]),
            nn.ReLU(),
        )
        stages = []
        channels = STAGE_CHANNELS[0]
        for index, out_channels in enumerate(STAGE_CHANNELS):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(images))
        return self.classifier(features.mean(dim=(2, 3)))
