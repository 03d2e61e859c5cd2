"""Configuration: composition, and clear errors for bad input from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import compose, run_name
from experiments.train import check_config

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_default_job_is_mnist_mlp_with_lossgrad():
    cfg = compose()
    assert cfg.experiment_name == "mnist_mlp"
    assert cfg.optimizer.name == "lossgrad"
    assert cfg.optimizer.lr == 1e-4 and cfg.optimizer.c == 1.05
    assert cfg.epochs == 30 and cfg.data.batch_size == 100
    assert cfg.budget.name == "paper" and cfg.data.download is True


def test_command_line_values_beat_experiment_and_budget():
    cfg = compose(["experiment=cifar_cnn", "budget=smoke", "epochs=7", "optimizer.c=1.2"])
    assert cfg.epochs == 7 and cfg.optimizer.c == 1.2
    assert cfg.data.synthetic is True and cfg.model.name == "small_cnn"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.c=1.0"], "c"),
        (["optimizer.lr=0"], "lr"),
        (["optimizer=sgd", "optimizer.lr=-1"], "lr"),
        (["epochs=0"], "epochs=0"),
        (["precision=float8"], "float8"),
        (["threads=0"], "threads=0"),
        (["device=tpu"], "tpu"),
        (["optimizer=sgd", "scheduler=multistep"], None),
        (["scheduler=multistep"], "scheduler=multistep"),
    ],
)
def test_bad_values_are_rejected_by_name(overrides, message):
    cfg = compose(overrides)
    if message is None:
        check_config(cfg)
        return
    with pytest.raises(ValueError, match=message):
        check_config(cfg)


def test_every_paper_row_is_an_override():
    rows = [
        ["experiment=cifar_cnn", "optimizer.lr=0.1", "optimizer.c=1.001"],
        ["experiment=mnist_mlp", "optimizer=sgd", "optimizer.lr=0.45"],
        ["experiment=mnist_mlp", "optimizer=wngrad", "optimizer.lr=1.0"],
        ["experiment=fmnist_ae", "optimizer=sgd", "optimizer.lr=16", "scheduler=step"],
        ["experiment=fmnist_ae", "optimizer=sgd", "optimizer.lr=10", "scheduler=trapezoid"],
        ["experiment=fmnist_ae", "optimizer=wngrad", "optimizer.lr=5.0"],
    ]
    for overrides in rows:
        check_config(compose(overrides))
    cfg = compose(rows[3])
    assert cfg.scheduler.step_size == 20 and cfg.scheduler.gamma == 0.5


def test_run_names_separate_settings():
    assert run_name("sgd", "none", "", 0) == "sgd/seed=0"
    assert run_name("sgd", "step", "optimizer.lr=16", 2) == "sgd+step/optimizer.lr=16,seed=2"


def test_cli_unknown_experiment_lists_the_valid_ones():
    result = run_cli("experiment=mnist_mpl", "budget=smoke")
    assert result.returncode != 0
    assert "mnist_mpl" in result.stderr and "mnist_mlp" in result.stderr


def test_cli_unknown_key_is_named():
    result = run_cli("budget=smoke", "epoch=3")
    assert result.returncode != 0
    assert "epoch" in result.stderr


def test_cli_bad_value_exits_with_its_name(tmp_path):
    result = run_cli("budget=smoke", "optimizer.c=0.9", f"results_dir={tmp_path}")
    assert result.returncode == 2
    assert "c" in result.stderr and "0.9" in result.stderr


def test_cli_missing_offline_data_says_which_files_where(tmp_path):
    result = run_cli(
        "optimizer=sgd",
        f"data.root={tmp_path / 'nowhere'}",
        "data.download=false",
        f"results_dir={tmp_path}",
    )
    assert result.returncode == 2
    assert "train-images-idx3-ubyte" in result.stderr
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in result.stderr


def test_cli_smoke_run_writes_its_run_directory(tmp_path):
    result = run_cli("budget=smoke", "optimizer=sgd", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "smoke" / "mnist_mlp" / "sgd" / "seed=0"
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.optimizer.name == "sgd"
    assert (run_dir / "metrics.json").is_file()
