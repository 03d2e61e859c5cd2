"""Aggregate a table's runs over seeds and write it as CSV, Markdown and LaTeX.

Each cell is the mean ± standard deviation (n − 1 in the denominator; blank for one run) of a
``metrics.json`` value over the row's completed seeds, beside the paper's value as printed.
Diverged, failed and missing seeds are never averaged in and never dropped silently: the
Markdown lists them per row and below the table, and a cell without any completed seed says
``diverged``, ``failed`` or ``missing`` in place of the mean, in the CSV as well.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from experiments import io
from scripts.paper_runs import COMPLETED, DIVERGED, IGNORED_KEYS, Options, RowRuns, parse_overrides
from scripts.paper_specs import Spec

CSV_COLUMNS = ("row", "metric", "ours_mean", "ours_std", "n", "paper", "budget")


@dataclass(frozen=True)
class Cell:
    """One metric of one row: our mean and std over completed seeds, and the paper's value."""

    row: str
    metric: str
    mean: float | None
    std: float | None
    n: int
    paper: str
    absent: str  # why there is no mean: "diverged", "failed" or "missing" ("" when n > 0)


def budget_label(options: Options) -> str:
    """The budget, followed by the extra overrides that can change a result
    (``paper epochs=10``); overrides such as ``threads=1`` or ``data.root=...`` are left out."""
    changing = [
        parsed.input_line
        for parsed in parse_overrides(options.extra)
        if parsed.key_or_group not in IGNORED_KEYS and not parsed.key_or_group.startswith("hydra")
    ]
    return " ".join([options.budget, *changing])


def _absent_reason(row: RowRuns) -> str:
    """Why a row has no completed run: ``diverged`` when a seed diverged, else ``failed`` when a
    run failed, was interrupted or never finished, else ``missing``."""
    statuses = {run.status for run in row.runs.values() if run is not None}
    if DIVERGED in statuses:
        return DIVERGED
    return "failed" if statuses - {COMPLETED} else "missing"


def aggregate(spec: Spec, rows: list[RowRuns], reference: dict) -> list[Cell]:
    """One cell per (row, metric), in the spec's order."""
    cells = []
    for row in rows:
        completed = [row.runs[seed] for seed in row.seeds_with(COMPLETED)]
        for metric in spec.metrics:
            values = [
                float(run.metrics[metric])
                for run in completed
                if isinstance(run.metrics.get(metric), int | float)
                and math.isfinite(run.metrics[metric])
            ]
            n = len(values)
            mean = statistics.fmean(values) if values else None
            std = statistics.stdev(values) if n > 1 else None
            paper = reference.get((spec.paper_table, row.row.name, metric), "")
            absent = "" if n else (_absent_reason(row) if not completed else "missing")
            cells.append(Cell(row.row.name, metric, mean, std, n, paper, absent))
    return cells


# Formatting


def _decimals(value: float, significant: int = 4) -> int:
    if value == 0 or not math.isfinite(value):
        return significant - 1
    return max(0, significant - 1 - math.floor(math.log10(abs(value))))


def format_value(mean: float, std: float | None = None) -> str:
    """``0.09412 ± 0.0021``: four significant digits, the std to the mean's decimals."""
    if mean != 0 and not 1e-4 <= abs(mean) < 1e6:
        text = f"{mean:.3e}"
        return f"{text} ± {std:.1e}" if std is not None else text
    decimals = _decimals(mean)
    text = f"{mean:.{decimals}f}"
    return f"{text} ± {std:.{decimals}f}" if std is not None else text


def _ours(cell: Cell) -> str:
    if cell.mean is None:
        return cell.absent
    return f"{format_value(cell.mean, cell.std)} (n={cell.n})"


def _row_status(row: RowRuns) -> str:
    """``3 completed`` or ``2 completed; diverged: seed 2``."""
    parts = []
    done = row.seeds_with(COMPLETED)
    if done:
        parts.append(f"{len(done)} completed")
    by_status: dict[str, list[int]] = {}
    for seed, run in row.runs.items():
        status = run.status if run else "missing"
        if status != COMPLETED:
            by_status.setdefault(status, []).append(seed)
    for status, seeds in by_status.items():
        label = "seed" if len(seeds) == 1 else "seeds"
        parts.append(f"{status}: {label} {', '.join(map(str, seeds))}")
    return "; ".join(parts)


def provenance(rows: list[RowRuns]) -> dict[str, str]:
    """Where the runs of a table came from: commits, machines and summed run time."""
    runs = [run for row in rows for run in row.runs.values() if run is not None]
    commits = Counter(str(run.metrics.get("git_commit", "unknown"))[:12] for run in runs)
    machines = Counter(str(run.metrics.get("machine", "unknown")) for run in runs)
    devices = Counter(str(run.metrics.get("device", "unknown")) for run in runs)
    wall = sum(float(run.metrics.get("wall_time_s") or 0.0) for run in runs)

    def counted(counter: Counter) -> str:
        return (
            ", ".join(
                f"{key} ({count} run{'s' if count != 1 else ''})"
                for key, count in counter.most_common()
            )
            or "-"
        )

    return {
        "commits": counted(commits),
        "machines": counted(machines),
        "devices": counted(devices),
        "wall": f"{wall / 3600:.2f} h" if wall >= 3600 else f"{wall:.1f} s",
    }


