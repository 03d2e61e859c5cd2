"""Making a second evaluation of the loss see the same function as the first.

Two things can differ between two forward passes on the same batch: random draws (dropout
masks) and the running statistics that normalisation layers update in training mode. The
random generators are replayed with :class:`GeneratorStates`; the running statistics are put
back with :class:`RunningStatistics`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


class GeneratorStates:
    """A copy of the default CPU generator's state and of the given CUDA devices' generators.

    Copying a generator's state reads its seed and offset on the host; it does not wait for
    the device. Generators of other device types (MPS, XPU) are not captured.
    """

    def __init__(self, cuda_devices: Iterable[torch.device]) -> None:
        self._cpu = torch.get_rng_state()
        self._cuda = {device: torch.cuda.get_rng_state(device) for device in cuda_devices}

    def restore(self) -> None:
        """Puts every captured generator back into the captured state."""
        torch.set_rng_state(self._cpu)
        for device, state in self._cuda.items():
            torch.cuda.set_rng_state(state, device)


def running_statistics_buffers(model: nn.Module) -> list[Tensor]:
    """The buffers that normalisation layers update in training mode.

    These are the buffers (``running_mean``, ``running_var``, ``num_batches_tracked``) of every
    submodule that tracks running statistics, i.e. every batch-norm layer and every
    instance-norm layer built with ``track_running_stats=True``.
    """
    buffers = []
    for module in model.modules():
        if getattr(module, "track_running_stats", False):
            buffers.extend(b for b in module.buffers(recurse=False) if b is not None)
    return buffers


class RunningStatistics:
    """A copy of a model's running statistics, restored in place with :meth:`restore`."""

    def __init__(self, model: nn.Module) -> None:
        self._buffers = running_statistics_buffers(model)
        self._saved = [b.clone() for b in self._buffers]

    def restore(self) -> None:
        """Copies the saved values back into the model's buffers."""
        for buffer, saved in zip(self._buffers, self._saved, strict=True):
            buffer.copy_(saved)
