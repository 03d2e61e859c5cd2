"""WNGrad: the rule, parameter groups, degenerate steps, state round trips, argument checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lossgrad import WNGrad


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_mlp(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4)).double()


def batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 6, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 4, (16,), generator=generator)


def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def test_defaults_and_diagnostics():
    model = small_mlp()
    optimizer = WNGrad(model.parameters())
    assert optimizer.defaults == {"lr": 1.0, "b0": 1.0, "weight_decay": 0.0, "foreach": None}
    assert optimizer.diagnostics == {}
    x, y = batch()
    train_step(model, optimizer, x, y)
    diagnostics = optimizer.diagnostics
    assert set(diagnostics) == {"lr", "loss", "b", "grad_sq", "skipped"}
    assert all(v.dim() == 0 for v in diagnostics.values())
    assert math.isnan(diagnostics["loss"].item())  # no closure: the loss is unknown
    assert diagnostics["lr"].item() == pytest.approx(1.0 / diagnostics["b"].item())


def test_one_step_divides_by_the_updated_b():
    theta = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    optimizer = WNGrad([theta], lr=2.0, b0=5.0)
    theta.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)  # ‖g‖² = 25
    optimizer.step()
    b1 = 5.0 + 2.0**2 * 25.0 / 5.0
    torch.testing.assert_close(
        theta.detach(), torch.tensor([3.0, 4.0], dtype=torch.float64) * (1 - 2.0 / b1)
    )
    assert optimizer.diagnostics["b"].item() == pytest.approx(b1)


def test_every_step_is_at_most_one_half_long():
    theta = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = WNGrad([theta], lr=10.0, b0=1e-3)
    for scale in (1e-3, 1.0, 1e6):
        before = theta.detach().clone()
        theta.grad = torch.full((3,), scale, dtype=torch.float64)
        optimizer.step()
        assert (theta.detach() - before).norm() <= 0.5 + 1e-12


def test_closure_loss_is_reported():
    model = small_mlp()
    x, y = batch()
    optimizer = WNGrad(model.parameters(), lr=0.5)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert optimizer.diagnostics["loss"].item() == pytest.approx(loss.item())


def test_param_groups_keep_their_own_b():
    model = small_mlp()
    x, y = batch()
    optimizer = WNGrad(
        [{"params": model[0].parameters(), "b0": 2.0}, {"params": model[2].parameters()}],
        lr=0.5,
    )
    train_step(model, optimizer, x, y)
    for group, b0 in zip(optimizer.param_groups, (2.0, 1.0), strict=True):
        grad_sq = sum(p.grad.square().sum().item() for p in group["params"])
        b = optimizer.state[group["params"][0]]["b"].item()
        assert b == pytest.approx(b0 + 0.25 * grad_sq / b0)


def test_foreach_and_loop_paths_agree_in_float64():
    x, y = batch()
    results = []
    for foreach in (True, False):
        model = small_mlp()
        optimizer = WNGrad(model.parameters(), lr=0.7, weight_decay=1e-2, foreach=foreach)
        for _ in range(30):
            train_step(model, optimizer, x, y)
        results.append(([p.detach() for p in model.parameters()], optimizer.diagnostics["b"]))
    (params_a, b_a), (params_b, b_b) = results
    torch.testing.assert_close(b_a, b_b, rtol=1e-13, atol=0)
    for a, b in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_is_skipped(foreach, bad):
    model = small_mlp()
    x, y = batch()
    optimizer = WNGrad(model.parameters(), foreach=foreach)
    train_step(model, optimizer, x, y)
    before = [p.detach().clone() for p in model.parameters()]
    b_before = optimizer.diagnostics["b"].item()
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    model[0].weight.grad[0, 0] = bad
    optimizer.step()
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), p0)
    assert optimizer.diagnostics["b"].item() == b_before
    assert optimizer.diagnostics["skipped"].item() == 1.0
    assert optimizer.diagnostics["lr"].item() == 0.0


def test_zero_gradient_leaves_weights_and_b():
    theta = nn.Parameter(torch.ones(2, dtype=torch.float64))
    optimizer = WNGrad([theta], b0=3.0)
    theta.grad = torch.zeros(2, dtype=torch.float64)
    optimizer.step()
    assert torch.equal(theta.detach(), torch.ones(2, dtype=torch.float64))
    assert optimizer.diagnostics["b"].item() == 3.0


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"b0": 0.0}, "b0"),
        ({"b0": -1.0}, "b0"),
        ({"b0": float("inf")}, "b0"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        WNGrad(small_mlp().parameters(), **kwargs)
    model = small_mlp()
    with pytest.raises(ValueError, match=bad):
        WNGrad([{"params": model[0].parameters()}, {"params": model[2].parameters(), **kwargs}])


def test_state_dict_round_trip_continues_the_same_trajectory():
    x, y = batch()
    model = small_mlp()
    optimizer = WNGrad(model.parameters(), lr=0.5)
    for _ in range(5):
        train_step(model, optimizer, x, y)
    clone = small_mlp(seed=3)
    clone.load_state_dict(copy.deepcopy(model.state_dict()))
    restored = WNGrad(clone.parameters())
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert restored.param_groups[0]["lr"] == 0.5
    for _ in range(5):
        train_step(model, optimizer, x, y)
        train_step(clone, restored, x, y)
    assert restored.diagnostics["b"].item() == optimizer.diagnostics["b"].item()
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_b_keeps_its_precision_when_loaded_for_low_precision_parameters():
    model = small_mlp()
    x, y = batch()
    optimizer = WNGrad(model.parameters())
    train_step(model, optimizer, x, y)
    saved = optimizer.state_dict()
    half = small_mlp().to(torch.bfloat16)
    loaded = WNGrad(half.parameters())
    loaded.load_state_dict(saved)
    b = loaded.state[next(half.parameters())]["b"]
    assert b.dtype == torch.float32
    assert b.item() == pytest.approx(optimizer.diagnostics["b"].item(), rel=1e-6)


def test_load_state_dict_onto_another_device():
    # The meta device stands in for an accelerator: b must follow the parameters there.
    model = small_mlp()
    x, y = batch()
    optimizer = WNGrad(model.parameters())
    train_step(model, optimizer, x, y)
    with torch.device("meta"):
        moved = small_mlp()
    loaded = WNGrad(moved.parameters())
    loaded.load_state_dict(optimizer.state_dict())
    assert loaded.state[next(moved.parameters())]["b"].device.type == "meta"
