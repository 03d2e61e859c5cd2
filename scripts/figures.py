"""The paper's figures, drawn from saved runs (Figures 3 and 4) or computed (Section 3).

Every figure is written as PNG and PDF, with the data it plots beside it as CSV. Figures 3 and 4
use the long format ``panel,series,seed,x,y`` (one line per plotted point); the Section 3 figure
writes one line per quadratic and iteration. Nothing is shown on screen (Agg backend).
"""

from __future__ import annotations

import io as bytes_io
import logging
import math
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from experiments import io  # noqa: E402
from lossgrad import LossGrad, quadratic  # noqa: E402
from scripts.paper_runs import COMPLETED, Options, RowRuns  # noqa: E402
from scripts.paper_specs import Spec  # noqa: E402
from scripts.paper_tables import budget_label  # noqa: E402

log = logging.getLogger(__name__)
SERIES_COLUMNS = ("panel", "series", "seed", "x", "y")


# Output


def write_bytes(path: Path, data: bytes) -> None:
    """Replaces ``path`` atomically with ``data``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_figure(fig, stem: Path) -> list[Path]:
    """Writes ``<stem>.png`` and ``<stem>.pdf`` and closes the figure."""
    paths = []
    for fmt in ("png", "pdf"):
        buffer = bytes_io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight")
        path = stem.with_suffix(f".{fmt}")
        write_bytes(path, buffer.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def style_axis(ax, xlabel: str, ylabel: str, log_y: bool = False, integer_x: bool = False):
    """Labels, a light grid, a log y axis without crowded minor labels, integer x ticks."""
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="major", alpha=0.3)


# Run data


def _read_rows(path: Path) -> list[dict[str, str]]:
    return io.read_csv(path) if path.is_file() else []


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def run_series(row: RowRuns, file: str, x: str, y: str, limit: float = math.inf):
    """Per seed, the (x, y) columns of ``file`` (``history.csv`` or ``steps.csv``) of the row's
    completed or diverged run, with x <= limit."""
    series = {}
    for seed, run in row.runs.items():
        if run is None or run.status not in (COMPLETED, "diverged"):
            continue
        points = [
            (_number(line.get(x)), _number(line.get(y))) for line in _read_rows(run.path / file)
        ]
        points = [
            (int(a) if a.is_integer() else a, b)
            for a, b in points
            if a <= limit and math.isfinite(b)
        ]
        if points:
            series[seed] = points
    return series


def row_label(row: RowRuns) -> str:
    """The row's name, with any seed that is not completed noted."""
    notes = []
    for status in ("diverged", "failed", "interrupted", "incomplete"):
        seeds = row.seeds_with(status)
        if seeds:
            notes.append(f"{status}: seed {', '.join(map(str, seeds))}")
    missing = [seed for seed, run in row.runs.items() if run is None]
    if missing:
        notes.append(f"missing: seed {', '.join(map(str, missing))}")
    return f"{row.row.name} ({'; '.join(notes)})" if notes else row.row.name


def _plot_rows(ax, rows: list[RowRuns], data: dict, panel: str, lines: list) -> None:
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(len(rows), 1)))
    for color, row in zip(colors, rows, strict=True):
        series = data[row.row.name]
        if not series:
            ax.plot([], [], color=color, label=row_label(row))
            continue
        for index, (seed, points) in enumerate(sorted(series.items())):
            xs, ys = zip(*points, strict=True)
            ax.plot(
                xs,
                ys,
                color=color,
                linewidth=1.2,
                alpha=0.85 if len(series) == 1 else 0.6,
                label=row_label(row) if index == 0 else None,
            )
            lines += [[panel, row.row.name, seed, a, b] for a, b in points]


# Figure 3


def figure3(spec: Spec, rows: list[RowRuns], options: Options) -> list[Path]:
    """Step size over the first ``first_steps`` batches (left) and test loss per epoch (right)
    for each initial step size."""
    first_steps = int(spec.options.get("first_steps", 800))
    left = {row.row.name: run_series(row, "steps.csv", "step", "lr", first_steps) for row in rows}
    right = {row.row.name: run_series(row, "history.csv", "epoch", "test_loss") for row in rows}
    fig, (ax_left, ax_right) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    lines: list[list] = []
    _plot_rows(ax_left, rows, left, "step_size_per_batch", lines)
    _plot_rows(ax_right, rows, right, "test_loss_per_epoch", lines)
    style_axis(ax_left, "batch (optimizer step)", "step size h", log_y=True, integer_x=True)
    ax_left.set_title(f"Step size over the first {first_steps} batches")
    style_axis(ax_right, "epoch", "test loss", integer_x=True)
    ax_right.set_title("Test loss")
    fig.legend(
        *ax_left.get_legend_handles_labels(),
        title="initial step size",
        loc="outside lower center",
        ncol=min(len(rows), 6),
        fontsize=8,
    )
    fig.suptitle(f"{spec.title} (budget {budget_label(options)})", fontsize=10)
    stem = options.output_dir / spec.key
    io.write_csv(stem.with_suffix(".csv"), SERIES_COLUMNS, lines)
    return [*save_figure(fig, stem), stem.with_suffix(".csv")]


