"""WNGrad (Wu, Ward & Bottou, 2018): gradient descent with one learned scalar step size."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from lossgrad._multi_tensor import (
    check_hyperparameter,
    load_keeping_scalars,
    params_with_grad,
    scalar_dtype,
    squared_norm,
    subtract_scaled,
    with_weight_decay,
)

__all__ = ["WNGrad"]


class WNGrad(Optimizer):
    r"""WNGrad: gradient descent whose step size :math:`\eta / b_j` shrinks with the gradients.

    With gradient :math:`g_j` at step j, one step is

    .. math::
        \begin{aligned}
        b_{j+1} &= b_j + \eta^2 \lVert g_j\rVert^2 / b_j \\
        \theta_{j+1} &= \theta_j - (\eta / b_{j+1})\, g_j
        \end{aligned}

    starting from :math:`b_0`. The step size can only decrease; :math:`b_j` grows like the
    gradient's Lipschitz constant times :math:`\eta` and then stays (the paper's result).
    Driven the usual way: ``opt.zero_grad(); loss.backward(); opt.step()``.
    :attr:`diagnostics` describes the last step with 0-dim tensors: ``lr``
    (:math:`\eta / b_{j+1}` of group 0, 0 if the step was skipped), ``loss`` (the closure's
    value if a closure was passed, else nan), ``b`` (:math:`b_{j+1}` of group 0),
    ``grad_sq`` (:math:`\lVert g\rVert^2` over all groups) and ``skipped``.

    Args:
        params: the parameters to optimise, or dicts defining parameter groups.
        lr: :math:`\eta`, the learning rate (default: 1.0, which is the paper's rule without
            a learning rate). Must be > 0.
        b0: the initial :math:`b_0` (default: 1.0). Must be > 0.
        weight_decay: coefficient of an L2 penalty (default: 0): the step uses
            :math:`g + \lambda\theta`, and that is also the gradient that enters :math:`b`.
        foreach: use the multi-tensor ``torch._foreach_*`` kernels (default: None, which
            means yes); ``False`` runs a plain loop over the parameters.

    .. note::
        The step divides by :math:`b_{j+1}`, the value after the update that includes the
        current gradient. This is the paper's deterministic Algorithm 1 for every step but
        the first (there, :math:`\theta_1 = \theta_0 - g_0 / b_0`, and :math:`\lVert g_0\rVert^2`
        never enters b). Dividing by :math:`b_{j+1}` bounds every step:
        :math:`\lVert\theta_{j+1} - \theta_j\rVert = \eta\lVert g_j\rVert / b_{j+1} \le 1/2`.

    .. note::
        :math:`\eta` enters squared in the update of b, so :math:`b_j / \eta` follows the
        paper's rule without a learning rate from :math:`b_0 / \eta`: a learning rate
        :math:`\eta` is the same as :math:`b_0 / \eta` in place of :math:`b_0`, and sets the
        initial step size :math:`\eta / b_0`.

    .. note::
        Each parameter group keeps its own :math:`b` from the gradient of its own parameters
        (one group, the default, is the paper's single scalar). A gradient that is not finite
        (or whose squared norm overflows) leaves the group's weights and b unchanged and
        sets ``diagnostics["skipped"]`` to 1; its non-finite entries in ``p.grad`` are set
        to 0 in place.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        b0: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": check_hyperparameter("lr", lr, low=0.0, low_inclusive=False),
            "b0": check_hyperparameter("b0", b0, low=0.0, low_inclusive=False),
            "weight_decay": check_hyperparameter(
                "weight_decay", weight_decay, low=0.0, low_inclusive=True
            ),
            "foreach": foreach,
        }
        super().__init__(params, defaults)
        self.diagnostics: dict[str, Tensor] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("diagnostics", {})
        for group in self.param_groups:
            group.setdefault("foreach", None)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group after checking its hyperparameters."""
        for name, inclusive in (("lr", False), ("b0", False), ("weight_decay", True)):
            if name in param_group:
                check_hyperparameter(name, param_group[name], low=0.0, low_inclusive=inclusive)
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state; each b is moved to its group's device and scalar dtype."""
        load_keeping_scalars(self, state_dict, ("b",), super().load_state_dict)
        for group in self.param_groups:
            state = self.state.get(group["params"][0], {})
            if "b" in state:
                state["b"] = self._scalar_like(group, state["b"])

    @staticmethod
    def _scalar_like(group: dict[str, Any], value: Tensor) -> Tensor:
        first = group["params"][0]
        return value.to(device=first.device, dtype=scalar_dtype(group["params"]), copy=True)

    def _group_b(self, group: dict[str, Any]) -> Tensor:
        # b lives in the state of the group's first parameter (lazily created).
        state = self.state[group["params"][0]]
        if "b" not in state:
            first = group["params"][0]
            state["b"] = torch.tensor(
                float(group["b0"]), dtype=scalar_dtype(group["params"]), device=first.device
            )
        elif state["b"].device != group["params"][0].device:
            state["b"] = self._scalar_like(group, state["b"])
        return state["b"]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Takes one WNGrad step with the gradients stored in ``p.grad``.

        Args:
            closure: optional; as for any ``torch.optim`` optimizer, re-evaluates the model,
                calls ``backward()`` and returns the loss.

        Returns:
            The closure's loss, or None without a closure.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        grad_sqs, skipped, diagnostics = [], [], {}
        for index, group in enumerate(self.param_groups):
            foreach = group["foreach"] is None or group["foreach"]
            b = self._group_b(group)
            params, grads = params_with_grad(group["params"])
            if group["weight_decay"] != 0.0 and params:
                grads = with_weight_decay(grads, params, group["weight_decay"], foreach=foreach)
            grad_sq = squared_norm(grads, dtype=b.dtype, device=b.device, foreach=foreach)
            eta = group["lr"]
            b_next = b + (eta * eta) * grad_sq / b
            taken = torch.isfinite(b_next)
            step_size = eta / b_next
            subtract_scaled(params, grads, torch.where(taken, step_size, 0.0), foreach=foreach)
            b.copy_(torch.where(taken, b_next, b))
            grad_sqs.append(grad_sq)
            skipped.append(~taken)
            if index == 0:
                diagnostics = {"lr": torch.where(taken, step_size, 0.0), "b": b.clone()}

        first = diagnostics["b"]
        total, any_skipped = grad_sqs[0], skipped[0]
        for grad_sq, group_skipped in zip(grad_sqs[1:], skipped[1:], strict=True):
            total = total + grad_sq.to(device=first.device, dtype=first.dtype)
            any_skipped = any_skipped | group_skipped.to(first.device)
        diagnostics["skipped"] = any_skipped.to(first.dtype)
        if loss is None:
            nan = float("nan")
            diagnostics["loss"] = torch.full((), nan, dtype=first.dtype, device=first.device)
        else:
            diagnostics["loss"] = loss.detach().to(device=first.device, dtype=first.dtype)
        diagnostics["grad_sq"] = total
        self.diagnostics = diagnostics
        return loss
