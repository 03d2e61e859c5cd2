"""LossGrad under ``torch.autocast`` (bfloat16 on the CPU) and with a ``torch.compile``d model
in the closure."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lossgrad import LossGrad


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Net(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=generator), torch.randint(0, 3, (32,), generator=generator)


def test_autocast_bfloat16_losses_are_compared_in_float32():
    torch.manual_seed(0)
    model = Net()
    x, y = batch()
    optimizer = LossGrad(model.parameters(), lr=0.05, model=model)
    values = []

    def closure():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = (model(x) - F.one_hot(y, 3)).square().mean()
        assert loss.dtype == torch.bfloat16
        values.append(loss.detach())
        return loss

    first = None
    for _ in range(20):
        values.clear()
        loss = optimizer.step(closure)
        first = loss if first is None else first
        assert loss.dtype == torch.bfloat16
        diagnostics = optimizer.diagnostics
        assert all(v.dtype == torch.float32 for v in diagnostics.values())
        assert diagnostics["loss"].item() == values[0].float().item()
        assert diagnostics["loss_after"].item() == values[1].float().item()
        assert diagnostics["skipped"].item() == 0.0
    assert optimizer.param_groups[0]["lr"].dtype == torch.float32
    assert loss.float().item() < first.float().item()


def run(model, closure_model, steps=6):
    x, y = batch()
    optimizer = LossGrad(model.parameters(), lr=0.2, c=1.2, model=closure_model)
    hs = []
    for _ in range(steps):
        optimizer.step(lambda: F.cross_entropy(closure_model(x), y))
        hs.append(float(optimizer.param_groups[0]["lr"]))
    return hs, [p.detach() for p in model.parameters()], closure_model


def check_compiled_matches_eager(backend: str):
    torch.manual_seed(0)
    eager = Net()
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend=backend)
    hs_eager, weights_eager, _ = run(eager, eager)
    hs_compiled, weights_compiled, _ = run(twin, compiled)
    assert hs_compiled == hs_eager
    for a, b in zip(weights_compiled, weights_eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # model= restores the running statistics through the compiled wrapper too.
    assert twin.bn.num_batches_tracked.item() == 6
    torch.testing.assert_close(twin.bn.running_mean, eager.bn.running_mean)


def check_compiled_dropout_replays(backend: str):
    torch.manual_seed(0)
    model = Net(dropout=0.5)
    compiled = torch.compile(model, backend=backend)
    x, y = batch()
    outputs = []

    def closure():
        out = compiled(x)
        outputs.append(out.detach())
        return (out * 0).sum()  # zero gradient: the step is skipped, the weights stay

    LossGrad(model.parameters(), model=compiled).step(closure)
    assert torch.equal(outputs[0], outputs[1])


def test_compiled_model_in_the_closure_aot_eager():
    check_compiled_matches_eager("aot_eager")
    check_compiled_dropout_replays("aot_eager")


@pytest.mark.slow
def test_compiled_model_in_the_closure_inductor():
    # Inductor compiles C++ kernels on this CPU: about a minute.
    check_compiled_matches_eager("inductor")
    check_compiled_dropout_replays("inductor")
