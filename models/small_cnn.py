"""The small convolutional network the paper trains on CIFAR-10 (its Table 7)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv 5x5 -> 30, max-pool, conv 5x5 -> 40, max-pool, conv 3x3 -> 50, then linear layers
    450 -> 250 -> 100 -> classes, ReLU after every layer but the last. For 32x32 RGB inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 30, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(30, 40, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(40, 50, 3),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(50 * 3 * 3, 250),
            nn.ReLU(),
            nn.Linear(250, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).flatten(1))
