"""Find the saved runs behind each row of a table or figure, and launch the missing ones.

Matching never guesses folder names. For each row the script composes the configuration that
``run.py`` would build (``experiments.config.compose``) and compares it with the resolved
``config.yaml`` of every run saved under ``<results_dir>/runs/<budget>/<experiment>/``:

- keys that cannot change a result (``IGNORED_KEYS``: device, threads, data paths, ...) and the
  seed are left out; the seed picks which of the row's seeds a run belongs to;
- keys present on one side only are left out too, so that an option added to ``conf/`` after a
  run was made (whose default keeps the old behaviour) does not orphan the run; but every key a
  row or the command line sets explicitly must be present in the saved config with that value.

Per (row, seed) the best matching run counts: completed, else diverged, else failed or
interrupted, else one without ``metrics.json`` (started but never finished). Seeds without a
completed or diverged run are launched with one Hydra multirun per row (``parallel_rows`` of
them at a time),
``python run.py -m <overrides> seed=<seeds> budget=<budget> results_dir=<dir>``, so that
``hydra/launcher=joblib`` or ``submitit_slurm`` applies; ``run.py`` itself skips completed runs.
Diverged runs are results (the method diverged) and are not launched again.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from experiments.config import compose
from scripts.paper_specs import ROOT, Row, Spec

log = logging.getLogger(__name__)

# Config keys that change how or where a run executes but not its numbers.
IGNORED_KEYS = frozenset(
    {
        "device",
        "threads",
        "resume",
        "skip_completed",
        "progress_bar",
        "progress_log_s",
        "results_dir",
        "check_every",
        "compile",
        "data.root",
        "data.download",
        "data.cache_dir",
    }
)
# Overrides that the script sets itself for every run.
RESERVED_KEYS = frozenset({"experiment", "budget", "seed", "results_dir"})
COMPLETED, DIVERGED, FAILED, INTERRUPTED, INCOMPLETE = (
    "completed",
    "diverged",
    "failed",
    "interrupted",
    "incomplete",
)
STATUS_RANK = {COMPLETED: 0, DIVERGED: 1, FAILED: 2, INTERRUPTED: 3, INCOMPLETE: 4}
DONE = frozenset({COMPLETED, DIVERGED})


@dataclass(frozen=True)
class Options:
    """How to make a table or figure.

    Args:
        seeds: the seeds every row is run with.
        budget: the ``conf/budget/`` entry passed to every run (``paper``, ``smoke``, ...).
        launcher: the Hydra launcher (``basic``: one run after the other in this process's
            machine; ``joblib``; ``submitit_slurm``; or any other ``hydra/launcher`` entry).
        results_dir: where runs are saved (``<results_dir>/runs``) and tables and figures are
            written (``<results_dir>/paper``).
        extra: further overrides passed to every run, such as ``epochs=10`` or ``threads=1``.
        dry_run: print the launch commands instead of running them, and write nothing.
        parallel_rows: how many rows' multiruns are launched at the same time (1: one row
            after the other). With ``seeds=1`` on a machine with spare cores, this is what
            runs several rows at once; add ``threads=1`` on a CPU.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    budget: str = "paper"
    launcher: str = "basic"
    results_dir: Path = ROOT / "results"
    extra: tuple[str, ...] = ()
    dry_run: bool = False
    parallel_rows: int = 1

    @property
    def runs_dir(self) -> Path:
        return Path(self.results_dir) / "runs"

    @property
    def output_dir(self) -> Path:
        return Path(self.results_dir) / "paper"


@dataclass
class RunRecord:
    """One saved run: its folder, seed, status, config (flattened) and metrics."""

    path: Path
    seed: int | None
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    modified: float


@dataclass
class RowRuns:
    """A row of a spec with the overrides it runs with and its best run per seed."""

    row: Row
    overrides: tuple[str, ...]
    wanted: dict[str, Any]
    required: frozenset[str]
    runs: dict[int, RunRecord | None] = field(default_factory=dict)

    def seeds_with(self, *statuses: str) -> list[int]:
        return [s for s, run in self.runs.items() if (run.status if run else None) in statuses]

    def seeds_to_launch(self) -> list[int]:
        return [s for s, run in self.runs.items() if run is None or run.status not in DONE]