# Figure 4


def _mean_over_seeds(series: dict) -> list[tuple[float, float]]:
    """The mean over seeds at each x that every seed has."""
    if not series:
        return []
    common = set.intersection(*({x for x, _ in points} for points in series.values()))
    by_x = {x: [y for points in series.values() for px, y in points if px == x] for x in common}
    return sorted((x, float(np.mean(ys))) for x, ys in by_x.items())


def figure4(spec: Spec, rows: list[RowRuns], options: Options) -> list[Path]:
    """Test accuracy and the step size averaged over each epoch, per seed and their mean."""
    panels = (
        ("test_acc_per_epoch", "test_acc", "test accuracy", "linear"),
        ("mean_step_size_per_epoch", "mean_lr", "step size h (mean over the epoch)", "log"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    lines: list[list] = []
    colors = plt.cm.tab10(np.arange(max(len(rows), 1)) % 10)
    for ax, (panel, column, label, scale) in zip(axes, panels, strict=True):
        for color, row in zip(colors, rows, strict=True):
            series = run_series(row, "history.csv", "epoch", column)
            for seed, points in sorted(series.items()):
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, color=color, linewidth=0.8, alpha=0.4)
                lines += [[panel, row.row.name, seed, a, b] for a, b in points]
            mean = _mean_over_seeds(series)
            if mean:
                xs, ys = zip(*mean, strict=True)
                lines += [[panel, row.row.name, "mean", a, b] for a, b in mean]
            else:
                xs, ys = [], []
            name = f"{row_label(row)}, mean of {len(series)} seed(s)"
            ax.plot(xs, ys, color=color, linewidth=2.0, label=name)
        style_axis(ax, "epoch", label, log_y=scale == "log", integer_x=True)
    axes[0].set_title("Test accuracy")
    axes[1].set_title("Step size averaged per epoch")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{spec.title} (budget {budget_label(options)})", fontsize=10)
    stem = options.output_dir / spec.key
    io.write_csv(stem.with_suffix(".csv"), SERIES_COLUMNS, lines)
    return [*save_figure(fig, stem), stem.with_suffix(".csv")]


# Section 3: quadratics

# Iterates are followed down to this fraction of ‖x0‖; below it squares and cubes underflow.
SMALLEST_NORM = 1e-100
QUADRATIC_COLUMNS = (
    "quadratic",
    "lambda1",
    "lambda2",
    "iteration",
    "norm_exact",
    "norm_exact_worst",
    "bound",
    "norm_lossgrad",
    "h_lossgrad",
    "t0_lossgrad",
)


def random_quadratics(settings: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Eigenvalues (λ1, λ2) with the given condition numbers and a random largest eigenvalue,
    each with a random unit starting point x0.

    .. note::
        Points are in the eigen-coordinates of A, i.e. A = diag(λ1, λ2): a rotation of A would
        change none of the plotted quantities (norms, step sizes), only the rounding.
    """
    rng = np.random.default_rng(int(settings.get("seed", 0)))
    low, high = (float(v) for v in settings.get("largest_eigenvalue", [0.5, 5.0]))
    problems = []
    for kappa in settings["condition_numbers"]:
        if not float(kappa) > 1.0:
            raise ValueError(f"condition number {kappa}; expected a number > 1")
        lambda1 = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        direction = rng.uniform(0.0, 2.0 * np.pi)
        x0 = np.array([np.cos(direction), np.sin(direction)])
        problems.append((np.array([lambda1, lambda1 / float(kappa)]), x0))
    return problems


def exact_line_search(eigenvalues: np.ndarray, x0: np.ndarray, iterations: int) -> list[float]:
    """‖x_k‖ for x_{k+1} = x_k − t0(x_k)·∇F(x_k), k = 0 … iterations; NaN from the point on
    where ‖x_k‖ < ``SMALLEST_NORM``·‖x0‖ (further steps would underflow λ³x² to 0)."""
    x = torch.as_tensor(x0, dtype=torch.float64)
    norms = [float(x.norm())]
    for _ in range(iterations):
        if not norms[-1] >= SMALLEST_NORM * norms[0]:
            norms.append(math.nan)
            continue
        x = quadratic.line_search_map(eigenvalues, x)
        norms.append(float(x.norm()))
    return norms


def worst_start(eigenvalues: np.ndarray) -> np.ndarray:
    """The unit x0 with x1²/x2² = λ2²/λ1², from which two exact steps shrink ‖x‖ by exactly
    ((λ1 − λ2)/(λ1 + λ2))², so that bound (4) is attained."""
    lambda1, lambda2 = (float(v) for v in eigenvalues)
    return np.array([lambda2, lambda1]) / math.hypot(lambda1, lambda2)


def bound4(eigenvalues: np.ndarray, norm0: float, iteration: int) -> float | None:
    """Bound (4): after 2n exact steps ‖x‖ <= ((λ1 − λ2)/(λ1 + λ2))^{2n}‖x0‖ (even k only)."""
    if iteration % 2:
        return None
    return float(quadratic.contraction_bound(eigenvalues, iteration)) * norm0


def lossgrad_on_quadratic(
    eigenvalues: np.ndarray, x0: np.ndarray, iterations: int, lr: float, c: float
):
    """Runs ``lossgrad.LossGrad`` on a 2-parameter tensor with closure F(x) = xᵀAx (float64).

    Returns:
        ‖x_k‖ for k = 0 … iterations, and per step k < iterations the step size h_k it used
        and the optimal step t0(x_k) from the same point; NaN once ‖x_k‖ < ``SMALLEST_NORM``·‖x0‖.
    """
    a = torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64))
    x = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    optimizer = LossGrad([x], lr=lr, c=c)
    norms, steps, optimal = [float(x.detach().norm())], [], []
    for _ in range(iterations):
        if not norms[-1] >= SMALLEST_NORM * norms[0]:
            norms.append(math.nan)
            steps.append(math.nan)
            optimal.append(math.nan)
            continue
        point = x.detach().numpy().copy()
        steps.append(float(optimizer.param_groups[0]["lr"]))
        optimal.append(float(quadratic.optimal_step(eigenvalues, point)))
        optimizer.step(lambda: x @ a @ x)
        norms.append(float(x.detach().norm()))
    return norms, steps, optimal


def _cell(value: float | None) -> float | str:
    return "" if value is None or not math.isfinite(value) else value


def quadratic_figure(
    settings: dict, output_dir: Path, stem_name: str = "figure_quadratic"
) -> list[Path]:
    """The Section 3 figure: top, ‖x_k‖ for the exact line search, LOSSGRAD and bound (4);
    bottom, LOSSGRAD's h_k beside t0(x_k). One column per quadratic."""
    iterations = int(settings.get("iterations", 300))
    lr = float(settings.get("lossgrad", {}).get("lr", 1e-4))
    c = float(settings.get("lossgrad", {}).get("c", 1.05))
    problems = random_quadratics(settings)
    fig, axes = plt.subplots(
        2, len(problems), figsize=(4.5 * len(problems), 7), squeeze=False, layout="constrained"
    )
    lines = []
    for column, (eigenvalues, x0) in enumerate(problems):
        lambda1, lambda2 = (float(v) for v in eigenvalues)
        exact = exact_line_search(eigenvalues, x0, iterations)
        worst = exact_line_search(eigenvalues, worst_start(eigenvalues), iterations)
        norms, steps, optimal = lossgrad_on_quadratic(eigenvalues, x0, iterations, lr, c)
        bounds = [bound4(eigenvalues, exact[0], k) for k in range(iterations + 1)]
        for k in range(iterations + 1):
            values = [exact[k], worst[k], bounds[k], norms[k]]
            values += [steps[k], optimal[k]] if k < iterations else [None, None]
            lines.append([column, lambda1, lambda2, k, *(_cell(value) for value in values)])
        even = [k for k in range(iterations + 1) if bounds[k] is not None]
        top, bottom = axes[0][column], axes[1][column]
        top.plot(range(iterations + 1), exact, label="exact line search (step t0)")
        top.plot(range(iterations + 1), worst, label="exact line search, worst-case x0")
        top.plot(range(iterations + 1), norms, label=f"LOSSGRAD (h0={lr:g}, c={c:g})")
        top.plot(even, [bounds[k] for k in even], "k--", linewidth=1, label="bound (4), k even")
        style_axis(top, "iteration k", "‖x_k‖", log_y=True)
        top.set_title(f"λ1={lambda1:.3g}, λ2={lambda2:.3g} (κ={lambda1 / lambda2:.3g})")
        bottom.plot(range(iterations), steps, label="LOSSGRAD step size h_k")
        bottom.plot(range(iterations), optimal, label="optimal step t0(x_k)", linewidth=1)
        style_axis(bottom, "iteration k", "step size", log_y=True)
        for ax in (top, bottom):
            ax.legend(fontsize=7)
    fig.suptitle(settings.get("title", "Section 3"), fontsize=10)
    stem = Path(output_dir) / stem_name
    io.write_csv(stem.with_suffix(".csv"), QUADRATIC_COLUMNS, lines)
    return [*save_figure(fig, stem), stem.with_suffix(".csv")]
