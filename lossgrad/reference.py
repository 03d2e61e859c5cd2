"""Plain references of the three algorithms, written in their papers' notation.

Each function is one step on a flat parameter vector ``theta`` (float64 recommended) and a
loss ``f(theta)``; scalars are Python floats. They favour readability over speed (host reads,
no multi-tensor kernels) and exist so that the optimizers of this package can be checked
against them step for step. None of them handles degenerate steps (zero or non-finite
gradients); the papers do not either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Loss = Callable[[Tensor], Tensor]

__all__ = [
    "L4State",
    "LossGradStep",
    "l4_sgd_step",
    "loss_and_gradient",
    "lossgrad_step",
    "wngrad_step",
]


def loss_and_gradient(f: Loss, theta: Tensor) -> tuple[float, Tensor]:
    """f(θ) and ∇f(θ) by autograd."""
    theta = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        value = f(theta)
        (gradient,) = torch.autograd.grad(value, theta)
    return value.item(), gradient


@dataclass
class LossGradStep:
    """What one LOSSGRAD step produced."""

    theta: Tensor
    h: float
    f: float
    actual: float
    r_h: float


def lossgrad_step(f: Loss, theta: Tensor, h: float, c: float) -> LossGradStep:
    """Algorithm 1 of the LOSSGRAD paper, one step with step size h and factor c."""
    value, g = loss_and_gradient(f, theta)
    g_sq = g.dot(g).item()
    approx = value - h * g_sq
    theta = theta.detach() - h * g
    with torch.no_grad():
        actual = f(theta).item()
    r_h = (actual - approx) / (h * g_sq)
    h_next = h / c if r_h > 0.5 else c * h
    return LossGradStep(theta=theta, h=h_next, f=value, actual=actual, r_h=r_h)


def wngrad_step(f: Loss, x: Tensor, b: float, eta: float) -> tuple[Tensor, float]:
    """WNGrad (Wu, Ward & Bottou): b_{j+1} = b_j + η²‖g_j‖²/b_j, x_{j+1} = x_j − η g_j/b_{j+1}.

    Returns:
        (x_{j+1}, b_{j+1}).
    """
    _, g = loss_and_gradient(f, x)
    b_next = b + eta**2 * g.dot(g).item() / b
    return x.detach() - (eta / b_next) * g, b_next


@dataclass
class L4State:
    """L4's state between steps: the minimum-loss estimate L_min and the step index t."""

    min_loss: float = 0.0
    t: int = 0


def l4_sgd_step(
    f: Loss,
    theta: Tensor,
    state: L4State,
    alpha: float = 0.15,
    gamma: float = 0.9,
    gamma0: float = 0.75,
    tau: float = 1000.0,
    eps: float = 1e-12,
) -> tuple[Tensor, L4State, float]:
    """L4 (Rolinek & Martius) with the SGD direction v = g.

    L_min = γ0·L at t = 0, else min(L_min, L); η = α(L − γ·L_min)/(⟨g, v⟩ + ε);
    θ ← θ − η·v; then L_min ← (1 + 1/τ)·L_min.

    Returns:
        (θ_{t+1}, the new state, η).
    """
    loss, g = loss_and_gradient(f, theta)
    min_loss = gamma0 * loss if state.t == 0 else min(state.min_loss, loss)
    eta = alpha * (loss - gamma * min_loss) / (g.dot(g).item() + eps)
    theta = theta.detach() - eta * g
    return theta, L4State(min_loss=(1 + 1 / tau) * min_loss, t=state.t + 1), eta
