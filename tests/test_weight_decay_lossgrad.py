"""LOSSGRAD with weight decay: both loss evaluations measure the penalised objective
F(θ) = f(θ) + (λ/2)‖θ‖² whose gradient f'(θ) + λθ gives the step, so r_h is the ratio of one
function's values and slopes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

lossgrad = pytest.importorskip("lossgrad")


def _linear_problem():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    inputs = torch.randn(8, 3, dtype=torch.float64)
    targets = torch.randn(8, 2, dtype=torch.float64)
    return model, inputs, targets


def _penalised(model_or_params, data_loss: torch.Tensor, weight_decay: float) -> torch.Tensor:
    params = list(model_or_params)
    return data_loss + weight_decay / 2 * sum(p.square().sum() for p in params)


def test_both_evaluations_include_the_penalty():
    model, inputs, targets = _linear_problem()
    weight_decay, h, c = 0.3, 0.05, 1.05

    # By hand, in float64: F, its gradient, the step and F after it.
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    data_loss = nn.functional.mse_loss(inputs @ params[0].T + params[1], targets)
    objective = _penalised(params, data_loss, weight_decay)
    grads = torch.autograd.grad(objective, params)
    grad_sq = sum(g.square().sum() for g in grads)
    stepped = [p.detach() - h * g for p, g in zip(params, grads, strict=True)]
    data_after = nn.functional.mse_loss(inputs @ stepped[0].T + stepped[1], targets)
    objective_after = _penalised(stepped, data_after, weight_decay)
    ratio = (objective_after - (objective.detach() - h * grad_sq)) / (h * grad_sq)

    optimizer = lossgrad.LossGrad(
        model.parameters(), lr=h, c=c, weight_decay=weight_decay, model=model
    )
    returned = optimizer.step(lambda: nn.functional.mse_loss(model(inputs), targets))
    diagnostics = optimizer.diagnostics

    torch.testing.assert_close(returned.double(), data_loss.detach())  # closure value only
    torch.testing.assert_close(diagnostics["loss"].double(), objective.detach())
    torch.testing.assert_close(diagnostics["loss_after"].double(), objective_after)
    torch.testing.assert_close(diagnostics["grad_sq"].double(), grad_sq)
    torch.testing.assert_close(diagnostics["ratio"].double(), ratio)
    for parameter, expected in zip(model.parameters(), stepped, strict=True):
        torch.testing.assert_close(parameter.detach(), expected)
    expected_h = h * c if float(ratio) <= 0.5 else h / c
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(expected_h)


@pytest.mark.parametrize(("h", "grows"), [(0.4, True), (5.0, False)])
def test_pure_penalty_gives_the_quadratic_ratio(h, grows):
    """With a data loss that does not depend on θ, F is the quadratic (λ/2)‖θ‖², for which
    r_h = h·λ/2 exactly. Were the penalty only in the gradient and not in the two loss values,
    the losses would be equal and r_h would be 1 whatever h is."""
    torch.manual_seed(1)
    weight_decay = 0.5
    model = nn.Linear(4, 3).double()
    optimizer = lossgrad.LossGrad(model.parameters(), lr=h, c=1.1, weight_decay=weight_decay)
    constant = torch.tensor(2.0, dtype=torch.float64)
    optimizer.step(lambda: constant + 0.0 * sum(p.sum() for p in model.parameters()))
    assert float(optimizer.diagnostics["ratio"]) == pytest.approx(h * weight_decay / 2)
    new_h = float(optimizer.param_groups[0]["lr"])
    assert new_h == pytest.approx(h * 1.1 if grows else h / 1.1)


def test_weight_decay_zero_matches_plain_loss():
    model, inputs, targets = _linear_problem()
    optimizer = lossgrad.LossGrad(model.parameters(), lr=0.05, weight_decay=0.0)
    first = nn.functional.mse_loss(model(inputs), targets).detach()
    optimizer.step(lambda: nn.functional.mse_loss(model(inputs), targets))
    torch.testing.assert_close(optimizer.diagnostics["loss"].double(), first)
