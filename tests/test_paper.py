"""scripts.paper: specs, matching saved runs by configuration, tables, figures, the pipeline."""

from __future__ import annotations

import csv
import json
import math
import shutil
import threading
from pathlib import Path

import pytest
import torch

from experiments.config import CONFIG_DIR, compose
from experiments.train import train
from scripts import paper, paper_runs
from scripts.paper_runs import Options, collect, plan_row
from scripts.paper_specs import (
    FIGURES,
    REFERENCE_CSV,
    TABLES,
    Row,
    Spec,
    load_reference,
    load_spec,
)
from scripts.paper_tables import CSV_COLUMNS, write_table

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "paper" / "reference_results.csv"
EXPERIMENTS = {path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml")}
SPEC_KEYS = [f"table{n}" for n in TABLES] + [f"figure{n}" for n in FIGURES if n != "quadratic"]
SGD_ROW = Row("SGD", ("optimizer=sgd", "optimizer.lr=0.01"))


def sgd_spec() -> Spec:
    return Spec(
        key="table2",
        title="SGD on MNIST",
        experiment="mnist_mlp",
        rows=(SGD_ROW,),
        metrics=("test_loss",),
        paper_table=2,
    )


def smoke_run(results: Path, experiment: str, overrides, seed: int, folder: str) -> Path:
    """A real smoke run, saved in a folder whose name run.py would never choose."""
    torch.set_num_threads(1)
    cfg = compose(
        [f"experiment={experiment}", "budget=smoke", f"seed={seed}", "progress_bar=false"]
        + list(overrides)
    )
    run_dir = results / "runs" / "smoke" / experiment / folder
    metrics = train(cfg, run_dir)
    assert metrics["status"] == "completed"
    return run_dir


def set_status(run_dir: Path, status: str) -> None:
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["status"] = status
    metrics["error"] = "loss nan at step 2 (edited for the test)"
    path.write_text(json.dumps(metrics))


def no_launch(command):
    raise AssertionError(f"nothing should be launched, got {command}")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


# Specs and the reference numbers


def test_reference_csv_is_a_copy_of_the_papers_numbers():
    if not SHARED_REFERENCE.is_file():
        pytest.skip("no shared paper folder")
    assert REFERENCE_CSV.read_text() == SHARED_REFERENCE.read_text()


@pytest.mark.parametrize("table", TABLES)
def test_table_rows_are_the_papers_rows(table):
    spec = load_spec(f"table{table}")
    reference = load_reference()
    paper_rows = {row for (number, row, _) in reference if number == int(table)}
    assert {row.name for row in spec.rows} == paper_rows
    for row in spec.rows:
        for metric in spec.metrics:
            assert (int(table), row.name, metric) in reference, (row.name, metric)


@pytest.mark.parametrize("key", SPEC_KEYS)
def test_every_spec_row_composes(key):
    spec = load_spec(key)
    if spec.experiment not in EXPERIMENTS:
        pytest.skip(f"conf/experiment/{spec.experiment}.yaml does not exist yet")
    options = Options(budget="paper", seeds=(0,))
    wanted = [plan_row(spec, row, options).wanted for row in spec.rows]
    assert all(w["experiment_name"] == spec.experiment for w in wanted)
    # every row is a different configuration
    assert len({json.dumps(w, sort_keys=True, default=str) for w in wanted}) == len(wanted)


def test_figure3_runs_sixty_epochs_at_the_papers_budget_only():
    spec = load_spec("figure3")
    assert plan_row(spec, spec.rows[0], Options(budget="paper")).wanted["epochs"] == 60
    assert plan_row(spec, spec.rows[0], Options(budget="smoke")).wanted["epochs"] == 2
    lrs = [plan_row(spec, row, Options()).wanted["optimizer.lr"] for row in spec.rows]
    assert lrs == [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


# Command line


def test_command_line_options_and_overrides():
    targets, options = paper.parse_args(
        ["table=2,3", "figure=quadratic", "seeds=2", "budget=smoke", "epochs=4", "threads=1"]
    )
    assert targets == ["table2", "table3", "quadratic"]
    assert options.seeds == (0, 1) and options.budget == "smoke"
    assert options.extra == ("epochs=4", "threads=1")
    targets, options = paper.parse_args(["all"])
    assert targets[0] == "table1" and targets[-1] == "quadratic" and len(targets) == 9
    assert options.seeds == (0, 1, 2) and options.budget == "paper" and not options.dry_run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["table=9"], "table='9'"),
        (["table=2", "seeds=0"], "seeds='0'"),
        (["table=2", "seed=1"], "seed is set by the script"),
        (["table=2", "optimizer.lr=0.1,0.2"], "is a sweep"),
        (["table=2", "dry_run=maybe"], "dry_run='maybe'"),
        (["table=2", "parallel_rows=0"], "parallel_rows='0'"),
        (["tabel2"], "'tabel2'"),
        (["budget=smoke"], "nothing to make"),
    ],
)
def test_bad_command_lines_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        paper.parse_args(argv)
    assert paper.main(argv) == 2


