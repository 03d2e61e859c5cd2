"""What makes each of the paper's tables and figures: the specs in ``conf/paper/``.

A table or figure spec names one experiment of ``conf/experiment/`` and lists its rows, each a
label and a list of Hydra overrides of that experiment (``optimizer=sgd optimizer.lr=0.01``).
The paper's own numbers are read from ``results/paper/reference_results.csv`` (a transcription
of the paper's Tables 1-6, one line per cell), never written in code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "conf" / "paper"
REFERENCE_CSV = ROOT / "results" / "paper" / "reference_results.csv"
TABLES = ("1", "2", "3", "4", "5", "6")
FIGURES = ("3", "4", "quadratic")


@dataclass(frozen=True)
class Row:
    """One row of a table (or one curve of a figure): its label and its overrides."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """The runs behind one table or figure.

    Args:
        key: ``table2``, ``figure3``, ... (the spec's file name and the outputs' stem).
        title: a one-line caption.
        experiment: the experiment config every row overrides.
        rows: the rows, in the order they are shown.
        metrics: the ``metrics.json`` keys shown per row (tables only).
        paper_table: the table's number in ``reference_results.csv`` (tables only).
        overrides_by_budget: overrides added to every row when that budget is used.
        options: any other key of the spec file (figure settings such as ``first_steps``).
    """

    key: str
    title: str
    experiment: str
    rows: tuple[Row, ...]
    metrics: tuple[str, ...] = ()
    paper_table: int | None = None
    overrides_by_budget: dict[str, tuple[str, ...]] = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def budget_overrides(self, budget: str) -> tuple[str, ...]:
        return self.overrides_by_budget.get(budget, ())


def _string_list(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where} must be a list of override strings, got {value!r}")
    return tuple(value)


def load_spec(key: str, spec_dir: Path = SPEC_DIR) -> Spec:
    """Reads ``conf/paper/<key>.yaml`` (``key`` such as ``table2`` or ``figure3``)."""
    path = Path(spec_dir) / f"{key}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in Path(spec_dir).glob("*.yaml"))
        raise ValueError(f"no spec {path}; available: {', '.join(available)}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    for required in ("title", "experiment", "rows"):
        if required not in data:
            raise ValueError(f"{path} lacks the key {required!r}")
    rows = []
    for index, row in enumerate(data.pop("rows")):
        if not isinstance(row, dict) or "name" not in row:
            raise ValueError(f"{path}: row {index} needs a name and overrides, got {row!r}")
        rows.append(Row(str(row["name"]), _string_list(row.get("overrides"), f"{path} row")))
    names = [row.name for row in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: row names must be unique, got {names}")
    by_budget = {
        str(budget): _string_list(overrides, f"{path} overrides_by_budget.{budget}")
        for budget, overrides in (data.pop("overrides_by_budget", None) or {}).items()
    }
    return Spec(
        key=key,
        title=str(data.pop("title")),
        experiment=str(data.pop("experiment")),
        rows=tuple(rows),
        metrics=tuple(data.pop("metrics", None) or ()),
        paper_table=data.pop("paper_table", None),
        overrides_by_budget=by_budget,
        options=data,
    )


def load_options(key: str, spec_dir: Path = SPEC_DIR) -> dict:
    """Reads a spec that needs no runs (``quadratic``) as a plain dict."""
    path = Path(spec_dir) / f"{key}.yaml"
    if not path.is_file():
        raise ValueError(f"no spec {path}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def load_reference(path: Path = REFERENCE_CSV) -> dict[tuple[int, str, str], str]:
    """The paper's numbers keyed by (table, row, metric), each as printed in the paper."""
    with open(path, newline="") as file:
        return {
            (int(line["table"]), line["row"], line["metric"]): line["value"]
            for line in csv.DictReader(file)
        }
