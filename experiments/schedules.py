"""Learning-rate schedules the paper uses that torch.optim.lr_scheduler lacks."""

from __future__ import annotations

from torch.optim.lr_scheduler import LambdaLR


def trapezoid_factor(
    epoch: int, warmup_epochs: int, flat_until: int, total_epochs: int, end_factor: float
) -> float:
    """The fraction of the peak learning rate used in ``epoch`` (counted from 0).

    It rises linearly over the first ``warmup_epochs`` epochs (reaching the peak in the last of
    them), stays at the peak until epoch ``flat_until``, then falls linearly to ``end_factor``
    in the last epoch.
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    if epoch < flat_until:
        return 1.0
    decay_epochs = total_epochs - flat_until
    if decay_epochs <= 0:
        return 1.0
    progress = min((epoch - flat_until + 1) / decay_epochs, 1.0)
    return 1.0 + (end_factor - 1.0) * progress


class Trapezoid(LambdaLR):
    """Linear warm-up, a plateau, and a linear decrease, stepped once per epoch; the
    optimizer's ``lr`` is the peak.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        warmup_epochs: epochs of the linear rise from 0 to the peak.
        flat_until: the epoch at which the decrease starts.
        total_epochs: the run's length; the decrease ends in its last epoch.
        end_factor: the fraction of the peak reached in the last epoch.
    """

    def __init__(
        self,
        optimizer,
        warmup_epochs: int = 10,
        flat_until: int = 15,
        total_epochs: int = 30,
        end_factor: float = 0.0,
    ) -> None:
        if not 0 < warmup_epochs <= flat_until:
            raise ValueError(
                f"need 0 < warmup_epochs <= flat_until, got {warmup_epochs} and {flat_until}"
            )
        if not 0.0 <= end_factor <= 1.0:
            raise ValueError(f"end_factor must lie in [0, 1], got {end_factor}")
        self.shape = (warmup_epochs, flat_until, total_epochs, end_factor)
        super().__init__(optimizer, lambda epoch: trapezoid_factor(epoch, *self.shape))
