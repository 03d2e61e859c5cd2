"""The WAE-MMD task (Tolstikhin et al. 2017, "Wasserstein Auto-Encoders", Algorithm 2) and the
learning-rate schedule of that paper's "original" optimizer.

Objective on a batch x_1..x_n with codes z_i = E(x_i) and prior samples z̃_1..z̃_n ~ N(0, σ²I):

    L = loss_scale · [ reconstruction_weight · (1/n) Σ_i ‖x_i − D(z_i)‖²  +  λ · MMD(z, z̃) ]

where ‖·‖² sums over every pixel of an image (pixels in [0, 1]) and MMD is the unbiased
estimate of the squared maximum mean discrepancy with the inverse multiquadratics kernel
k(a, b) = C / (C + ‖a − b‖²), summed over C = s · 2·d_z·σ² for the scales s of ``kernel_scales``
(the WAE authors' code uses s ∈ {0.1, 0.2, 0.5, 1, 2, 5, 10}; their paper states the single
C = 2·d_z·σ²).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from experiments.tasks import Task

WAE_KERNEL_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def imq_mmd(
    codes: torch.Tensor,
    prior_samples: torch.Tensor,
    prior_var: float,
    scales: Sequence[float] = WAE_KERNEL_SCALES,
) -> torch.Tensor:
    """Unbiased estimate of MMD² between two equally large samples with the inverse
    multiquadratics kernel summed over ``scales``.

    Args:
        codes: (n, d) sample of the encoded distribution.
        prior_samples: (n, d) sample of the prior.
        prior_var: the prior's variance σ² per dimension; the kernel's base constant is
            C = 2·d·σ².
        scales: multipliers of C; the kernel is the sum over them.

    Returns a 0-dim tensor (0 when n < 2, where the estimate is undefined).
    """
    n, dim = codes.shape
    if prior_samples.shape != codes.shape:
        raise ValueError(
            f"codes {tuple(codes.shape)} and prior samples {tuple(prior_samples.shape)} differ"
        )
    if n < 2:
        return codes.sum() * 0.0
    codes, prior_samples = codes.float(), prior_samples.float()
    distances_qq = torch.cdist(codes, codes).square()
    distances_pp = torch.cdist(prior_samples, prior_samples).square()
    distances_qp = torch.cdist(codes, prior_samples).square()
    off_diagonal = 1.0 - torch.eye(n, device=codes.device)
    base = 2.0 * dim * prior_var
    total = codes.new_zeros(())
    for scale in scales:
        c = base * scale
        within = (c / (c + distances_qq) + c / (c + distances_pp)) * off_diagonal
        between = c / (c + distances_qp)
        total = total + within.sum() / (n * (n - 1)) - 2.0 * between.sum() / (n * n)
    return total


class WAEMMD(Task):
    """Training objective and metrics of a Wasserstein auto-encoder with an MMD penalty.

    Args:
        mmd_weight: λ, the weight of the MMD penalty.
        prior_var: σ², the variance of the Gaussian prior N(0, σ²I) on the codes.
        reconstruction_weight: factor of the mean per-image sum of squared errors.
        loss_scale: factor of the whole objective (sets the units the loss is reported in;
            LOSSGRAD's ratio r_h is unaffected, the step sizes of other optimizers are).
        kernel_scales: multipliers of the kernel constant C = 2·d_z·σ², summed over.

    The model must return ``(reconstructions, codes)``. Metrics: ``loss`` (the objective),
    ``recon`` (the mean per-image sum of squared errors, unweighted) and ``mmd`` (unweighted).

    The prior sample is part of the batch: it is drawn once per batch from torch's global
    random generator (which the runner saves in checkpoints), so that an optimizer that
    evaluates the loss twice on one batch (LOSSGRAD) measures the same objective both times.
    """

    metric_names = ("loss", "recon", "mmd")

    def __init__(
        self,
        mmd_weight: float = 100.0,
        prior_var: float = 2.0,
        reconstruction_weight: float = 0.05,
        loss_scale: float = 1.0,
        kernel_scales: Sequence[float] = WAE_KERNEL_SCALES,
    ) -> None:
        if mmd_weight < 0:
            raise ValueError(f"mmd_weight={mmd_weight}; expected a non-negative number")
        for name, value in (
            ("prior_var", prior_var),
            ("reconstruction_weight", reconstruction_weight),
            ("loss_scale", loss_scale),
        ):
            if not value > 0:
                raise ValueError(f"{name}={value}; expected a positive number")
        scales = [float(scale) for scale in kernel_scales]
        if not scales or any(scale <= 0 for scale in scales):
            raise ValueError(f"kernel_scales={list(kernel_scales)}; expected positive numbers")
        self.mmd_weight = float(mmd_weight)
        self.prior_var = float(prior_var)
        self.reconstruction_weight = float(reconstruction_weight)
        self.loss_scale = float(loss_scale)
        self.kernel_scales = tuple(scales)
        self._last_inputs: torch.Tensor | None = None
        self._last_prior: torch.Tensor | None = None

    def prior_sample(self, inputs: torch.Tensor, latent_dim: int) -> torch.Tensor:
        """N(0, σ²I) samples, one per image, drawn once per batch (the same for repeated
        evaluations of the same batch tensor)."""
        if inputs is self._last_inputs and self._last_prior is not None:
            return self._last_prior
        noise = torch.randn(len(inputs), latent_dim)
        prior = (noise * self.prior_var**0.5).to(inputs.device)
        self._last_inputs, self._last_prior = inputs, prior
        return prior

    def parts(self, model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the per-image sums of squared errors (n,), the MMD estimate and the
        objective."""
        inputs = batch[0]
        reconstructions, codes = model(inputs)
        targets = inputs.float().reshape(reconstructions.shape)
        squared_errors = (reconstructions.float() - targets).square().flatten(1).sum(dim=1)
        prior = self.prior_sample(inputs, codes.shape[1])
        mmd = imq_mmd(codes, prior, self.prior_var, self.kernel_scales)
        objective = self.loss_scale * (
            self.reconstruction_weight * squared_errors.mean() + self.mmd_weight * mmd
        )
        return squared_errors, mmd, objective

    def loss(self, model, batch):
        return self.parts(model, batch)[2]

    def batch_metrics(self, model, batch):
        squared_errors, mmd, objective = self.parts(model, batch)
        count = len(squared_errors)
        return {"loss": objective * count, "recon": squared_errors.sum(), "mmd": mmd * count}


class PiecewiseLR(LambdaLR):
    """Multiplies the learning rate by ``gamma[i]`` at epoch ``milestones[i]`` (stepped once
    per epoch), the factors accumulating: ``MultiStepLR`` with one factor per milestone.

    The WAE paper's Adam schedule ("original" in the LOSSGRAD paper's Table 6) is
    milestones (30, 50, 100) with gamma (0.5, 0.2, 0.1): halved after 30 epochs, divided by 5
    after 50 and by 10 after 100.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        milestones: increasing epochs (counted from 0) at which a factor applies.
        gamma: one positive factor per milestone (a single number applies to all of them).
    """

    def __init__(
        self, optimizer, milestones: Sequence[int], gamma: Sequence[float] | float
    ) -> None:
        milestones = [int(m) for m in milestones]
        if isinstance(gamma, (int, float)):
            factors = [float(gamma)] * len(milestones)
        else:
            factors = [float(f) for f in gamma]
        if len(milestones) != len(factors):
            raise ValueError(
                f"milestones={milestones} and gamma={factors} must have the same length"
            )
        if milestones != sorted(milestones) or any(factor <= 0 for factor in factors):
            raise ValueError(
                f"milestones={milestones}, gamma={factors}; expected increasing milestones "
                "and positive factors"
            )
        self.milestones, self.factors = milestones, factors
        super().__init__(optimizer, lambda epoch: piecewise_factor(epoch, milestones, factors))


def piecewise_factor(epoch: int, milestones: Sequence[int], factors: Sequence[float]) -> float:
    """The product of the factors whose milestone is at or before ``epoch``."""
    value = 1.0
    for milestone, factor in zip(milestones, factors, strict=True):
        if epoch >= milestone:
            value *= factor
    return value
