"""LOSSGRAD (Wójcik, Maziarka & Tabor): gradient descent whose step size h follows the local
curvature measured by one extra loss evaluation per step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lossgrad._distributed import average_across_ranks
from lossgrad._evaluation import GeneratorStates, RunningStatistics
from lossgrad._multi_tensor import (
    as_scalar_tensor,
    check_hyperparameter,
    params_with_grad,
    scalar_dtype,
    squared_norm,
    subtract_scaled,
    with_weight_decay,
)

__all__ = ["LossGrad"]


def _total(values: list[Tensor]) -> Tensor:
    """The sum of 0-dim tensors of one dtype and device (one kernel, none for a single one)."""
    return values[0] if len(values) == 1 else torch.stack(values).sum()


class LossGrad(Optimizer):
    r"""LOSSGRAD: gradient descent with a step size adapted from the loss after each step.

    One call of :meth:`step` is Algorithm 1 of the paper on the current batch:

    .. math::
        \begin{aligned}
        &f \leftarrow F(\theta),\quad g \leftarrow \nabla_\theta F(\theta) \\
        &\textit{approx} \leftarrow f - h\,\lVert g\rVert^2 \\
        &\theta \leftarrow \theta - h\,g \qquad\text{(kept, never undone)} \\
        &\textit{actual} \leftarrow F(\theta) \qquad\text{(same batch, new weights)} \\
        &r_h \leftarrow (\textit{actual} - \textit{approx}) / (h\,\lVert g\rVert^2) \\
        &h \leftarrow h / c \ \text{ if } r_h > 1/2 \text{ else } c\,h
        \end{aligned}

    :math:`r_h > 1/2` means that the parabola through :math:`F` at 0 and :math:`h` with slope
    :math:`-\lVert g\rVert^2` at 0 has its minimum before :math:`h`. The new h is used from the
    next step on.

    ``opt.step(closure)`` is the whole training step: ``closure()`` returns the loss on the
    current batch and must not call ``backward()`` or ``zero_grad()``. ``step`` clears the
    gradients, evaluates the closure with autograd, back-propagates, updates the weights,
    evaluates the closure a second time without autograd and adapts h. It returns the first
    loss as a tensor. ``param_groups[i]["lr"]`` holds the current h of group i as a 0-dim
    tensor on the parameters' device (``float(opt.param_groups[0]["lr"])`` reads it).
    :attr:`diagnostics` describes the last step with 0-dim tensors: ``lr`` (the h the step
    used, 0 if it was skipped; group 0), ``loss`` (f) and ``loss_after`` (actual), ``ratio``
    (:math:`r_h`, nan if skipped), ``grad_sq`` (:math:`\lVert g\rVert^2` over all groups) and
    ``skipped`` (1.0 or 0.0). Nothing in ``step`` reads a value back to the host.

    Args:
        params: the parameters to optimise, or dicts defining parameter groups.
        lr: the initial step size h (default: 1e-4, the paper's choice). Must be > 0.
        c: the factor that multiplies or divides h after each step (default: 1.05, the
            paper's choice). Must be > 1 and the same in every parameter group.
        weight_decay: coefficient :math:`\lambda` of an L2 penalty
            :math:`(\lambda/2)\lVert\theta\rVert^2` added to the objective F (default: 0).
        model: the module that the closure evaluates (optional). When given, its running
            statistics (batch-norm buffers) are restored after the second evaluation, so they
            are updated once per step, by the first evaluation.
        foreach: use the multi-tensor ``torch._foreach_*`` kernels (default: None, which
            means yes); ``False`` runs a plain loop over the parameters.

    .. note::
        Several parameter groups: each keeps its own h_i, the linear prediction of the
        decrease is :math:`\sum_i h_i\lVert g_i\rVert^2`, and one decision multiplies every
        h_i by the same factor c or 1/c. With one group this is exactly Algorithm 1.

    .. note::
        Weight decay enters the objective itself: both loss values include
        :math:`(\lambda/2)\lVert\theta\rVert^2` (over the parameters that have a gradient)
        and the step uses :math:`g + \lambda\theta`, so :math:`r_h` compares values and
        slopes of one function. :attr:`diagnostics` ``loss`` and ``loss_after`` include the
        penalty; the returned loss is the closure's value without it.

    .. note::
        Departures from the authors' code: the second evaluation replays the random
        generators (the default CPU generator and the CUDA generators of the parameters'
        devices), so dropout draws the same mask in both evaluations, and the generators are
        left as after the first evaluation; with ``model`` the running statistics are updated
        once per step, not twice; :math:`r_h`'s denominator has no +1e-25.

    .. note::
        Degenerate steps, which Algorithm 1 does not cover: if the gradient is zero, or the
        first loss or the gradient is not finite, the weights and h are left as they were and
        ``diagnostics["skipped"]`` is 1 (non-finite entries of ``p.grad`` are set to 0 in place
        on the way). A non-finite second loss divides h by c. h is clamped to the positive
        normal range of its dtype, so it never becomes 0, inf or nan. The decision
        :math:`r_h \le 1/2` is evaluated as :math:`\textit{actual} \le f - h\lVert g\rVert^2/2`,
        the same test without a division.

    .. note::
        With ``torch.distributed`` initialised, the two loss values are averaged over all
        ranks of the default process group before they are used, so that every rank takes
        the same decision (the gradients are assumed to be averaged already, as
        ``DistributedDataParallel`` does). This assumes every rank trains the same model.
    """

    takes_loss_closure = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        c: float = 1.05,
        weight_decay: float = 0.0,
        *,
        model: nn.Module | None = None,
        foreach: bool | None = None,
    ) -> None:
        lr = check_hyperparameter("lr", lr, low=0.0, low_inclusive=False)
        c = check_hyperparameter("c", c, low=1.0, low_inclusive=False)
        weight_decay = check_hyperparameter(
            "weight_decay", weight_decay, low=0.0, low_inclusive=True
        )
        if model is not None and not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module or None, got {type(model)!r}")
        defaults = {"lr": lr, "c": c, "weight_decay": weight_decay, "foreach": foreach}
        super().__init__(params, defaults)
        self.model = model
        self._last_step: dict[str, Tensor] = {}
        self._diagnostics: dict[str, Tensor] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("model", None)
        self.__dict__.setdefault("_last_step", {})
        self.__dict__.setdefault("_diagnostics", None)
        for group in self.param_groups:
            group.setdefault("foreach", None)

    @property
    def diagnostics(self) -> dict[str, Tensor]:
        r"""The last step, as 0-dim tensors on the parameters' device (empty before a step).

        Keys: ``lr`` (the h of group 0 that the step used; 0 if it was skipped), ``loss`` (f)
        and ``loss_after`` (actual), with the weight-decay penalty if any; ``ratio``
        (:math:`r_h`; nan if skipped), ``grad_sq`` (:math:`\lVert g\rVert^2` over all
        groups) and ``skipped`` (1.0 if the step was skipped as degenerate, else 0.0).
        They are computed on first access after a step; reading a value (``float``,
        ``.item()``) is what waits for the device.
        """
        if self._diagnostics is None:
            last = self._last_step
            if not last:
                return {}
            taken, prediction = last["taken"], last["prediction"]
            change = last["loss_after"] - last["loss"] + prediction
            ratio = change / torch.where(taken, prediction, 1.0)
            self._diagnostics = {
                "lr": torch.where(taken, last["h"].to(taken.device), 0.0),
                "loss": last["loss"],
                "loss_after": last["loss_after"],
                "ratio": torch.where(taken, ratio, math.nan),
                "grad_sq": last["grad_sq"],
                "skipped": (~taken).to(prediction.dtype),
            }
        return self._diagnostics

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group; its ``lr`` becomes the group's own 0-dim step-size tensor."""
        for name, low, inclusive in (("lr", 0.0, False), ("c", 1.0, False)):
            if name in param_group:
                check_hyperparameter(name, param_group[name], low=low, low_inclusive=inclusive)
        if "weight_decay" in param_group:
            check_hyperparameter(
                "weight_decay", param_group["weight_decay"], low=0.0, low_inclusive=True
            )
        c = float(param_group.get("c", self.defaults["c"]))
        if self.param_groups and c != self.param_groups[0]["c"]:
            raise ValueError(
                f"invalid c: {c!r}; every parameter group must use the same c "
                f"({self.param_groups[0]['c']!r}), since one decision rescales every h"
            )
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["c"] = c
        group["weight_decay"] = float(group["weight_decay"])
        group["lr"] = self._step_size_tensor(group, group["lr"])

    @staticmethod
    def _step_size_tensor(group: dict[str, Any], value: Any) -> Tensor:
        first = group["params"][0]
        return as_scalar_tensor(value, dtype=scalar_dtype(group["params"]), device=first.device)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state; each h is moved to its parameters' device and scalar dtype."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["lr"] = self._step_size_tensor(group, group["lr"])

    def _current_step_size(self, group: dict[str, Any]) -> Tensor:
        # A scheduler or a user may have stored a plain number, or moved the parameters.
        h = group["lr"]
        device = group["params"][0].device
        if not isinstance(h, Tensor) or h.device != device:
            h = group["lr"] = self._step_size_tensor(group, h)
        return h

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """Takes one LOSSGRAD step on the batch that ``closure`` evaluates.

        Args:
            closure: returns the scalar loss on the current batch; it must not call
                ``backward()``. It is called twice: with autograd at the current weights,
                then without autograd at the updated weights.

        Returns:
            The first loss (the closure's return value, detached).
        """
        if closure is None:
            raise ValueError(
                "LossGrad.step needs a closure that returns the loss on the current batch"
            )
        groups = self.param_groups
        step_sizes = [self._current_step_size(group) for group in groups]
        device = groups[0]["params"][0].device
        # Scalars are float64 if any group's h is (float64 weights), else float32.
        wide = any(h.dtype == torch.float64 for h in step_sizes)
        dtype = torch.float64 if wide else torch.float32
        cuda_devices = {
            p.device for group in groups for p in group["params"] if p.device.type == "cuda"
        }

        self.zero_grad(set_to_none=True)
        generators_before = GeneratorStates(cuda_devices)
        with torch.enable_grad():
            loss = closure()
        loss.backward()

        # First loss, gradients and the linear prediction of the decrease, sum_i h_i |g_i|^2.
        loss_before = average_across_ranks(loss.detach().to(device=device, dtype=dtype))
        steps, grad_sqs, predictions = [], [], []
        for group, h in zip(groups, step_sizes, strict=True):
            foreach = group["foreach"] is None or group["foreach"]
            params, grads = params_with_grad(group["params"])
            weight_decay = group["weight_decay"]
            if weight_decay != 0.0 and params:
                penalty = squared_norm(params, dtype=dtype, device=device, foreach=foreach)
                loss_before = loss_before + (weight_decay / 2) * penalty
                grads = with_weight_decay(grads, params, weight_decay, foreach=foreach)
            group_grad_sq = squared_norm(grads, dtype=dtype, device=device, foreach=foreach)
            grad_sqs.append(group_grad_sq)
            predictions.append(h.to(device=device, dtype=dtype) * group_grad_sq)
            steps.append((params, grads, foreach, weight_decay))
        grad_sq, prediction = _total(grad_sqs), _total(predictions)

        # A step is taken only if f and the prediction are finite and the prediction is > 0.
        taken = torch.isfinite(loss_before + prediction) & (prediction > 0)
        for (params, grads, foreach, _), h in zip(steps, step_sizes, strict=True):
            # h is finite and positive, so h·taken is h or exactly 0.
            subtract_scaled(params, grads, h * taken.to(h.device), foreach=foreach)

        # Second evaluation of the same function: same random draws, statistics kept.
        statistics = RunningStatistics(self.model) if self.model is not None else None
        generators_after = GeneratorStates(cuda_devices)
        generators_before.restore()
        loss_after = closure()
        generators_after.restore()
        if statistics is not None:
            statistics.restore()
        loss_after = average_across_ranks(loss_after.detach().to(device=device, dtype=dtype))
        for params, _, foreach, weight_decay in steps:
            if weight_decay != 0.0 and params:
                penalty = squared_norm(params, dtype=dtype, device=device, foreach=foreach)
                loss_after = loss_after + (weight_decay / 2) * penalty

        # r_h <= 1/2  <=>  actual <= f - prediction/2 (prediction > 0): no division needed.
        # A non-finite second loss (nan, +inf, -inf) counts as r_h > 1/2.
        threshold = torch.add(loss_before, prediction, alpha=-0.5)
        grow = (loss_after <= threshold) & (loss_after > -math.inf)
        first_h = step_sizes[0].clone()
        for group, h in zip(groups, step_sizes, strict=True):
            c, limits = group["c"], torch.finfo(h.dtype)
            candidate = torch.where(grow.to(h.device), h * c, h / c)
            candidate = torch.where(taken.to(h.device), candidate, h)
            h.copy_(candidate.clamp_(limits.tiny, limits.max))

        self._last_step = {
            "h": first_h,
            "taken": taken,
            "loss": loss_before,
            "loss_after": loss_after,
            "prediction": prediction,
            "grad_sq": grad_sq,
        }
        self._diagnostics = None
        return loss.detach()
