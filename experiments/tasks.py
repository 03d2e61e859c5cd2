"""Tasks: what a model is trained to do, its training loss and its evaluation metrics.

A task's ``loss(model, batch)`` is the training objective, averaged over the batch; its
``evaluate(model, batches)`` returns metrics over a whole split, averaged per example. Batches
are tuples of tensors; the inputs come first and, for supervised tasks, the targets last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datasets.batches import TensorBatches


class Task:
    """Base class: subclasses define ``loss`` and name their metrics in ``metric_names``."""

    metric_names: tuple[str, ...] = ("loss",)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def batch_metrics(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> dict[str, torch.Tensor]:
        """Per-batch sums of each metric (not means), so that splits average exactly."""
        return {"loss": self.loss(model, batch).float() * len(batch[0])}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: TensorBatches) -> dict[str, float]:
        totals: dict[str, torch.Tensor] = {}
        for batch in batches:
            for name, value in self.batch_metrics(model, batch).items():
                totals[name] = totals[name] + value if name in totals else value
        count = batches.num_examples
        return {name: float(total) / count for name, total in totals.items()}


class Classification(Task):
    """Multi-class classification with cross-entropy; reports loss and accuracy."""

    metric_names = ("loss", "acc")

    def loss(self, model, batch):
        *inputs, targets = batch
        return F.cross_entropy(model(*inputs).float(), targets)

    def batch_metrics(self, model, batch):
        *inputs, targets = batch
        logits = model(*inputs).float()
        return {
            "loss": F.cross_entropy(logits, targets, reduction="sum"),
            "acc": (logits.argmax(dim=1) == targets).sum().float(),
        }


class BinaryClassification(Task):
    """Two-class classification from one logit with binary cross-entropy; reports loss and
    accuracy."""

    metric_names = ("loss", "acc")

    def loss(self, model, batch):
        *inputs, targets = batch
        logits = model(*inputs).float().reshape(-1)
        return F.binary_cross_entropy_with_logits(logits, targets.float())

    def batch_metrics(self, model, batch):
        *inputs, targets = batch
        logits = model(*inputs).float().reshape(-1)
        return {
            "loss": F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="sum"),
            "acc": ((logits > 0).long() == targets.long()).sum().float(),
        }


class Reconstruction(Task):
    """An autoencoder's task: reproduce the input (the first tensor of the batch); the loss is
    the mean squared error per pixel."""

    metric_names = ("loss",)

    def loss(self, model, batch):
        inputs = batch[0]
        return F.mse_loss(model(inputs).float(), inputs.float())

    def batch_metrics(self, model, batch):
        inputs = batch[0]
        per_example = F.mse_loss(model(inputs).float(), inputs.float(), reduction="none")
        return {"loss": per_example.flatten(1).mean(dim=1).sum()}