def test_later_overrides_replace_earlier_ones():
    merged = paper_runs.merge_overrides(["optimizer=sgd", "epochs=60"], ["epochs=2", "threads=1"])
    assert merged == ("optimizer=sgd", "epochs=2", "threads=1")


# Matching saved runs


def test_runs_are_found_by_configuration_not_folder_name(tmp_path, capsys):
    smoke_run(tmp_path, "mnist_mlp", SGD_ROW.overrides, 0, "by-hand/any name")
    smoke_run(tmp_path, "mnist_mlp", ["optimizer=sgd", "optimizer.lr=0.02"], 1, "other-lr")
    options = Options(
        seeds=(0, 1),
        budget="smoke",
        results_dir=tmp_path,
        extra=("threads=1", "device=cpu"),
        dry_run=True,
    )
    rows, problems = collect(sgd_spec(), options)
    assert rows[0].runs[0].path.name == "any name"
    assert rows[0].runs[1] is None  # the lr=0.02 run is another configuration
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "seed=1 " in printed[0] and "optimizer.lr=0.01" in printed[0]
    assert problems == []


def test_keys_missing_from_a_saved_config_are_ignored_unless_set_by_the_row(tmp_path):
    run_dir = smoke_run(tmp_path, "mnist_mlp", SGD_ROW.overrides, 0, "old")
    text = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(text.replace("  momentum: 0.0\n", ""))
    options = Options(seeds=(0,), budget="smoke", results_dir=tmp_path, dry_run=True)
    rows, _ = collect(sgd_spec(), options)
    assert rows[0].runs[0] is not None
    explicit = Row("SGD", ("optimizer=sgd", "optimizer.lr=0.01", "optimizer.momentum=0.0"))
    spec = Spec(key="table2", title="t", experiment="mnist_mlp", rows=(explicit,))
    rows, _ = collect(spec, options)
    assert rows[0].runs[0] is None


def test_table_shows_diverged_and_missing_runs(tmp_path, monkeypatch):
    smoke_run(tmp_path, "mnist_mlp", SGD_ROW.overrides, 0, "a")
    set_status(smoke_run(tmp_path, "mnist_mlp", SGD_ROW.overrides, 1, "b"), "diverged")
    launched = []
    monkeypatch.setattr(paper_runs, "run_command", lambda command: launched.append(command) or 0)
    options = Options(seeds=(0, 1, 2), budget="smoke", results_dir=tmp_path)
    rows, problems = collect(sgd_spec(), options)
    assert len(launched) == 1 and "seed=2" in launched[0]  # not the diverged seed 1
    assert len(problems) == 1 and "seed 2" in problems[0]
    write_table(sgd_spec(), rows, options, load_reference(), "test")
    columns, lines = read_csv(tmp_path / "paper" / "table2.csv")
    assert columns == list(CSV_COLUMNS)
    loss = next(line for line in lines if line["metric"] == "test_loss")
    assert loss["n"] == "1" and loss["ours_std"] == "" and loss["paper"] == ""
    assert float(loss["ours_mean"]) > 0
    text = (tmp_path / "paper" / "table2.md").read_text()
    assert "1 completed; diverged: seed 1; missing: seed 2" in text
    assert "SGD, seed 1: diverged (loss nan" in text and "SGD, seed 2: missing" in text
    assert r"($n=1$)" in (tmp_path / "paper" / "table2.tex").read_text()


