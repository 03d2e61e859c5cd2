"""A registry of data sets: each name maps to a loader of real data and a synthetic stand-in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig


@dataclass
class DataSplits:
    """A data set held as whole tensors, one tuple per split.

    Every tensor of a split has the number of examples as its first dimension; the tuple is
    what one batch looks like (for example ``(images, labels)``). ``info`` carries what the
    rest of the suite needs to know about the data: ``model_kwargs`` (passed to the model's
    constructor) and ``num_classes`` where it applies.
    """

    train: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split_name, split in (("train", self.train), ("test", self.test)):
            sizes = {len(tensor) for tensor in split}
            if len(sizes) != 1:
                raise ValueError(f"tensors of the {split_name} split differ in length: {sizes}")


Loader = Callable[[DictConfig], DataSplits]
SyntheticLoader = Callable[[DictConfig, int, int, int], DataSplits]


class DataNotFoundError(FileNotFoundError):
    """Raised when a data set is neither on disk nor downloadable; the message says where to
    put which files."""


@dataclass(frozen=True)
class DataSource:
    load: Loader
    synthetic: SyntheticLoader


_SOURCES: dict[str, DataSource] = {}


def register(name: str, load: Loader, synthetic: SyntheticLoader) -> None:
    """Make a data set available as ``data.name=<name>``."""
    _SOURCES[name] = DataSource(load, synthetic)


def get(name: str) -> DataSource:
    if name not in _SOURCES:
        raise ValueError(f"unknown data set {name!r}; registered: {sorted(_SOURCES)}")
    return _SOURCES[name]


def names() -> list[str]:
    return sorted(_SOURCES)
