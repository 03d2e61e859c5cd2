"""Mini-batches sliced from whole tensors that already live on the training device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Batch = tuple[torch.Tensor, ...]
BatchTransform = Callable[[Batch, torch.Generator | None], Batch]


class TensorBatches:
    """Iterates over a split in mini-batches without any per-example Python work.

    Args:
        tensors: the split, every tensor with the examples along dimension 0, on the device
            where training runs.
        batch_size: examples per batch.
        shuffle: draw a new permutation each epoch from the generator passed to ``epoch``.
        drop_last: leave out the last, smaller batch.
        transform: applied to each batch on the device (type conversion, normalisation,
            augmentation); receives the epoch's generator so that random augmentation is
            reproducible.
    """

    def __init__(
        self,
        tensors: Batch,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        transform: BatchTransform | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform

    @property
    def num_examples(self) -> int:
        return len(self.tensors[0])

    def __len__(self) -> int:
        full, rest = divmod(self.num_examples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def epoch(self, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Yields the batches of one pass over the split."""
        device = self.tensors[0].device
        if self.shuffle:
            order = torch.randperm(self.num_examples, generator=generator).to(device)
        else:
            order = None
        for index in range(len(self)):
            start = index * self.batch_size
            stop = min(start + self.batch_size, self.num_examples)
            if order is None:
                batch = tuple(tensor[start:stop] for tensor in self.tensors)
            else:
                rows = order[start:stop]
                batch = tuple(tensor.index_select(0, rows) for tensor in self.tensors)
            yield self.transform(batch, generator) if self.transform else batch

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch()