# Overrides


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list:
    """Parses Hydra override strings, raising ValueError for malformed ones."""
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception as error:
        raise ValueError(f"invalid override in {list(overrides)}: {error}") from error


def merge_overrides(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Concatenates override lists; a later override of the same key replaces an earlier one
    in place, so each key appears once (Hydra rejects some duplicates)."""
    merged: dict[str, str] = {}
    for group in groups:
        for parsed in parse_overrides(group):
            merged.pop(parsed.key_or_group, None)
            merged[parsed.key_or_group] = parsed.input_line
    return tuple(merged.values())


def check_extra_overrides(extra: tuple[str, ...]) -> None:
    """Rejects command-line overrides that the script sets itself or that would sweep."""
    for parsed in parse_overrides(extra):
        key = parsed.key_or_group
        if key in RESERVED_KEYS:
            raise ValueError(
                f"{parsed.input_line!r}: {key} is set by the script "
                "(use seeds=N, budget=..., results_dir=...; the spec names the experiment)"
            )
        if parsed.is_sweep_override():
            raise ValueError(
                f"{parsed.input_line!r} is a sweep; every override must have one value "
                "(the rows of conf/paper/*.yaml are the sweep)"
            )


def _is_hydra(override: str) -> bool:
    key = parse_overrides([override])[0].key_or_group
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


# Configs


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept whole as leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def result_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """The keys of a flattened config that decide a run's numbers (seed excluded)."""
    return {k: v for k, v in flat.items() if k not in IGNORED_KEYS and k != "seed"}


def differences(record: RunRecord, wanted: dict, required: frozenset[str]) -> list[str]:
    """The keys in which a saved run differs from the wanted config (empty: it matches)."""
    saved = record.config
    missing = [key for key in sorted(required) if key not in saved]
    differing = [key for key in sorted(wanted.keys() & saved.keys()) if wanted[key] != saved[key]]
    return missing + differing


def plan_row(spec: Spec, row: Row, options: Options) -> RowRuns:
    """Composes a row's configuration and works out which keys a saved run must match."""
    overrides = merge_overrides(
        row.overrides, spec.budget_overrides(options.budget), options.extra
    )
    for_compose = [o for o in overrides if not _is_hydra(o)]
    full = [f"experiment={spec.experiment}", f"budget={options.budget}", "seed=0", *for_compose]
    try:
        cfg = compose(full)
        flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    except Exception as error:
        raise ValueError(
            f"{spec.key} row {row.name!r}: cannot compose {' '.join(full)}: {error}"
        ) from error
    wanted = result_keys(flat)
    explicit = {parsed.key_or_group for parsed in parse_overrides(for_compose)}
    required = frozenset(key for key in explicit if key in wanted)
    runs = {seed: None for seed in options.seeds}
    return RowRuns(row=row, overrides=overrides, wanted=wanted, required=required, runs=runs)


def runs_folder(spec: Spec, rows: list[RowRuns], options: Options) -> Path:
    budget = rows[0].wanted.get("budget.name", options.budget)
    experiment = rows[0].wanted.get("experiment_name", spec.experiment)
    return options.runs_dir / str(budget) / str(experiment)


# Saved runs


def _status(metrics: dict | None) -> str:
    if metrics is None:
        return INCOMPLETE
    status = metrics.get("status")
    return status if status in STATUS_RANK else FAILED


def scan_runs(folder: Path) -> list[RunRecord]:
    """Every run under ``folder`` that saved a ``config.yaml``."""
    records = []
    for config_path in sorted(Path(folder).rglob("config.yaml")):
        if config_path.parent.name == ".hydra":
            continue
        try:
            config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
        except Exception as error:
            log.warning("cannot read %s (%s); ignored", config_path, error)
            continue
        if not isinstance(config, dict):
            continue
        metrics_path = config_path.parent / "metrics.json"
        metrics = None
        if metrics_path.is_file():
            try:
                metrics = json.loads(metrics_path.read_text())
            except (OSError, ValueError) as error:
                log.warning("cannot read %s (%s); counted as incomplete", metrics_path, error)
        flat = flatten(config)
        seed = flat.get("seed")
        source = metrics_path if metrics is not None else config_path
        records.append(
            RunRecord(
                path=config_path.parent,
                seed=seed if isinstance(seed, int) else None,
                status=_status(metrics),
                config=result_keys(flat),
                metrics=metrics or {},
                modified=source.stat().st_mtime,
            )
        )
    return records


def assign_runs(rows: list[RowRuns], records: list[RunRecord]) -> None:
    """Sets each row's best matching run per seed (see the module docstring)."""
    for row in rows:
        for seed in row.runs:
            candidates = [
                record
                for record in records
                if record.seed == seed and not differences(record, row.wanted, row.required)
            ]
            candidates.sort(key=lambda r: (STATUS_RANK[r.status], -r.modified))
            row.runs[seed] = candidates[0] if candidates else None


def explain_missing(row: RowRuns, seed: int, records: list[RunRecord]) -> str:
    """A hint for a seed that is still missing: the nearest saved run and how it differs."""
    same_seed = [record for record in records if record.seed == seed]
    if not same_seed:
        return "no saved run with this seed"
    nearest = min(same_seed, key=lambda r: len(differences(r, row.wanted, row.required)))
    keys = differences(nearest, row.wanted, row.required)
    if len(keys) > 4:
        return "no saved run with this configuration"
    details = ", ".join(
        f"{key} (saved {nearest.config.get(key, 'absent')!r}, wanted {row.wanted.get(key)!r})"
        for key in keys
    )
    return (
        f"nearest saved run {nearest.path} differs in {details}; run.py skips a completed run "
        "in its folder, so delete that folder (or pass skip_completed=false) to run it again"
    )


# Launching


def launch_command(spec: Spec, row: RowRuns, seeds: list[int], options: Options) -> list[str]:
    """The Hydra multirun that makes the given seeds of one row."""
    command = [
        sys.executable,
        "run.py",
        "-m",
        f"experiment={spec.experiment}",
        *row.overrides,
        f"budget={options.budget}",
        f"seed={','.join(str(seed) for seed in seeds)}",
        f"results_dir={Path(options.results_dir).resolve()}",
    ]
    if options.launcher != "basic":
        command.append(f"hydra/launcher={options.launcher}")
    return command


def run_command(command: list[str]) -> int:
    """Runs one launch command from the repository root; returns its exit status."""
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def collect(spec: Spec, options: Options) -> tuple[list[RowRuns], list[str]]:
    """Matches every row of ``spec`` with saved runs, launches the missing seeds (unless
    ``options.dry_run``) and matches again.

    Returns:
        The rows with their runs, and one message per launch that failed or per seed that is
        still without a finished run.
    """
    rows = [plan_row(spec, row, options) for row in spec.rows]
    folder = runs_folder(spec, rows, options)
    records = scan_runs(folder)
    assign_runs(rows, records)
    launches = [(row, row.seeds_to_launch()) for row in rows]
    launches = [(row, seeds) for row, seeds in launches if seeds]
    problems: list[str] = []
    if not launches:
        log.info("%s: every run is in %s", spec.key, folder)
        return rows, problems
    commands = [(row, seeds, launch_command(spec, row, seeds, options)) for row, seeds in launches]
    if options.dry_run:
        for _, _, command in commands:
            print(f"python {shlex.join(command[1:])}")
        return rows, problems

    def launch(row: RowRuns, seeds: list[int], command: list[str]) -> int:
        shown = shlex.join(command[1:])
        log.info("%s row %r: running seeds %s: python %s", spec.key, row.row.name, seeds, shown)
        return run_command(command)

    with ThreadPoolExecutor(max_workers=options.parallel_rows) as pool:
        returncodes = list(pool.map(lambda item: launch(*item), commands))
    for (row, _, _), returncode in zip(commands, returncodes, strict=True):
        if returncode != 0:
            problems.append(f"{spec.key} row {row.row.name!r}: run.py exited with {returncode}")
    records = scan_runs(folder)
    assign_runs(rows, records)
    for row in rows:
        for seed in row.seeds_to_launch():
            run = row.runs[seed]
            if run is None:
                reason = explain_missing(row, seed, records)
            else:
                reason = f"{run.status}: {run.metrics.get('error', '')} ({run.path})"
            problems.append(f"{spec.key} row {row.row.name!r} seed {seed}: {reason}")
    return rows, problems
