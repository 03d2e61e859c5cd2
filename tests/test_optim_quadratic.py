"""Section 3 of the paper: exact line search on 2-D quadratics meets bound (4), and LossGrad's
h settles around the exactly optimal step t0."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lossgrad import LossGrad
from lossgrad.quadratic import (
    contraction_bound,
    line_search_map,
    optimal_step,
    quadratic_value,
    two_step_factor,
)


def random_quadratic(seed: int, n: int = 2, max_condition: float = 100.0):
    """Eigenvalues λ1 >= λ2 (log-uniform over one condition-number range), a rotation Q and
    A = Q diag(λ) Qᵀ."""
    generator = torch.Generator().manual_seed(seed)
    scale = 10 ** (4 * torch.rand((), generator=generator, dtype=torch.float64) - 2)
    spread = torch.rand(n, generator=generator, dtype=torch.float64) * math.log(max_condition)
    eigenvalues = (scale * spread.exp()).sort(descending=True).values
    rotation, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return eigenvalues, rotation, rotation @ torch.diag(eigenvalues) @ rotation.T


def random_points(seed: int, count: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 2, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(20))
def test_optimal_step_minimises_the_quadratic_along_the_gradient(seed):
    eigenvalues, rotation, a = random_quadratic(seed)
    x = torch.randn(2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    t0 = optimal_step(eigenvalues, rotation.T @ x)
    gradient = 2 * a @ x

    def along(t):
        point = x - t * gradient
        return point @ a @ point

    best = along(t0)
    for t in (0.9 * t0, 0.99 * t0, 1.01 * t0, 1.1 * t0):
        assert best < along(t)
    # Same value computed in eigen-coordinates.
    assert quadratic_value(eigenvalues, rotation.T @ x) == pytest.approx((x @ a @ x).item())


@pytest.mark.parametrize("seed", range(20))
def test_line_search_map_is_the_papers_closed_form_and_scale_invariant(seed):
    eigenvalues, _, _ = random_quadratic(seed)
    l1, l2 = eigenvalues
    points = random_points(seed)
    x1, x2 = points[:, 0], points[:, 1]
    closed = ((l2 - l1) / (l1**3 * x1**2 + l2**3 * x2**2) * x1 * x2).unsqueeze(-1) * torch.stack(
        (l2**2 * x2, -(l1**2) * x1), dim=-1
    )
    torch.testing.assert_close(line_search_map(eigenvalues, points), closed)
    torch.testing.assert_close(
        line_search_map(eigenvalues, 3.7 * points), 3.7 * line_search_map(eigenvalues, points)
    )
    twice = line_search_map(eigenvalues, line_search_map(eigenvalues, points))
    factor = two_step_factor(eigenvalues, points).unsqueeze(-1)
    torch.testing.assert_close(twice, factor * points)


@pytest.mark.parametrize("seed", range(50))
def test_exact_line_search_meets_bound_4(seed):
    eigenvalues, _, _ = random_quadratic(seed, max_condition=50.0)
    points = random_points(seed + 1000)
    start_norm = points.norm(dim=-1)
    x = points
    for step in range(1, 21):
        x = line_search_map(eigenvalues, x)
        if step % 2 == 0:
            bound = contraction_bound(eigenvalues, step) * start_norm
            assert torch.all(x.norm(dim=-1) <= bound * (1 + 1e-9))


@pytest.mark.parametrize("seed", range(10))
def test_bound_4_is_attained_by_the_worst_direction(seed):
    # The two-step factor is largest for a_x = x1²/x2² = λ2²/λ1², where it equals the bound.
    eigenvalues, _, _ = random_quadratic(seed)
    l1, l2 = eigenvalues
    worst = torch.stack((l2, l1))  # a_x = λ2² / λ1²
    twice = line_search_map(eigenvalues, line_search_map(eigenvalues, worst))
    assert twice.norm() == pytest.approx((contraction_bound(eigenvalues, 2) * worst.norm()).item())


def lossgrad_on_quadratic(eigenvalues, rotation, start, *, c, h0, steps):
    """Runs LossGrad on F(x) = xᵀAx and returns h_k and t0(x_k) before every step.

    F is homogeneous of degree 2, so r_h, hence LossGrad's decision, depends on the direction
    of x only; x is rescaled to unit length before each step to keep it far from underflow
    over many steps, which changes neither h nor the direction of the path.
    """
    a = rotation @ torch.diag(eigenvalues) @ rotation.T
    x = nn.Parameter(start.clone())
    optimizer = LossGrad([x], lr=h0, c=c)
    hs, optimal = [], []
    for _ in range(steps):
        with torch.no_grad():
            x.div_(x.norm())
        hs.append(float(optimizer.param_groups[0]["lr"]))
        optimal.append(optimal_step(eigenvalues, rotation.T @ x.detach()).item())
        optimizer.step(lambda: x @ a @ x)
    return torch.tensor(hs, dtype=torch.float64), torch.tensor(optimal, dtype=torch.float64)


def burn_in(h0: float, t0_max: float, c: float) -> int:
    """Steps that h needs to climb from h0 to the largest optimal step, plus a margin."""
    return math.ceil(abs(math.log(t0_max / h0)) / math.log(c)) + 10


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [1.05, 1.2])
def test_lossgrad_h_settles_within_c_squared_of_a_constant_t0(seed, c):
    # Started on an eigenvector (in the eigenbasis, so the other coordinate stays exactly 0)
    # the path stays on it and t0 = 1/(2 λ) at every step: after the burn-in, every h is
    # within a factor c² of t0 (in fact within c).
    eigenvalues, _, _ = random_quadratic(seed)
    rotation = torch.eye(2, dtype=torch.float64)
    index = seed % 2
    start = rotation[:, index].clone()
    t0 = 1 / (2 * eigenvalues[index].item())
    h0 = 1e-4 * t0 if seed % 3 else 1e3 * t0  # from far below or far above
    steps = burn_in(h0, t0, c) + 200
    hs, optimal = lossgrad_on_quadratic(eigenvalues, rotation, start, c=c, h0=h0, steps=steps)
    torch.testing.assert_close(optimal, torch.full_like(optimal, t0))
    settled = hs[burn_in(h0, t0, c) :]
    assert torch.all(settled >= t0 / c**2) and torch.all(settled <= t0 * c**2)


@pytest.mark.parametrize("seed", range(8))
def test_lossgrad_h_settles_within_c_squared_of_the_optimal_steps_on_the_path(seed):
    # From a generic start t0(x_k) itself oscillates along the zig-zag (between 1/(2 λ1) and
    # 1/(2 λ2)), so h cannot equal it at every step. Settling means: after the burn-in, every
    # h lies within a factor c² of the range of t0 over the path from then on.
    c = 1.05
    eigenvalues, rotation, _ = random_quadratic(seed, max_condition=30.0)
    start = random_points(seed, count=1)[0]
    h0 = 1e-4 / eigenvalues[0].item()
    t0_max = 1 / (2 * eigenvalues[1].item())
    steps = burn_in(h0, t0_max, c) + 400
    hs, optimal = lossgrad_on_quadratic(eigenvalues, rotation, start, c=c, h0=h0, steps=steps)
    first = burn_in(h0, t0_max, c)
    settled, window = hs[first:], optimal[first:]
    assert torch.all(settled >= window.min() / c**2)
    assert torch.all(settled <= window.max() * c**2)
    # The window is a real range, not a point: the test is about following a moving t0.
    assert window.max() / window.min() > c**2 or eigenvalues[0] / eigenvalues[1] < 1.5
