"""No optimizer step reads a tensor value back to the host.

On the CPU, every Python-level way of reading a value (``item``, ``tolist``, ``bool``,
``float``, ``int``, index conversion, ``numpy``) is made to raise while ``step`` runs. With
CUDA, ``torch.cuda.set_sync_debug_mode("error")`` turns any synchronising call into an error.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lossgrad import L4, LossGrad, WNGrad

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


@contextmanager
def host_reads_forbidden(monkeypatch):
    def forbidden(name):
        def read(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name} was called inside step")

        return read

    with monkeypatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, forbidden(name))
        yield


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.bn = nn.BatchNorm1d(12)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def setup(device="cpu"):
    torch.manual_seed(0)
    model = Net().to(device)
    x = torch.randn(20, 6, device=device)
    y = torch.randint(0, 3, (20,), device=device)
    groups = [
        {"params": model.fc1.parameters(), "weight_decay": 1e-3},
        {"params": list(model.bn.parameters()) + list(model.fc2.parameters())},
    ]
    return model, x, y, groups


def make_optimizer(name, groups, model):
    if name == "lossgrad":
        return LossGrad(groups, lr=0.1, model=model)
    if name == "l4":
        return L4(groups, lr=0.05)
    return WNGrad(groups, lr=0.5)


def run_steps(name, optimizer, model, x, y, guard, steps=3):
    def loss_fn():
        return F.cross_entropy(model(x), y)

    for index in range(steps):
        # The last step is degenerate (non-finite loss) so the skip path is covered too.
        scale = float("nan") if index == steps - 1 else 1.0
        if name == "wngrad":
            optimizer.zero_grad()
            (loss_fn() * scale).backward()
            with guard():
                optimizer.step()
        else:
            with guard():
                optimizer.step(lambda scale=scale: loss_fn() * scale)


def test_the_guard_catches_host_reads(monkeypatch):
    value = torch.ones(())
    with host_reads_forbidden(monkeypatch):
        for read in (value.item, value.tolist, lambda: float(value), lambda: bool(value)):
            with pytest.raises(AssertionError, match="inside step"):
                read()
        with pytest.raises(AssertionError, match="inside step"):
            [0, 1][value.long()]
    assert value.item() == 1.0


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("name", ["lossgrad", "l4", "wngrad"])
def test_step_reads_nothing_back_on_cpu(monkeypatch, name, foreach):
    torch.set_num_threads(1)
    model, x, y, groups = setup()
    optimizer = make_optimizer(name, groups, model)
    for group in optimizer.param_groups:
        group["foreach"] = foreach
    run_steps(name, optimizer, model, x, y, lambda: host_reads_forbidden(monkeypatch))
    assert optimizer.diagnostics["skipped"].item() == 1.0
    assert all(p.isfinite().all() for p in model.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["lossgrad", "l4", "wngrad"])
def test_step_does_not_synchronise_on_cuda(name):
    model, x, y, groups = setup("cuda")
    optimizer = make_optimizer(name, groups, model)
    run_steps(name, optimizer, model, x, y, lambda: _nullcontext(), steps=1)  # warm up

    @contextmanager
    def sync_is_error():
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")

    run_steps(name, optimizer, model, x, y, sync_is_error)
    assert optimizer.param_groups[0]["params"][0].is_cuda
    assert optimizer.diagnostics["skipped"].item() == 1.0


@contextmanager
def _nullcontext():
    yield