def test_parallel_rows_launch_rows_at_the_same_time(tmp_path, monkeypatch):
    spec = Spec(
        key="table2",
        title="two rows",
        experiment="mnist_mlp",
        rows=(SGD_ROW, Row("SGD 0.1", ("optimizer=sgd", "optimizer.lr=0.1"))),
        metrics=("test_loss",),
    )
    both_started = threading.Barrier(2, timeout=10)

    def launch_waiting_for_the_other(command):
        both_started.wait()  # raises BrokenBarrierError if the rows ran one after the other
        return 0

    monkeypatch.setattr(paper_runs, "run_command", launch_waiting_for_the_other)
    argv = ["table=2", "seeds=1", "budget=smoke", "parallel_rows=2", f"results_dir={tmp_path}"]
    _, options = paper.parse_args(argv)
    rows, problems = collect(spec, options)
    assert options.parallel_rows == 2 and len(rows) == 2
    assert len(problems) == 2 and all("seed 0" in problem for problem in problems)


def test_cell_without_completed_runs_says_why(tmp_path, monkeypatch):
    set_status(smoke_run(tmp_path, "mnist_mlp", SGD_ROW.overrides, 0, "a"), "diverged")
    monkeypatch.setattr(paper_runs, "run_command", no_launch)
    options = Options(seeds=(0,), budget="smoke", results_dir=tmp_path)
    rows, problems = collect(sgd_spec(), options)
    assert problems == []
    write_table(sgd_spec(), rows, options, load_reference(), "test")
    _, lines = read_csv(tmp_path / "paper" / "table2.csv")
    assert [(line["ours_mean"], line["n"]) for line in lines] == [("diverged", "0")]


# Figures


def make_figure_from_saved_runs(key: str, results: Path, monkeypatch) -> Spec:
    spec = load_spec(key)
    if spec.experiment not in EXPERIMENTS:
        pytest.skip(f"conf/experiment/{spec.experiment}.yaml does not exist yet")
    for row in spec.rows:
        smoke_run(results, spec.experiment, ["threads=1", *row.overrides], 0, row.name)
    monkeypatch.setattr(paper_runs, "run_command", no_launch)
    argv = [f"figure={key.removeprefix('figure')}", "seeds=1", "budget=smoke"]
    assert paper.main([*argv, f"results_dir={results}"]) == 0
    for suffix in (".png", ".pdf", ".csv"):
        assert (results / "paper" / f"{key}{suffix}").stat().st_size > 0
    return spec


def test_figure3_plots_the_saved_runs(tmp_path, monkeypatch):
    make_figure_from_saved_runs("figure3", tmp_path, monkeypatch)
    columns, lines = read_csv(tmp_path / "paper" / "figure3.csv")
    assert columns == ["panel", "series", "seed", "x", "y"]
    first = {
        line["series"]: float(line["y"])
        for line in lines
        if line["panel"] == "step_size_per_batch" and line["x"] == "1"
    }
    assert first == pytest.approx({f"h=1e-{n}": 10.0**-n for n in range(1, 7)}, rel=1e-6)
    assert {line["panel"] for line in lines} == {"step_size_per_batch", "test_loss_per_epoch"}


@pytest.mark.slow
def test_figure4_plots_the_saved_runs(tmp_path, monkeypatch):
    make_figure_from_saved_runs("figure4", tmp_path, monkeypatch)
    _, lines = read_csv(tmp_path / "paper" / "figure4.csv")
    panels = {(line["panel"], line["seed"]) for line in lines}
    assert panels == {
        (panel, seed)
        for panel in ("test_acc_per_epoch", "mean_step_size_per_epoch")
        for seed in ("0", "mean")
    }
    history = {
        line["x"]: float(line["y"])
        for line in lines
        if line["panel"] == "mean_step_size_per_epoch" and line["seed"] == "0"
    }
    assert list(history) == ["1", "2"] and history["1"] > 0


