"""The fully connected networks of the paper: the MNIST classifier and the Fashion-MNIST
autoencoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _check_sizes(sizes: Sequence[int], name: str) -> list[int]:
    sizes = [int(size) for size in sizes]
    if len(sizes) < 2 or any(size < 1 for size in sizes):
        raise ValueError(f"{name} needs at least two positive layer sizes, got {sizes}")
    return sizes


def _stack(sizes: Sequence[int], last_activation: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        is_last = index == len(sizes) - 2
        if not is_last:
            layers.append(nn.ReLU())
        elif last_activation is not None:
            layers.append(last_activation)
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """A ReLU network on flattened inputs; ``sizes`` lists every layer's width, input first
    (the paper's MNIST classifier is 784-500-300-100-10)."""

    def __init__(self, sizes: Sequence[int] = (784, 500, 300, 100, 10)) -> None:
        super().__init__()
        self.layers = _stack(_check_sizes(sizes, "MLP"), last_activation=None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs.flatten(1))


class Autoencoder(nn.Module):
    """A symmetric ReLU autoencoder with a sigmoid output; ``encoder_sizes`` runs from the input
    to the code (the paper's is 784-200-100-50, decoded back by 50-100-200-784). The output has
    the input's shape."""

    def __init__(self, encoder_sizes: Sequence[int] = (784, 200, 100, 50)) -> None:
        super().__init__()
        sizes = _check_sizes(encoder_sizes, "Autoencoder")
        self.encoder = _stack(sizes, last_activation=nn.ReLU())
        self.decoder = _stack(sizes[::-1], last_activation=nn.Sigmoid())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(inputs.flatten(1))).view_as(inputs)
