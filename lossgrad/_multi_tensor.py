"""Helpers shared by the optimizers of this package.

The tensor-list helpers used inside ``step`` (squared norms, weight decay, the masked update)
each have two paths that compute the same thing: the multi-tensor ``torch._foreach_*``
kernels (``foreach=True``) and a plain loop over the tensors (``foreach=False``); none of
them reads a value back to the host. The others check arguments and load state, outside
``step``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


def check_hyperparameter(name: str, value: Any, *, low: float, low_inclusive: bool) -> float:
    """Returns ``value`` as a float after checking that it is finite and above ``low``.

    Args:
        name: the argument's name, quoted in the error message.
        value: a Python number or a one-element tensor.
        low: the lower bound.
        low_inclusive: whether ``value == low`` is allowed.

    Raises:
        ValueError: naming the bad value and the valid range.
    """
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    bound = f">= {low}" if low_inclusive else f"> {low}"
    below = number < low if low_inclusive else number <= low
    if not math.isfinite(number) or below:
        raise ValueError(f"invalid {name}: {value!r}; it must be finite and {bound}")
    return number


def params_with_grad(params: Iterable[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """The parameters that have a gradient, and those gradients, in matching order.

    Raises:
        RuntimeError: if a gradient is sparse (none of the optimizers supports that).
    """
    with_grad, grads = [], []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("sparse gradients are not supported")
        with_grad.append(p)
        grads.append(p.grad)
    return with_grad, grads


def _indices_by_device(tensors: list[Tensor]) -> dict[torch.device, list[int]]:
    buckets: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault(t.device, []).append(i)
    return buckets


def squared_norm(
    tensors: list[Tensor], *, dtype: torch.dtype, device: torch.device, foreach: bool
) -> Tensor:
    """Σ‖t‖² over ``tensors``, accumulated in ``dtype``, as a 0-dim tensor on ``device``.

    An empty list gives 0. A non-finite entry, or an overflow of the sum, gives inf or nan.
    """
    if not tensors:
        return torch.zeros((), dtype=dtype, device=device)
    if foreach:
        partial = []
        for bucket_device, indices in _indices_by_device(tensors).items():
            bucket = [tensors[i] for i in indices]
            sums = torch.stack(torch._foreach_powsum(bucket, 2, dtype=dtype)).sum()
            partial.append(sums if bucket_device == device else sums.to(device))
        return partial[0] if len(partial) == 1 else torch.stack(partial).sum()
    total = torch.zeros((), dtype=dtype, device=device)
    for t in tensors:
        total = total + torch.linalg.vector_norm(t, dtype=dtype).square().to(device)
    return total


def with_weight_decay(
    grads: list[Tensor], params: list[Tensor], weight_decay: float, *, foreach: bool
) -> list[Tensor]:
    """New tensors g + weight_decay·θ (the gradient of (weight_decay/2)·‖θ‖² added)."""
    if foreach:
        return list(torch._foreach_add(grads, params, alpha=weight_decay))
    return [g.add(p, alpha=weight_decay) for g, p in zip(grads, params, strict=True)]


def subtract_scaled(
    params: list[Tensor], grads: list[Tensor], scale: Tensor, *, foreach: bool
) -> None:
    """θ ← θ − scale·g in place, after replacing non-finite entries of g by 0 (in place too).

    ``scale`` is a 0-dim tensor. Callers set it to 0 for a step they skip; zeroing the
    non-finite entries of g first is what keeps the weights exactly unchanged in that case
    (0·inf would be nan). A step that is taken has a finite gradient, which this leaves as
    it is. Working in place avoids allocating a copy of every gradient on every step.
    """
    if not params:
        return
    for g in grads:
        g.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    if foreach:
        for bucket_device, indices in _indices_by_device(params).items():
            local_scale = scale if scale.device == bucket_device else scale.to(bucket_device)
            bucket_params = [params[i] for i in indices]
            bucket_grads = [grads[i] for i in indices]
            fused = bucket_device.type != "cpu" and all(
                g.dtype == local_scale.dtype for g in bucket_grads
            )
            if fused:
                # Fused list kernels on accelerators: scaled copies, then one subtraction.
                torch._foreach_sub_(bucket_params, torch._foreach_mul(bucket_grads, local_scale))
            else:
                # One pass over each tensor (on the CPU the list kernels loop over tensors).
                scales = [local_scale] * len(indices)
                torch._foreach_addcmul_(bucket_params, bucket_grads, scales, value=-1)
        return
    for p, g in zip(params, grads, strict=True):
        p.addcmul_(g, scale if scale.device == p.device else scale.to(p.device), value=-1)


def scalar_dtype(params: Iterable[Tensor]) -> torch.dtype:
    """The dtype of the optimizer's scalars: float64 if any parameter is float64, else float32."""
    return torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32


def as_scalar_tensor(value: Any, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A fresh 0-dim tensor holding ``value`` (a number or a one-element tensor)."""
    if isinstance(value, Tensor):
        return value.detach().reshape(()).to(device=device, dtype=dtype, copy=True)
    return torch.tensor(float(value), dtype=dtype, device=device)


def load_keeping_scalars(
    optimizer: torch.optim.Optimizer,
    state_dict: dict[str, Any],
    keys: tuple[str, ...],
    load: Callable[[dict[str, Any]], None],
) -> None:
    """Runs ``load(state_dict)``, then puts back the saved values of the scalar state ``keys``.

    ``torch.optim.Optimizer.load_state_dict`` casts floating-point state to each parameter's
    dtype, which would round a scalar such as WNGrad's b to bfloat16 for bfloat16 weights.
    The values put back are copies of the saved tensors; the optimizer moves them to its
    scalar dtype and device afterwards.
    """
    kept = {
        (index, key): entry[key]
        for index, entry in state_dict["state"].items()
        for key in keys
        if key in entry
    }
    load(state_dict)
    param_of_index = {}
    for saved_group, group in zip(state_dict["param_groups"], optimizer.param_groups, strict=True):
        param_of_index.update(zip(saved_group["params"], group["params"], strict=True))
    for (index, key), value in kept.items():
        optimizer.state[param_of_index[index]][key] = value.detach().clone()
