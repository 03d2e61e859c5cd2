"""Time one training step of LOSSGRAD against the cost floor it cannot beat, on this CPU.

For the MLP 784-500-300-100-10 and the small CIFAR-10 CNN of the LOSSGRAD paper (batch 100,
random data of the right shapes), four ways to take a step are timed side by side:

- ``sgd``: zero_grad, forward, backward, ``torch.optim.SGD.step``;
- ``floor``: the same plus one forward without autograd, the least work any LOSSGRAD step
  needs (it evaluates the loss twice);
- ``lossgrad``: ``lossgrad.LossGrad.step(closure)``;
- ``naive``: LOSSGRAD written the straightforward way, reading each gradient's squared norm
  back with ``.item()`` and running the second forward with autograd on.

The variants are interleaved in one run: every round times a block of steps of each variant
in turn (rotating the order), the first rounds are a warm-up and are dropped, and the table
reports the median time per step and its spread over the rounds. The ratio lossgrad/floor
is the number to watch (target <= 1.10).

By default the clock is the CPU time of this process (``time.process_time``), which counts
the work done and not the time spent waiting for a core that other jobs hold; on a quiet
machine it equals the wall time. ``--clock wall`` times wall-clock seconds instead.

    python -m scripts.bench_optimizers --repeats 30
"""

from __future__ import annotations

import argparse
import copy
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lossgrad import LossGrad

VARIANTS = ("sgd", "floor", "lossgrad", "naive")


def mlp() -> nn.Module:
    """The MNIST MLP of the paper: 784-500-300-100-10 with ReLU."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 500),
        nn.ReLU(),
        nn.Linear(500, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def small_cnn() -> nn.Module:
    """The small CIFAR-10 CNN of the paper (Table 7, right) for 3x32x32 inputs."""
    return nn.Sequential(
        nn.Conv2d(3, 30, 5),  # 30 x 28 x 28
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(30, 40, 5),  # 40 x 10 x 10
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(40, 50, 3),  # 50 x 3 x 3
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(450, 250),
        nn.ReLU(),
        nn.Linear(250, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (mlp, (1, 28, 28)),
    "cnn": (small_cnn, (3, 32, 32)),
}


class NaiveLossGrad:
    """Algorithm 1 as a first implementation would write it (host reads, two autograd passes)."""

    def __init__(self, params: list[nn.Parameter], h: float = 1e-4, c: float = 1.05) -> None:
        self.params, self.h, self.c = params, h, c

    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        for p in self.params:
            p.grad = None
        loss = closure()
        loss.backward()
        grad_sq = sum(p.grad.pow(2).sum().item() for p in self.params)
        with torch.no_grad():
            for p in self.params:
                p.add_(p.grad, alpha=-self.h)
        actual = closure().item()
        approx = loss.item() - self.h * grad_sq
        ratio = (actual - approx) / (self.h * grad_sq + 1e-25)
        self.h = self.h / self.c if ratio > 0.5 else self.h * self.c
        return loss


class Variant:
    """One way to take a training step on a fixed batch, restartable from the same state.

    Every round restarts from the initial weights and step size: the timings should not
    depend on how far training has gone (on a fixed batch LOSSGRAD's h grows by orders of
    magnitude within a few hundred steps, the loss reaches 0 and the arithmetic meets
    subnormal numbers, which slow a CPU down).
    """

    def __init__(self, name: str, model: nn.Module, x: Tensor, y: Tensor) -> None:
        self.name, self.model, self.x, self.y = name, model, x, y
        self.initial_weights = copy.deepcopy(model.state_dict())
        params = list(model.parameters())
        if name in ("sgd", "floor"):
            self.optimizer = torch.optim.SGD(params, lr=0.01)
        elif name == "lossgrad":
            self.optimizer = LossGrad(params)
        else:
            self.optimizer = NaiveLossGrad(params)
        self.restart()

    def restart(self) -> None:
        self.model.load_state_dict(self.initial_weights)
        if isinstance(self.optimizer, LossGrad):
            self.optimizer.param_groups[0]["lr"].fill_(1e-4)
        elif isinstance(self.optimizer, NaiveLossGrad):
            self.optimizer.h = 1e-4

    def closure(self) -> Tensor:
        return F.cross_entropy(self.model(self.x), self.y)

    def step(self) -> None:
        if self.name in ("lossgrad", "naive"):
            self.optimizer.step(self.closure)
            return
        self.optimizer.zero_grad(set_to_none=True)
        self.closure().backward()
        self.optimizer.step()
        if self.name == "floor":
            with torch.no_grad():
                self.closure()


def time_model(name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per step of every variant, one entry per timed round."""
    build, shape = MODELS[name]
    variants = {}
    for variant in VARIANTS:
        torch.manual_seed(args.seed)
        model = build()
        x = torch.randn(args.batch, *shape)
        y = torch.randint(0, 10, (args.batch,))
        variants[variant] = Variant(variant, model, x, y)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_index in range(args.warmup + args.repeats):
        shift = round_index % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            runner = variants[variant]
            runner.restart()
            start = clock()
            for _ in range(args.steps):
                runner.step()
            elapsed = (clock() - start) / args.steps
            if round_index >= args.warmup:
                times[variant].append(elapsed)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def report(name: str, times: dict[str, list[float]]) -> None:
    """Prints the table of one model and its lossgrad/floor ratio."""
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    print(f"\n{name} (ms per step, {len(times['sgd'])} timed rounds)")
    print(f"{'variant':<10}{'median':>9}{'q1':>9}{'q3':>9}{'min':>9}{'max':>9}{'/floor':>9}")
    for variant, values in times.items():
        q1, median, q3 = quartiles(values)
        row = [median, q1, q3, min(values), max(values)]
        cells = "".join(f"{1e3 * value:9.2f}" for value in row)
        print(f"{variant:<10}{cells}{median / medians['floor']:9.3f}")
    paired = [a / b for a, b in zip(times["lossgrad"], times["floor"], strict=True)]
    q1, median, q3 = quartiles(paired)
    fastest = min(times["lossgrad"]) / min(times["floor"])
    print(
        f"ratio lossgrad/floor: {medians['lossgrad'] / medians['floor']:.3f} (target <= 1.10); "
        f"per-round ratios: median {median:.3f}, quartiles {q1:.3f}-{q3:.3f}; "
        f"fastest rounds: {fastest:.3f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_optimizers",
        description="Time LossGrad's step against SGD, the SGD+forward floor and a naive "
        "LOSSGRAD, interleaved in one run on the CPU.",
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mlp", "cnn"])
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds (default: 30)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (default: 2)")
    parser.add_argument("--steps", type=int, default=5, help="steps per round (default: 5)")
    parser.add_argument("--batch", type=int, default=100, help="batch size (default: 100)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: CPU time of this process (default); wall: wall-clock time",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, low in (("repeats", 2), ("steps", 1), ("batch", 1), ("threads", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name} must be >= {low}, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = " ".join(["python -m scripts.bench_optimizers", *map(shlex.quote, argv)])
    print(f"command: {command}")
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
        f"{args.clock} clock, {args.steps} steps per round, {args.warmup} warm-up rounds"
    )
    for name in args.models:
        report(name, time_model(name, args))


if __name__ == "__main__":
    main()
