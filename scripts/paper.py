"""Regenerate the paper's tables and figures: run what is missing, skip what is done, and write
the results beside the paper's numbers.

    python -m scripts.paper table=2               # Table 2: runs, then results/paper/table2.*
    python -m scripts.paper figure=3              # Figure 3 (also figure=4, figure=quadratic)
    python -m scripts.paper all                   # Tables 1-6 and every figure
    python -m scripts.paper table=2 budget=smoke seeds=1    # the whole pipeline in seconds
    python -m scripts.paper table=1 epochs=10 threads=1     # a reduced budget, stated as such
    python -m scripts.paper table=4 launcher=joblib         # seeds of a row in parallel
    python -m scripts.paper table=1 seeds=1 parallel_rows=2 threads=1  # two rows at a time
    python -m scripts.paper table=4 launcher=submitit_slurm hydra.launcher.partition=gpu
    python -m scripts.paper table=2 dry_run=true  # print the run.py commands only

Options: ``table=N`` (1-6, or a comma list), ``figure=3|4|quadratic`` (or a comma list),
``all``; ``seeds=N`` (seeds 0 … N−1, default 3); ``budget=`` (a conf/budget/ entry, default
paper); ``launcher=basic|joblib|submitit_slurm|...`` (a hydra/launcher entry, default basic);
``results_dir=`` (default results); ``dry_run=true``; ``parallel_rows=N`` (launch N rows'
multiruns at the same time, default 1: with ``seeds=1`` and ``threads=1`` it fills a CPU's
cores). Any other ``key=value`` is an override
passed to every run (``epochs=10``, ``data.root=...``, ``threads=1``, ``hydra.launcher.n_jobs=2``)
and recorded in the table's header; one that can change a result also enters the ``budget``
column of the CSV.

The rows of each table and figure are in conf/paper/; how saved runs are matched and missing
ones launched is described in scripts/paper_runs.py; the paper's numbers come from
results/paper/reference_results.csv. Exit status: 0 when every run of every requested table or
figure is completed or diverged, 1 otherwise, 2 for a bad command line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from scripts import figures
from scripts.paper_runs import Options, check_extra_overrides, collect
from scripts.paper_specs import FIGURES, TABLES, load_options, load_reference, load_spec
from scripts.paper_tables import write_table

log = logging.getLogger("scripts.paper")
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _choices(value: str, valid: tuple[str, ...], key: str) -> list[str]:
    chosen = [part.strip() for part in value.split(",") if part.strip()]
    for choice in chosen:
        if choice not in valid:
            raise ValueError(f"{key}={choice!r}; valid: {', '.join(valid)}")
    if not chosen:
        raise ValueError(f"{key}= needs a value; valid: {', '.join(valid)}")
    return chosen


def parse_args(argv: list[str]) -> tuple[list[str], Options]:
    """Returns the targets (``table2``, ``figure3``, ``quadratic``, ...) and the options."""
    targets: list[str] = []
    settings: dict = {}
    extra: list[str] = []
    for argument in argv:
        if argument == "all" or argument == "all=true":
            targets += [f"table{n}" for n in TABLES]
            targets += [f"figure{n}" if n != "quadratic" else n for n in FIGURES]
            continue
        if "=" not in argument:
            raise ValueError(
                f"{argument!r}: expected all, table=N, figure=N or key=value (see --help)"
            )
        key, value = argument.split("=", 1)
        if key == "table":
            targets += [f"table{n}" for n in _choices(value, TABLES, key)]
        elif key == "figure":
            targets += [
                f"figure{n}" if n != "quadratic" else n for n in _choices(value, FIGURES, key)
            ]
        elif key == "seeds":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"seeds={value!r}; expected a positive integer (seeds 0..N-1)")
            settings["seeds"] = tuple(range(int(value)))
        elif key in ("budget", "launcher"):
            if not value:
                raise ValueError(f"{key}= needs a value")
            settings[key] = value
        elif key == "parallel_rows":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(
                    f"parallel_rows={value!r}; expected a positive integer "
                    "(how many rows are launched at the same time)"
                )
            settings[key] = int(value)
        elif key == "results_dir":
            settings[key] = Path(value).expanduser().resolve()
        elif key == "dry_run":
            if value.lower() not in TRUE + FALSE:
                raise ValueError(f"dry_run={value!r}; expected true or false")
            settings[key] = value.lower() in TRUE
        else:
            extra.append(argument)
    if not targets:
        raise ValueError("nothing to make: give table=N, figure=3|4|quadratic or all")
    check_extra_overrides(tuple(extra))
    options = Options(extra=tuple(extra), **settings)
    return list(dict.fromkeys(targets)), options


def make(target: str, options: Options, reference: dict, command: str) -> list[str]:
    """Makes one table or figure; returns the problems met (empty when all went well)."""
    if target == "quadratic":
        if options.dry_run:
            log.info("quadratic: computed, no runs needed")
            return []
        paths = figures.quadratic_figure(load_options("quadratic"), options.output_dir)
        log.info("wrote %s", ", ".join(str(path) for path in paths))
        return []
    spec = load_spec(target)
    rows, problems = collect(spec, options)
    if options.dry_run:
        return problems
    if target.startswith("table"):
        paths = write_table(spec, rows, options, reference, command)
    elif target == "figure3":
        paths = figures.figure3(spec, rows, options)
    else:
        paths = figures.figure4(spec, rows, options)
    log.info("wrote %s", ", ".join(str(path) for path in paths))
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(argument in ("-h", "--help", "help") for argument in argv):
        print(__doc__)
        return 0
    try:
        targets, options = parse_args(argv)
    except ValueError as error:
        log.error("%s", error)
        return 2
    command = " ".join(["python -m scripts.paper", *argv])
    reference = load_reference()
    problems: list[str] = []
    for target in targets:
        try:
            problems += make(target, options, reference, command)
        except ValueError as error:
            problems.append(f"{target}: {error}")
    for problem in problems:
        log.error("%s", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s] %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    sys.exit(main())
