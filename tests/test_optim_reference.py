"""The fast optimizers match the plain references of lossgrad.reference step for step, in
float64, over more than 100 steps of a small network."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from lossgrad import L4, LossGrad, WNGrad
from lossgrad.reference import L4State, l4_sgd_step, lossgrad_step, wngrad_step

STEPS = 120


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FlatProblem:
    """A small float64 network, a cycle of batches, and its loss as a function of one flat
    parameter vector, so that the references and the optimizers see the same function."""

    def __init__(self, seed: int = 0, n_batches: int = 4) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        self.names = [name for name, _ in self.model.named_parameters()]
        self.shapes = [p.shape for p in self.model.parameters()]
        generator = torch.Generator().manual_seed(seed + 1)
        self.batches = [
            (
                torch.randn(12, 5, generator=generator, dtype=torch.float64),
                torch.randint(0, 3, (12,), generator=generator),
            )
            for _ in range(n_batches)
        ]

    def batch(self, step: int):
        return self.batches[step % len(self.batches)]

    def flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def loss_of_flat(self, step: int, weight_decay: float = 0.0):
        x, y = self.batch(step)

        def f(theta: torch.Tensor) -> torch.Tensor:
            pieces = theta.split([s.numel() for s in self.shapes])
            params = {
                n: t.view(s) for n, t, s in zip(self.names, pieces, self.shapes, strict=True)
            }
            loss = F.cross_entropy(functional_call(self.model, params, (x,)), y)
            return loss + (weight_decay / 2) * theta.square().sum()

        return f

    def closure(self, step: int):
        x, y = self.batch(step)
        return lambda: F.cross_entropy(self.model(x), y)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lossgrad_matches_algorithm_1(foreach, weight_decay):
    problem = FlatProblem()
    h, c = 0.5, 1.2
    optimizer = LossGrad(
        problem.model.parameters(), lr=h, c=c, weight_decay=weight_decay, foreach=foreach
    )
    theta = problem.flat()
    grew = shrank = 0
    for step in range(STEPS):
        expected = lossgrad_step(problem.loss_of_flat(step, weight_decay), theta, h, c)
        optimizer.step(problem.closure(step))
        diagnostics = optimizer.diagnostics
        assert diagnostics["loss"].item() == pytest.approx(expected.f, rel=1e-12)
        assert diagnostics["loss_after"].item() == pytest.approx(expected.actual, rel=1e-12)
        assert diagnostics["ratio"].item() == pytest.approx(expected.r_h, rel=1e-8, abs=1e-10)
        torch.testing.assert_close(problem.flat(), expected.theta, rtol=1e-11, atol=1e-13)
        assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(expected.h, rel=1e-13)
        grew += expected.h > h
        shrank += expected.h < h
        theta, h = expected.theta, expected.h
    assert grew > 10 and shrank > 10  # both branches of the rule were exercised


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_wngrad_matches_the_paper_rule(foreach, weight_decay):
    problem = FlatProblem(seed=2)
    eta, b = 0.7, 0.5
    optimizer = WNGrad(
        problem.model.parameters(), lr=eta, b0=b, weight_decay=weight_decay, foreach=foreach
    )
    x = problem.flat()
    for step in range(STEPS):
        x, b = wngrad_step(problem.loss_of_flat(step, weight_decay), x, b, eta)
        optimizer.zero_grad()
        problem.closure(step)().backward()
        optimizer.step()
        torch.testing.assert_close(problem.flat(), x, rtol=1e-11, atol=1e-13)
        assert optimizer.diagnostics["b"].item() == pytest.approx(b, rel=1e-12)
        assert optimizer.diagnostics["lr"].item() == pytest.approx(eta / b, rel=1e-12)
    assert b > 2.0  # b grew well away from b0


@pytest.mark.parametrize("foreach", [True, False])
def test_l4_matches_the_paper_rule(foreach):
    problem = FlatProblem(seed=4)
    settings = {"alpha": 0.1, "gamma": 0.9, "gamma0": 0.75, "tau": 20.0, "eps": 1e-12}
    optimizer = L4(
        problem.model.parameters(),
        lr=settings["alpha"],
        gamma=settings["gamma"],
        gamma0=settings["gamma0"],
        tau=settings["tau"],
        eps=settings["eps"],
        foreach=foreach,
    )
    theta, state = problem.flat(), L4State()
    min_loss_changes = 0
    for step in range(STEPS):
        previous = state.min_loss
        theta, state, eta = l4_sgd_step(problem.loss_of_flat(step), theta, state, **settings)
        optimizer.step(problem.closure(step))
        assert optimizer.diagnostics["lr"].item() == pytest.approx(eta, rel=1e-10)
        assert optimizer.diagnostics["min_loss"].item() == pytest.approx(
            state.min_loss / (1 + 1 / settings["tau"]), rel=1e-12
        )
        torch.testing.assert_close(problem.flat(), theta, rtol=1e-10, atol=1e-12)
        min_loss_changes += state.min_loss < previous
    assert min_loss_changes > 5  # the min() branch was taken, not only the slow increase
