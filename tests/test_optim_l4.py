"""L4 on SGD: the step size rule, the L_min tracking, degenerate steps, state, arguments."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lossgrad import L4


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


def test_defaults_and_diagnostics():
    model = small_mlp()
    optimizer = L4(model.parameters())
    assert optimizer.defaults == {
        "lr": 0.15,
        "gamma": 0.9,
        "gamma0": 0.75,
        "tau": 1000.0,
        "eps": 1e-12,
        "weight_decay": 0.0,
        "foreach": None,
    }
    assert optimizer.diagnostics == {}
    x, y = batch()
    loss = optimizer.step(lambda: F.cross_entropy(model(x), y))
    assert not loss.requires_grad
    assert set(optimizer.diagnostics) == {"lr", "loss", "min_loss", "grad_sq", "skipped"}
    assert optimizer.diagnostics["loss"].item() == pytest.approx(loss.item())


def test_first_two_steps_follow_the_rule():
    theta = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    optimizer = L4([theta], lr=0.5, gamma=0.8, gamma0=0.5, tau=4.0, eps=0.0)
    # F = θ², g = 2θ. Step 1: L = 4, L_min = γ0·L = 2, η = α(L − γ L_min)/g² = 0.5·2.4/16.
    optimizer.step(lambda: (theta**2).sum())
    eta = 0.5 * (4.0 - 0.8 * 2.0) / 16.0
    assert optimizer.diagnostics["lr"].item() == pytest.approx(eta)
    assert optimizer.diagnostics["min_loss"].item() == pytest.approx(2.0)
    theta1 = 2.0 - eta * 4.0
    assert theta.item() == pytest.approx(theta1)
    # Step 2: L_min = min(1.25·2, L) with the increase applied after step 1.
    loss = theta1**2
    min_loss = min(2.0 * 1.25, loss)
    optimizer.step(lambda: (theta**2).sum())
    assert optimizer.diagnostics["min_loss"].item() == pytest.approx(min_loss)
    expected = 0.5 * (loss - 0.8 * min_loss) / (2 * theta1) ** 2
    assert optimizer.diagnostics["lr"].item() == pytest.approx(expected)


def test_negative_loss_never_ascends():
    theta = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = L4([theta])
    optimizer.step(lambda: -5.0 + 0.0 * theta.sum())  # first step sets L_min only
    optimizer.step(lambda: theta.sum() - 10.0)  # L < γ·L_min: η would be negative
    assert optimizer.diagnostics["lr"].item() == 0.0
    assert theta.item() == 1.0


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_is_skipped_and_keeps_l_min(foreach, bad):
    model = small_mlp()
    x, y = batch()
    optimizer = L4(model.parameters(), foreach=foreach)
    optimizer.step(lambda: F.cross_entropy(model(x), y))
    state = copy.deepcopy(optimizer.state_dict()["state"])
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step(lambda: F.cross_entropy(model(x), y) * bad)
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), p0)
    assert optimizer.diagnostics["skipped"].item() == 1.0
    assert optimizer.diagnostics["lr"].item() == 0.0
    after = optimizer.state_dict()["state"]
    assert torch.equal(after[0]["min_loss"], state[0]["min_loss"])
    assert torch.equal(after[0]["step"], state[0]["step"])


def test_a_skipped_first_step_leaves_the_initialisation_to_the_next():
    theta = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    optimizer = L4([theta], gamma0=0.5)
    optimizer.step(lambda: (theta**2).sum() * float("nan"))
    optimizer.step(lambda: (theta**2).sum())
    assert optimizer.diagnostics["min_loss"].item() == pytest.approx(0.5 * 4.0)


def test_foreach_and_loop_paths_agree_in_float64():
    x, y = batch()
    results = []
    for foreach in (True, False):
        model = small_mlp()
        optimizer = L4(model.parameters(), lr=0.05, weight_decay=1e-2, foreach=foreach)
        for _ in range(30):
            optimizer.step(lambda model=model: F.cross_entropy(model(x), y))
        results.append([p.detach() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_param_groups_share_l_min_and_scale_by_their_own_alpha():
    model = small_mlp()
    x, y = batch()
    optimizer = L4(
        [{"params": model[0].parameters(), "lr": 0.02}, {"params": model[2].parameters()}],
        lr=0.1,
    )
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step(lambda: F.cross_entropy(model(x), y))
    grads = [p.grad for p in model.parameters()]
    unit = optimizer.diagnostics["lr"].item() / 0.02
    alphas = (0.02, 0.02, 0.1, 0.1)
    for p, p0, g, alpha in zip(model.parameters(), before, grads, alphas, strict=True):
        torch.testing.assert_close(p.detach(), p0 - alpha * unit * g)
    with pytest.raises(ValueError, match="same gamma"):
        L4([{"params": model[0].parameters()}, {"params": model[2].parameters(), "gamma": 0.5}])


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"gamma0": 2.0}, "gamma0"),
        ({"tau": 0.0}, "tau"),
        ({"eps": -1e-12}, "eps"),
        ({"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        L4(small_mlp().parameters(), **kwargs)


def test_closure_is_required():
    with pytest.raises(ValueError, match="closure"):
        L4(small_mlp().parameters()).step()


def test_state_dict_round_trip_continues_the_same_trajectory():
    x, y = batch()
    model = small_mlp()
    optimizer = L4(model.parameters(), lr=0.05, tau=10.0)
    for _ in range(5):
        optimizer.step(lambda: F.cross_entropy(model(x), y))
    clone = small_mlp(seed=3)
    clone.load_state_dict(copy.deepcopy(model.state_dict()))
    restored = L4(clone.parameters())
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert restored.param_groups[0]["tau"] == 10.0
    for _ in range(5):
        optimizer.step(lambda: F.cross_entropy(model(x), y))
        restored.step(lambda: F.cross_entropy(clone(x), y))
        assert restored.diagnostics["min_loss"].item() == optimizer.diagnostics["min_loss"].item()
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_load_state_dict_onto_another_device():
    # The meta device stands in for an accelerator: L_min must follow the parameters there.
    model = small_mlp()
    x, y = batch()
    optimizer = L4(model.parameters())
    optimizer.step(lambda: F.cross_entropy(model(x), y))
    with torch.device("meta"):
        moved = small_mlp()
    loaded = L4(moved.parameters())
    loaded.load_state_dict(optimizer.state_dict())
    state = loaded.state[next(moved.parameters())]
    assert state["min_loss"].device.type == "meta" and state["step"].device.type == "meta"