def test_quadratic_figure_respects_bound_4(tmp_path):
    assert paper.main(["figure=quadratic", f"results_dir={tmp_path}"]) == 0
    for suffix in (".png", ".pdf"):
        assert (tmp_path / "paper" / f"figure_quadratic{suffix}").stat().st_size > 0
    _, lines = read_csv(tmp_path / "paper" / "figure_quadratic.csv")
    checked = 0
    for line in lines:
        if not line["bound"]:
            assert int(line["iteration"]) % 2 == 1
            continue
        bound = float(line["bound"])
        if line["norm_exact"]:
            assert float(line["norm_exact"]) <= bound * (1 + 1e-9)
            checked += 1
        if line["norm_exact_worst"]:
            # from the worst starting point the bound is attained
            assert float(line["norm_exact_worst"]) == pytest.approx(bound, rel=1e-6)
    assert checked > 100
    for quadratic in {line["quadratic"] for line in lines}:
        steps = [line for line in lines if line["quadratic"] == quadratic and line["h_lossgrad"]]
        assert float(steps[0]["h_lossgrad"]) == pytest.approx(1e-4)
        # LOSSGRAD's h grows until it reaches the optimal step t0 of its current point
        assert any(float(s["h_lossgrad"]) > float(s["t0_lossgrad"]) for s in steps)
        assert all(math.isfinite(float(s["t0_lossgrad"])) for s in steps)


# The whole pipeline


@pytest.mark.slow
def test_table2_pipeline_at_smoke_budget(tmp_path, monkeypatch):
    results = tmp_path / "results"
    argv = ["table=2", "seeds=2", "budget=smoke", f"results_dir={results}", "threads=1"]
    assert paper.main(argv) == 0
    metrics = sorted((results / "runs" / "smoke" / "mnist_mlp").rglob("metrics.json"))
    assert len(metrics) == 10
    assert all(json.loads(path.read_text())["status"] == "completed" for path in metrics)
    outputs = [results / "paper" / f"table2.{suffix}" for suffix in ("csv", "md", "tex")]
    first = [path.read_bytes() for path in outputs]
    columns, lines = read_csv(outputs[0])
    assert columns == list(CSV_COLUMNS)
    assert len(lines) == 10
    assert all(line["n"] == "2" and line["budget"] == "smoke" for line in lines)
    assert all(float(line["ours_std"]) >= 0 for line in lines)
    reference = load_reference()
    assert all(line["paper"] == reference[(2, line["row"], line["metric"])] for line in lines)

    # a second invocation launches nothing and writes the same table
    monkeypatch.setattr(paper_runs, "run_command", no_launch)
    assert paper.main(argv) == 0
    assert [path.read_bytes() for path in outputs] == first

    # a run that diverged is shown as such, and not launched again
    copy = tmp_path / "copy"
    shutil.copytree(results, copy)
    lossgrad_run = next(
        path.parent
        for path in (copy / "runs" / "smoke" / "mnist_mlp").rglob("metrics.json")
        if json.loads(path.read_text())["optimizer"] == "lossgrad"
        and json.loads(path.read_text())["seed"] == 1
    )
    set_status(lossgrad_run, "diverged")
    argv = [*argv[:3], f"results_dir={copy}", "threads=1"]
    assert paper.main(argv) == 0
    _, lines = read_csv(copy / "paper" / "table2.csv")
    assert [line["n"] for line in lines if line["row"] == "Lossgrad"] == ["1", "1"]
    assert all(line["ours_std"] == "" for line in lines if line["row"] == "Lossgrad")
    text = (copy / "paper" / "table2.md").read_text()
    assert "| 1 completed; diverged: seed 1 |" in text
    assert "- Lossgrad, seed 1: diverged" in text
