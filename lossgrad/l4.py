"""L4 (Rolinek & Martius, 2018) applied to plain SGD: a step size from the loss value."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from lossgrad._distributed import average_across_ranks
from lossgrad._multi_tensor import (
    check_hyperparameter,
    load_keeping_scalars,
    params_with_grad,
    scalar_dtype,
    squared_norm,
    subtract_scaled,
    with_weight_decay,
)

__all__ = ["L4"]

# Hyperparameters that describe the one loss-minimum estimate, shared by every group.
_SHARED = ("gamma", "gamma0", "tau", "eps")


class L4(Optimizer):
    r"""L4 applied to SGD: a step that aims at a fixed fraction of the achievable decrease.

    With loss :math:`L_t` and gradient :math:`g_t` on the current batch, and the update
    direction :math:`v_t = g_t` (plain SGD), one step is

    .. math::
        \begin{aligned}
        L_{\min} &\leftarrow \gamma_0 L_0 \ \text{ at the first step, else }
            \min(L_{\min}, L_t) \\
        \eta_t &= \alpha\,\frac{L_t - \gamma L_{\min}}{\langle g_t, v_t\rangle + \epsilon} \\
        \theta &\leftarrow \theta - \eta_t v_t \\
        L_{\min} &\leftarrow (1 + 1/\tau)\, L_{\min}
        \end{aligned}

    :math:`\eta_t` is the step at which the linearisation of the loss would reach
    :math:`\gamma L_{\min}`, scaled by :math:`\alpha`; the slow increase of :math:`L_{\min}`
    forgets an old minimum on the time scale :math:`\tau` steps. Like :class:`LossGrad` it
    takes the loss through a closure: ``loss = opt.step(closure)``, where ``closure()``
    returns the loss without calling ``backward()``; ``step`` clears the gradients,
    back-propagates and returns the loss. :attr:`diagnostics` describes the last step with
    0-dim tensors: ``lr`` (:math:`\eta_t` of group 0, 0 if skipped), ``loss`` (:math:`L_t`),
    ``min_loss`` (the :math:`L_{\min}` that :math:`\eta_t` used), ``grad_sq`` and ``skipped``.

    Args:
        params: the parameters to optimise, or dicts defining parameter groups.
        lr: :math:`\alpha`, the fraction of the predicted decrease to take (default: 0.15).
            Must be > 0; it may differ between parameter groups.
        gamma: :math:`\gamma`, the fraction of the minimum loss seen that counts as
            achievable (default: 0.9). In (0, 1].
        gamma0: :math:`\gamma_0`, the fraction of the first loss that initialises
            :math:`L_{\min}` (default: 0.75). In (0, 1].
        tau: :math:`\tau`, the time scale in steps for forgetting :math:`L_{\min}`
            (default: 1000). Must be > 0.
        eps: :math:`\epsilon`, added to the denominator (default: 1e-12). Must be >= 0.
        weight_decay: coefficient :math:`\lambda` of an L2 penalty
            :math:`(\lambda/2)\lVert\theta\rVert^2` added to the loss (default: 0); the step
            uses :math:`g + \lambda\theta`.
        foreach: use the multi-tensor ``torch._foreach_*`` kernels (default: None, which
            means yes); ``False`` runs a plain loop over the parameters.

    .. note::
        :math:`L_{\min}` tracking, as in the authors' code: the first step sets
        :math:`L_{\min} = \gamma_0 L_0` (not :math:`\min` with :math:`L_0`); every later step
        first takes :math:`\min(L_{\min}, L_t)`, computes :math:`\eta_t` from it, and then
        multiplies :math:`L_{\min}` by :math:`1 + 1/\tau` after the step.

    .. note::
        Departures: L4 assumes a non-negative loss; :math:`\eta_t` is clamped at 0 so that a
        negative loss never turns the step into ascent. A step whose loss, gradient or
        :math:`\eta_t` is not finite leaves the weights and :math:`L_{\min}` unchanged and
        sets ``diagnostics["skipped"]`` to 1 (non-finite entries of ``p.grad`` are set to 0
        in place). Several parameter groups share :math:`L_{\min}`
        and :math:`\langle g, v\rangle` (over all parameters); group i steps with
        :math:`\alpha_i`. With ``torch.distributed`` initialised the loss is averaged over
        the ranks of the default process group, so every rank takes the same step.
    """

    takes_loss_closure = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.15,
        gamma: float = 0.9,
        gamma0: float = 0.75,
        tau: float = 1000.0,
        eps: float = 1e-12,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "gamma": gamma,
            "gamma0": gamma0,
            "tau": tau,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        _check(defaults)
        super().__init__(params, defaults)
        self.diagnostics: dict[str, Tensor] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("diagnostics", {})
        for group in self.param_groups:
            group.setdefault("foreach", None)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group after checking its hyperparameters (the shared ones must agree)."""
        _check(param_group)
        for name in _SHARED:
            if self.param_groups and name in param_group:
                shared = self.param_groups[0][name]
                if float(param_group[name]) != shared:
                    raise ValueError(
                        f"invalid {name}: {param_group[name]!r}; every parameter group must "
                        f"use the same {name} ({shared!r}), since they share one L_min"
                    )
        super().add_param_group(param_group)

    def _global_state(self, *, recast: bool = False) -> dict[str, Any]:
        # L_min and the step count live in the state of the first parameter.
        first = self.param_groups[0]["params"][0]
        state = self.state[first]
        current = state.get("min_loss")
        if current is None or recast or current.device != first.device:
            dtype = scalar_dtype(p for group in self.param_groups for p in group["params"])
            for key in ("min_loss", "step"):
                value = state.get(key)
                if value is None:
                    state[key] = torch.zeros((), dtype=dtype, device=first.device)
                else:
                    state[key] = value.to(device=first.device, dtype=dtype)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state; L_min and the step count are moved to the parameters' device."""
        load_keeping_scalars(self, state_dict, ("min_loss", "step"), super().load_state_dict)
        if self.state.get(self.param_groups[0]["params"][0]):
            self._global_state(recast=True)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """Takes one L4 step on the batch that ``closure`` evaluates.

        Args:
            closure: returns the scalar loss on the current batch; it must not call
                ``backward()``.

        Returns:
            The loss (the closure's return value, detached).
        """
        if closure is None:
            raise ValueError("L4.step needs a closure that returns the loss on the current batch")
        state = self._global_state()
        min_loss, step_count = state["min_loss"], state["step"]
        device, dtype = min_loss.device, min_loss.dtype
        shared = self.param_groups[0]

        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure()
        loss.backward()

        loss_value = average_across_ranks(loss.detach().to(device=device, dtype=dtype))
        steps, grad_sqs = [], []
        for group in self.param_groups:
            foreach = group["foreach"] is None or group["foreach"]
            params, grads = params_with_grad(group["params"])
            weight_decay = group["weight_decay"]
            if weight_decay != 0.0 and params:
                penalty = squared_norm(params, dtype=dtype, device=device, foreach=foreach)
                loss_value = loss_value + (weight_decay / 2) * penalty
                grads = with_weight_decay(grads, params, weight_decay, foreach=foreach)
            grad_sqs.append(squared_norm(grads, dtype=dtype, device=device, foreach=foreach))
            steps.append((params, grads, foreach, group["lr"]))
        grad_sq = grad_sqs[0] if len(grad_sqs) == 1 else torch.stack(grad_sqs).sum()

        min_used = torch.where(
            step_count == 0, shared["gamma0"] * loss_value, torch.minimum(min_loss, loss_value)
        )
        unit_step = (loss_value - shared["gamma"] * min_used) / (grad_sq + shared["eps"])
        unit_step = unit_step.clamp_min(0.0)
        taken = torch.isfinite(loss_value + grad_sq) & torch.isfinite(unit_step)
        for params, grads, foreach, alpha in steps:
            scale = torch.where(taken, unit_step * alpha, 0.0)
            subtract_scaled(params, grads, scale, foreach=foreach)
        min_loss.copy_(torch.where(taken, min_used * (1.0 + 1.0 / shared["tau"]), min_loss))
        step_count.add_(taken.to(dtype))

        self.diagnostics = {
            "lr": torch.where(taken, unit_step * steps[0][3], 0.0),
            "loss": loss_value,
            "min_loss": min_used,
            "grad_sq": grad_sq,
            "skipped": (~taken).to(dtype),
        }
        return loss.detach()


def _check(values: dict[str, Any]) -> None:
    """Raises ValueError for any out-of-range hyperparameter present in ``values``."""
    limits = {
        "lr": (0.0, False),
        "gamma0": (0.0, False),
        "gamma": (0.0, False),
        "tau": (0.0, False),
        "eps": (0.0, True),
        "weight_decay": (0.0, True),
    }
    for name, (low, inclusive) in limits.items():
        if name in values:
            check_hyperparameter(name, values[name], low=low, low_inclusive=inclusive)
    for name in ("gamma", "gamma0"):
        if name in values and float(values[name]) > 1.0:
            raise ValueError(f"invalid {name}: {values[name]!r}; it must be in (0, 1]")