def header_lines(spec: Spec, rows: list[RowRuns], options: Options, command: str) -> list[str]:
    where = provenance(rows)
    extra = " ".join(options.extra) or "none"
    seeds = ", ".join(str(seed) for seed in options.seeds)
    return [
        f"Experiment `{spec.experiment}` (conf/experiment/{spec.experiment}.yaml), "
        f"rows from conf/paper/{spec.key}.yaml.",
        f"Budget: `{options.budget}`; extra overrides: `{extra}`; seeds: {seeds}.",
        f"Runs made at commit {where['commits']}; machine {where['machines']}; "
        f"device {where['devices']}; summed run time {where['wall']}.",
        f"Made with `{command}`.",
    ]


# Writers


def write_csv(path: Path, cells: list[Cell], label: str) -> None:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    io.write_csv(
        path,
        CSV_COLUMNS,
        [
            [c.row, c.metric, number(c.mean) or c.absent, number(c.std), c.n, c.paper, label]
            for c in cells
        ],
    )


def markdown(
    spec: Spec, rows: list[RowRuns], cells: list[Cell], options: Options, command: str
) -> str:
    lines = [f"# {spec.title}", ""]
    lines += [f"- {line}" for line in header_lines(spec, rows, options, command)]
    lines += [
        "- Ours: mean ± std over the completed seeds (std with n − 1), n = completed runs; "
        "the paper reports one run per cell.",
        "",
    ]
    head = ["Row"]
    for metric in spec.metrics:
        head += [f"{metric} (ours)", f"{metric} (paper)"]
    head.append("runs")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|")
    by_key = {(c.row, c.metric): c for c in cells}
    for row in rows:
        entries = [row.row.name]
        for metric in spec.metrics:
            cell = by_key[(row.row.name, metric)]
            entries += [_ours(cell), cell.paper or "-"]
        entries.append(_row_status(row))
        lines.append("| " + " | ".join(entries) + " |")
    left_out = [
        (row.row.name, seed, run)
        for row in rows
        for seed, run in row.runs.items()
        if run is None or run.status != COMPLETED
    ]
    lines.append("")
    if left_out:
        lines.append("Runs not in the means:")
        lines.append("")
        for name, seed, run in left_out:
            if run is None:
                lines.append(f"- {name}, seed {seed}: missing (no matching run saved)")
            else:
                error = run.metrics.get("error")
                detail = f" ({error})" if error else ""
                lines.append(f"- {name}, seed {seed}: {run.status}{detail}, `{run.path}`")
    else:
        lines.append("Every run completed.")
    lines.append("")
    lines.append("Overrides per row:")
    lines.append("")
    for row in rows:
        lines.append(f"- {row.row.name}: `{' '.join(row.overrides)}`")
    return "\n".join(lines) + "\n"


TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex_escape(text: str) -> str:
    return "".join(TEX_SPECIAL.get(char, char) for char in text)


def latex(spec: Spec, rows: list[RowRuns], cells: list[Cell], options: Options) -> str:
    by_key = {(c.row, c.metric): c for c in cells}
    seeds = len(options.seeds)
    columns = "l" + "rr" * len(spec.metrics)
    lines = [
        f"% {spec.title}; budget {budget_label(options)}; written by scripts/paper.py",
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{" + columns + "}",
        r"\toprule",
        " & ".join(
            [""]
            + [
                r"\multicolumn{2}{c}{" + _tex_escape(metric.replace("_", " ")) + "}"
                for metric in spec.metrics
            ]
        )
        + r" \\",
        " & ".join(["Method"] + ["ours", "paper"] * len(spec.metrics)) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        entries = [_tex_escape(row.row.name)]
        for metric in spec.metrics:
            cell = by_key[(row.row.name, metric)]
            if cell.mean is None:
                ours = r"\textit{" + cell.absent + "}"
            else:
                ours = "$" + format_value(cell.mean, cell.std).replace("±", r"\pm") + "$"
                if cell.n < seeds:
                    ours += f" ($n={cell.n}$)"
            entries += [ours, _tex_escape(cell.paper) or "--"]
        lines.append(" & ".join(entries) + r" \\")
    caption = (
        f"{_tex_escape(spec.title)}. Ours: mean $\\pm$ std over {seeds} seed(s) at budget "
        f"{_tex_escape(budget_label(options))}; paper: one run."
    )
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + caption + "}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_table(
    spec: Spec, rows: list[RowRuns], options: Options, reference: dict, command: str
) -> list[Path]:
    """Writes ``<key>.csv``, ``<key>.md`` and ``<key>.tex`` into ``options.output_dir``."""
    cells = aggregate(spec, rows, reference)
    out = options.output_dir
    paths = [out / f"{spec.key}.csv", out / f"{spec.key}.md", out / f"{spec.key}.tex"]
    write_csv(paths[0], cells, budget_label(options))
    io.write_text(paths[1], markdown(spec, rows, cells, options, command))
    io.write_text(paths[2], latex(spec, rows, cells, options))
    return paths
