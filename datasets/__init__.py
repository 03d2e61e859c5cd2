"""Data sets of the paper's experiments, held as whole tensors on the training device."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from datasets import celeba, imdb, registry, vision  # noqa: F401  (importing registers them)
from datasets.batches import TensorBatches
from datasets.registry import DataNotFoundError, DataSplits
from datasets.transforms import build_transforms

__all__ = ["DataNotFoundError", "DataSplits", "TensorBatches", "build_data", "load_splits"]

log = logging.getLogger(__name__)


def load_splits(cfg_data: DictConfig, seed: int = 0) -> DataSplits:
    """Reads the data set named by ``data.name`` (or its synthetic stand-in when
    ``data.synthetic`` is true) and keeps the first ``data.train_subset`` /
    ``data.test_subset`` examples when these are set."""
    source = registry.get(cfg_data.name)
    if cfg_data.get("synthetic", False):
        n_train, n_test = cfg_data.synthetic_size
        splits = source.synthetic(cfg_data, int(n_train), int(n_test), seed)
    else:
        splits = source.load(cfg_data)
    for key in ("train_subset", "test_subset"):
        value = cfg_data.get(key)
        if value is not None and int(value) < 1:
            raise ValueError(f"data.{key} must be a positive integer or null, got {value}")
    train_subset, test_subset = cfg_data.get("train_subset"), cfg_data.get("test_subset")
    if train_subset is not None:
        splits.train = tuple(tensor[: int(train_subset)] for tensor in splits.train)
    if test_subset is not None:
        splits.test = tuple(tensor[: int(test_subset)] for tensor in splits.test)
    return splits


def build_data(
    cfg_data: DictConfig, device: torch.device, seed: int = 0
) -> tuple[TensorBatches, TensorBatches, dict]:
    """Returns the (train, test) batch iterators on ``device`` and the data set's ``info``."""
    splits = load_splits(cfg_data, seed)
    train_transform, test_transform = build_transforms(cfg_data)
    train = TensorBatches(
        tuple(tensor.to(device) for tensor in splits.train),
        int(cfg_data.batch_size),
        shuffle=True,
        drop_last=bool(cfg_data.get("drop_last", False)),
        transform=train_transform,
    )
    test = TensorBatches(
        tuple(tensor.to(device) for tensor in splits.test),
        int(cfg_data.get("eval_batch_size") or cfg_data.batch_size),
        transform=test_transform,
    )
    log.info(
        "data %s%s: %d train / %d test examples, batch %d, on %s",
        cfg_data.name,
        " (synthetic)" if cfg_data.get("synthetic", False) else "",
        train.num_examples,
        test.num_examples,
        train.batch_size,
        device,
    )
    return train, test, splits.info
