"""LossGrad: the rule of Algorithm 1, parameter groups, degenerate steps, the second
evaluation (batch norm, dropout), state round trips and argument checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import lossgrad
from lossgrad import L4, LossGrad, WNGrad


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_mlp(dtype=torch.float64, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4)).to(dtype)


def batch(dtype=torch.float64, seed=1, n=16):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator, dtype=dtype)
    y = torch.randint(0, 4, (n,), generator=generator)
    return x, y


def h_of(optimizer, group=0) -> float:
    return float(optimizer.param_groups[group]["lr"])


# --- the public surface -------------------------------------------------------------------


def test_package_exports_the_three_optimizers():
    assert set(lossgrad.__all__) == {"LossGrad", "WNGrad", "L4"}
    for cls in (LossGrad, WNGrad, L4):
        assert issubclass(cls, torch.optim.Optimizer)
    assert LossGrad.takes_loss_closure and L4.takes_loss_closure
    assert not getattr(WNGrad, "takes_loss_closure", False)


def test_defaults_and_step_size_tensor():
    model = small_mlp(torch.float32)
    optimizer = LossGrad(model.parameters())
    assert optimizer.defaults == {"lr": 1e-4, "c": 1.05, "weight_decay": 0.0, "foreach": None}
    h = optimizer.param_groups[0]["lr"]
    assert isinstance(h, torch.Tensor) and h.dim() == 0 and h.dtype == torch.float32
    assert h.device == next(model.parameters()).device
    assert h_of(optimizer) == pytest.approx(1e-4)
    assert optimizer.diagnostics == {}


def test_step_returns_first_loss_and_fills_diagnostics():
    model = small_mlp()
    x, y = batch()
    optimizer = LossGrad(model.parameters(), lr=0.1)
    expected = F.cross_entropy(model(x), y).item()
    loss = optimizer.step(lambda: F.cross_entropy(model(x), y))
    assert isinstance(loss, torch.Tensor) and not loss.requires_grad
    assert loss.item() == pytest.approx(expected)
    diagnostics = optimizer.diagnostics
    assert set(diagnostics) == {"lr", "loss", "loss_after", "ratio", "grad_sq", "skipped"}
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in diagnostics.values())
    assert diagnostics["lr"].item() == pytest.approx(0.1)
    assert diagnostics["loss"].item() == pytest.approx(expected)
    assert diagnostics["loss_after"].item() == pytest.approx(F.cross_entropy(model(x), y).item())
    assert diagnostics["skipped"].item() == 0.0
    grads_sq = sum(p.grad.square().sum() for p in model.parameters())
    assert diagnostics["grad_sq"].item() == pytest.approx(grads_sq.item())


def test_closure_is_required():
    optimizer = LossGrad(small_mlp().parameters())
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"c": 1.0}, "c"),
        ({"c": 0.5}, "c"),
        ({"c": float("inf")}, "c"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"lr": "fast"}, "lr"),
    ],
)
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        LossGrad(small_mlp().parameters(), **kwargs)


def test_bad_group_values_and_model_raise():
    model = small_mlp()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    with pytest.raises(ValueError, match="lr"):
        LossGrad([{"params": first}, {"params": second, "lr": -1.0}])
    with pytest.raises(ValueError, match="same c"):
        LossGrad([{"params": first}, {"params": second, "c": 1.2}])
    with pytest.raises(ValueError, match="model"):
        LossGrad(model.parameters(), model="not a module")


# --- Algorithm 1 ------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "grows"), [(0.3, True), (0.7, False)])
def test_one_step_on_a_parabola_follows_algorithm_1(h, grows):
    # F(θ) = a·θ² with a = 1: r_h = a·h exactly, so h grows iff h <= 1/2.
    theta = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    optimizer = LossGrad([theta], lr=h, c=1.5)
    optimizer.step(lambda: (theta**2).sum())
    assert theta.item() == pytest.approx(2.0 - h * 4.0)
    assert optimizer.diagnostics["ratio"].item() == pytest.approx(h)
    assert h_of(optimizer) == pytest.approx(h * 1.5 if grows else h / 1.5)


def test_weight_decay_enters_both_losses_and_the_gradient():
    theta = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    wd, h = 0.5, 0.1
    optimizer = LossGrad([theta], lr=h, weight_decay=wd)
    optimizer.step(lambda: (theta**2).sum())
    # Objective F = (1 + wd/2)·‖θ‖², gradient (2 + wd)·θ.
    start = torch.tensor([1.0, -2.0], dtype=torch.float64)
    expected = start - h * (2 + wd) * start
    torch.testing.assert_close(theta.detach(), expected)
    diagnostics = optimizer.diagnostics
    assert diagnostics["loss"].item() == pytest.approx((1 + wd / 2) * 5.0)
    assert diagnostics["loss_after"].item() == pytest.approx(
        (1 + wd / 2) * expected.square().sum().item()
    )
    assert diagnostics["grad_sq"].item() == pytest.approx((2 + wd) ** 2 * 5.0)


def test_param_groups_keep_their_own_h_and_share_one_factor():
    model = small_mlp()
    x, y = batch()
    optimizer = LossGrad(
        [{"params": model[0].parameters(), "lr": 0.05}, {"params": model[2].parameters()}],
        lr=0.2,
        c=1.1,
    )
    before = [p.detach().clone() for p in model.parameters()]
    loss_before = F.cross_entropy(model(x), y).item()
    optimizer.step(lambda: F.cross_entropy(model(x), y))
    grads = [p.grad for p in model.parameters()]
    hs = [0.05, 0.05, 0.2, 0.2]
    for p, p0, g, h in zip(model.parameters(), before, grads, hs, strict=True):
        torch.testing.assert_close(p.detach(), p0 - h * g)
    prediction = sum(h * g.square().sum().item() for g, h in zip(grads, hs, strict=True))
    loss_after = F.cross_entropy(model(x), y).item()
    ratio = (loss_after - loss_before + prediction) / prediction
    assert optimizer.diagnostics["ratio"].item() == pytest.approx(ratio)
    factor = 1.1 if ratio <= 0.5 else 1 / 1.1
    assert h_of(optimizer, 0) == pytest.approx(0.05 * factor)
    assert h_of(optimizer, 1) == pytest.approx(0.2 * factor)


def test_foreach_and_loop_paths_agree_in_float64():
    x, y = batch()
    runs = []
    for foreach in (True, False):
        model = small_mlp()
        groups = [
            {"params": model[0].parameters(), "weight_decay": 1e-2},
            {"params": model[2].parameters(), "lr": 0.3},
        ]
        optimizer = LossGrad(groups, lr=0.5, c=1.2, foreach=foreach)
        hs = []
        for _ in range(30):
            optimizer.step(lambda model=model: F.cross_entropy(model(x), y))
            hs.append((h_of(optimizer, 0), h_of(optimizer, 1)))
        runs.append((hs, [p.detach() for p in model.parameters()]))
    (hs_a, params_a), (hs_b, params_b) = runs
    assert hs_a == hs_b
    assert len({h for h, _ in hs_a}) > 2
    for a, b in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# --- degenerate steps -----------------------------------------------------------------------


def _state(model, optimizer):
    return [p.detach().clone() for p in model.parameters()], h_of(optimizer)


def _assert_untouched(model, optimizer, state):
    params, h = state
    for p, p0 in zip(model.parameters(), params, strict=True):
        assert torch.equal(p.detach(), p0)
    assert h_of(optimizer) == h
    assert optimizer.diagnostics["skipped"].item() == 1.0
    assert optimizer.diagnostics["lr"].item() == 0.0
    assert math.isnan(optimizer.diagnostics["ratio"].item())


@pytest.mark.parametrize("foreach", [True, False])
def test_zero_gradient_is_skipped(foreach):
    model = small_mlp()
    optimizer = LossGrad(model.parameters(), lr=0.1, foreach=foreach)
    state = _state(model, optimizer)
    optimizer.step(lambda: sum((p * 0).sum() for p in model.parameters()) + 3.0)
    _assert_untouched(model, optimizer, state)
    assert optimizer.diagnostics["grad_sq"].item() == 0.0


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_is_skipped(foreach, bad):
    model = small_mlp()
    x, y = batch()
    optimizer = LossGrad(model.parameters(), lr=0.1, foreach=foreach)
    state = _state(model, optimizer)
    optimizer.step(lambda: F.cross_entropy(model(x), y) * bad)
    _assert_untouched(model, optimizer, state)


@pytest.mark.parametrize("foreach", [True, False])
def test_non_finite_gradient_is_skipped(foreach):
    # sqrt has an infinite derivative at 0: a finite loss with an inf gradient entry.
    model = small_mlp()
    x, y = batch()
    with torch.no_grad():
        model[2].bias[0] = 0.0
    optimizer = LossGrad(model.parameters(), lr=0.1, foreach=foreach)
    state = _state(model, optimizer)
    loss = optimizer.step(lambda: F.cross_entropy(model(x), y) + model[2].bias[0].abs().sqrt())
    assert math.isfinite(loss.item())
    assert not math.isfinite(optimizer.diagnostics["grad_sq"].item())
    _assert_untouched(model, optimizer, state)


def test_non_finite_second_loss_shrinks_h():
    model = small_mlp()
    x, y = batch()
    optimizer = LossGrad(model.parameters(), lr=0.01, c=1.25)
    calls = []

    def closure():
        calls.append(None)
        loss = F.cross_entropy(model(x), y)
        return loss if len(calls) % 2 == 1 else loss * float("inf")

    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step(closure)
    assert h_of(optimizer) == pytest.approx(0.01 / 1.25)
    assert optimizer.diagnostics["skipped"].item() == 0.0
    assert not torch.equal(next(model.parameters()).detach(), before[0])


def test_h_stays_finite_and_positive_at_the_float_limits():
    theta = nn.Parameter(torch.tensor([1.0]))
    optimizer = LossGrad([theta], lr=3e38, c=2.0)
    # A linear loss: r_h = 0, so h would double to inf.
    optimizer.step(lambda: theta.sum())
    assert math.isfinite(h_of(optimizer)) and h_of(optimizer) > 0


# --- the second evaluation sees the same function ------------------------------------------


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def test_running_statistics_are_updated_once_per_step():
    x, y = batch()
    torch.manual_seed(3)
    plain = BatchNormNet().double()
    stepped = copy.deepcopy(plain)
    unrestored = copy.deepcopy(plain)
    plain(x)  # one training-mode forward: the statistics one step should leave
    LossGrad(stepped.parameters(), lr=0.5, model=stepped).step(
        lambda: F.cross_entropy(stepped(x), y)
    )
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(stepped.bn, name), getattr(plain.bn, name))
    # Without model= the second evaluation updates them again (the authors' behaviour).
    LossGrad(unrestored.parameters(), lr=0.5).step(lambda: F.cross_entropy(unrestored(x), y))
    assert unrestored.bn.num_batches_tracked.item() == 2
    assert not torch.allclose(unrestored.bn.running_mean, plain.bn.running_mean)


def test_dropout_draws_the_same_mask_in_both_evaluations():
    x, y = batch()
    model = small_mlp()
    masks = []

    def closure():
        hidden = torch.tanh(model[0](x))
        dropped = F.dropout(hidden, p=0.5, training=True)
        masks.append(dropped == 0)
        return F.cross_entropy(model[2](dropped), y)

    torch.manual_seed(7)
    expected_state_after = None
    with torch.no_grad():
        F.dropout(torch.ones(16, 10, dtype=torch.float64), p=0.5, training=True)
        expected_state_after = torch.get_rng_state()
    torch.manual_seed(7)
    LossGrad(model.parameters(), lr=0.1).step(closure)
    assert len(masks) == 2
    assert masks[0].any() and torch.equal(masks[0], masks[1])
    # The generator is left as one evaluation leaves it.
    assert torch.equal(torch.get_rng_state(), expected_state_after)


def test_second_evaluation_runs_without_autograd():
    model = small_mlp()
    x, y = batch()
    grad_modes = []

    def closure():
        grad_modes.append(torch.is_grad_enabled())
        return F.cross_entropy(model(x), y)

    LossGrad(model.parameters()).step(closure)
    assert grad_modes == [True, False]


# --- state ------------------------------------------------------------------------------------


def test_state_dict_round_trip_continues_the_same_trajectory():
    x, y = batch()
    model = small_mlp()
    optimizer = LossGrad(model.parameters(), lr=0.5, c=1.2)
    for _ in range(5):
        optimizer.step(lambda: F.cross_entropy(model(x), y))
    saved_model = copy.deepcopy(model.state_dict())
    saved = copy.deepcopy(optimizer.state_dict())
    assert isinstance(saved["param_groups"][0]["lr"], torch.Tensor)

    clone = small_mlp(seed=5)
    clone.load_state_dict(saved_model)
    restored = LossGrad(clone.parameters())
    restored.load_state_dict(saved)
    assert h_of(restored) == h_of(optimizer)
    assert restored.param_groups[0]["c"] == 1.2
    assert restored.param_groups[0]["lr"] is not optimizer.param_groups[0]["lr"]
    for _ in range(5):
        optimizer.step(lambda: F.cross_entropy(model(x), y))
        restored.step(lambda: F.cross_entropy(clone(x), y))
        assert h_of(restored) == h_of(optimizer)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_load_state_dict_moves_h_to_the_parameters_device_and_dtype():
    model64 = small_mlp(torch.float64)
    saved = LossGrad(model64.parameters(), lr=0.25).state_dict()
    assert saved["param_groups"][0]["lr"].dtype == torch.float64
    model32 = small_mlp(torch.float32)
    optimizer = LossGrad(model32.parameters())
    optimizer.load_state_dict(saved)
    h = optimizer.param_groups[0]["lr"]
    assert h.dtype == torch.float32 and h.device == next(model32.parameters()).device
    assert h.item() == pytest.approx(0.25)
    # A plain number (as a scheduler or an older checkpoint may leave) is accepted too.
    saved["param_groups"][0]["lr"] = 0.125
    optimizer.load_state_dict(saved)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    assert h_of(optimizer) == pytest.approx(0.125)


def test_a_plain_number_stored_as_lr_becomes_a_tensor_again():
    model = small_mlp()
    x, y = batch()
    optimizer = LossGrad(model.parameters())
    optimizer.param_groups[0]["lr"] = 0.3
    optimizer.step(lambda: F.cross_entropy(model(x), y))
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    assert optimizer.diagnostics["lr"].item() == pytest.approx(0.3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_state_saved_on_cuda_loads_on_cpu():
    model = small_mlp(torch.float32).cuda()
    x, y = (t.cuda() for t in batch(torch.float32))
    optimizer = LossGrad(model.parameters(), lr=0.1)
    optimizer.step(lambda: F.cross_entropy(model(x), y))
    saved = optimizer.state_dict()
    assert saved["param_groups"][0]["lr"].is_cuda
    cpu_optimizer = LossGrad(small_mlp(torch.float32).parameters())
    cpu_optimizer.load_state_dict(saved)
    assert cpu_optimizer.param_groups[0]["lr"].device.type == "cpu"
    assert h_of(cpu_optimizer) == pytest.approx(h_of(optimizer))


def test_load_state_dict_onto_another_device():
    # The meta device stands in for an accelerator: h must follow the parameters there.
    saved = LossGrad(small_mlp().parameters(), lr=0.25).state_dict()
    with torch.device("meta"):
        model = small_mlp()
    optimizer = LossGrad(model.parameters())
    assert optimizer.param_groups[0]["lr"].device.type == "meta"
    optimizer.load_state_dict(saved)
    h = optimizer.param_groups[0]["lr"]
    assert h.device.type == "meta" and h.dtype == torch.float64
