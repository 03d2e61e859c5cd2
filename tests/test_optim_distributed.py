"""Data-parallel LossGrad and L4: two ``gloo`` processes on the CPU take the same decisions,
and the same ones as a single process that sees the union of their batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from lossgrad import L4, LossGrad

WORLD = 2
STEPS = 12
HALF = 8
NAMES = ("lossgrad", "l4")


def build_model() -> nn.Module:
    # No batch norm: its per-rank batch statistics would differ from those of the union.
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def union_batches():
    """STEPS batches of 2·HALF examples; rank r trains on rows [r·HALF, (r+1)·HALF)."""
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(WORLD * HALF, 5, generator=generator, dtype=torch.float64),
            torch.randint(0, 3, (WORLD * HALF,), generator=generator),
        )
        for _ in range(STEPS)
    ]


def make_optimizer(name: str, params, model):
    if name == "lossgrad":
        return LossGrad(params, lr=0.5, c=1.2, model=model)
    return L4(params, lr=0.05)


def train(name: str, model: nn.Module, batches, rows: slice):
    """Trains for STEPS steps; returns the step sizes and the final weights."""
    optimizer = make_optimizer(name, model.parameters(), model)
    step_sizes = []
    for x, y in batches:
        x, y = x[rows], y[rows]
        optimizer.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
        step_sizes.append(optimizer.diagnostics["lr"].item())
    return step_sizes, [p.detach().clone() for p in model.parameters()]


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        rows = slice(rank * HALF, (rank + 1) * HALF)
        for name in NAMES:
            model = DistributedDataParallel(build_model())
            step_sizes, weights = train(name, model, union_batches(), rows)
            result = {"step_sizes": step_sizes, "weights": weights}
            torch.save(result, Path(out) / f"{name}-{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_decide_alike_and_as_one_process_on_the_union(tmp_path):
    # One spawn for both optimizers: starting the two processes is most of the time.
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    for name in NAMES:
        ranks = [torch.load(tmp_path / f"{name}-{rank}.pt") for rank in range(WORLD)]
        assert ranks[0]["step_sizes"] == ranks[1]["step_sizes"], name
        for a, b in zip(ranks[0]["weights"], ranks[1]["weights"], strict=True):
            assert torch.equal(a, b), name

        single_sizes, single_weights = train(name, build_model(), union_batches(), slice(None))
        assert ranks[0]["step_sizes"] == pytest.approx(single_sizes, rel=1e-12), name
        for a, b in zip(ranks[0]["weights"], single_weights, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        if name == "lossgrad":
            assert len(set(single_sizes)) > 2  # h changed along the way
