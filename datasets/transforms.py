"""Per-batch transforms that run on the training device: scaling, normalisation, augmentation.

They act on the first tensor of a batch (the inputs) and leave the others (labels) alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from datasets.batches import Batch, BatchTransform

AUGMENTATIONS = ("crop_flip",)


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator | None):
    """Pads each image by ``padding`` zeros, crops back to the original size at a random offset
    and mirrors it left-right with probability 1/2, for a whole (N, C, H, W) batch at once."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    offsets, flips = offsets.to(images.device), flips.to(images.device)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)
    batch_index = torch.arange(n, device=images.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    cropped = cropped.permute(0, 3, 1, 2)
    return torch.where(flips[:, None, None, None], cropped.flip(3), cropped)


class ImageTransform:
    """Turns a batch of uint8 images into normalised floats and optionally augments it.

    Args:
        scale: divide uint8 pixel values by 255.
        mean, std: per-channel normalisation applied after scaling (None: none).
        augment: ``"crop_flip"`` (4-pixel padded random crop and horizontal flip) or None.
        padding: the padding of the random crop.
    """

    def __init__(
        self,
        scale: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: str | None = None,
        padding: int = 4,
    ) -> None:
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"data.transform.augment={augment!r}; valid: {AUGMENTATIONS} or null")
        if (mean is None) != (std is None):
            raise ValueError("data.transform.mean and data.transform.std must be given together")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"data.transform.std must be positive, got {list(std)}")
        self.scale = scale
        self.mean = None if mean is None else torch.tensor(list(mean), dtype=torch.float32)
        self.std = None if std is None else torch.tensor(list(std), dtype=torch.float32)
        self.augment = augment
        self.padding = padding

    def __call__(self, batch: Batch, generator: torch.Generator | None, train: bool) -> Batch:
        images = batch[0].float()
        if self.scale:
            images = images / 255.0
        if self.mean is not None:
            shape = (1, -1) + (1,) * (images.dim() - 2)
            mean = self.mean.to(images.device).view(shape)
            std = self.std.to(images.device).view(shape)
            images = (images - mean) / std
        if train and self.augment == "crop_flip":
            images = random_crop_flip(images, self.padding, generator)
        return (images, *batch[1:])


def build_transforms(cfg_data: DictConfig) -> tuple[BatchTransform | None, BatchTransform | None]:
    """Returns the (train, test) batch transforms described by ``data.transform``."""
    spec = cfg_data.get("transform")
    if spec is None:
        return None, None
    transform = ImageTransform(
        scale=spec.get("scale", True),
        mean=spec.get("mean"),
        std=spec.get("std"),
        augment=spec.get("augment"),
        padding=spec.get("padding", 4),
    )
    return (
        lambda batch, generator: transform(batch, generator, train=True),
        lambda batch, generator: transform(batch, generator, train=False),
    )
