"""Averaging loss values across data-parallel ranks, so that every rank decides alike."""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """The number of ranks of the default process group, or 1 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def average_across_ranks(value: Tensor) -> Tensor:
    """The mean of ``value`` over all ranks of the default process group.

    Returns ``value`` itself when ``torch.distributed`` is not initialised or has one rank.
    The reduction is a SUM (every backend has it) followed by a division; with NCCL it is
    queued on the device like any other kernel, so the host does not wait for it.

    Args:
        value: a tensor on the device that the process group's backend communicates from.
    """
    ranks = world_size()
    if ranks == 1:
        return value
    reduced = value.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / ranks
