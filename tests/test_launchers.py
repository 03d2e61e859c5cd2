"""Hydra launchers: the joblib and SLURM (submitit) launchers compose with run.py, and a joblib
multirun runs its jobs side by side and saves every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def run_py(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def hydra_config(*overrides: str) -> dict:
    """The ``hydra`` node that run.py composes for these overrides (``--cfg hydra``)."""
    result = run_py(*overrides, "--cfg", "hydra", timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["hydra"]


@pytest.mark.parametrize(
    ("launcher", "target", "settings"),
    [
        ("joblib", JOBLIB, {"n_jobs": 2}),
        ("local_parallel", JOBLIB, {"n_jobs": 2}),
        ("submitit_slurm", SLURM, {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 600}),
    ],
)
def test_launcher_composes_with_run_py(launcher, target, settings):
    overrides = [f"hydra.launcher.{key}={value}" for key, value in settings.items()]
    config = hydra_config(f"hydra/launcher={launcher}", *overrides)
    assert config["launcher"]["_target_"] == target
    for key, value in settings.items():
        assert config["launcher"][key] == value
    # runs still go to the suite's deterministic folders under results_dir
    assert config["sweep"]["dir"] == "${results_dir}/runs"
    assert "hydra/launcher" in config["job"]["config"]["override_dirname"]["exclude_keys"]


@pytest.mark.slow
def test_joblib_multirun_saves_both_runs(tmp_path):
    result = run_py(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "experiment=mnist_mlp",
        "optimizer=sgd",
        "budget=smoke",
        "seed=0,1",
        "threads=1",
        f"results_dir={tmp_path}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stderr + result.stdout
    paths = sorted((tmp_path / "runs" / "smoke" / "mnist_mlp" / "sgd").glob("*/metrics.json"))
    assert [path.parent.name for path in paths] == ["seed=0", "seed=1"]
    metrics = [json.loads(path.read_text()) for path in paths]
    assert [m["status"] for m in metrics] == ["completed", "completed"]
    assert [m["seed"] for m in metrics] == [0, 1]
    assert metrics[0]["test_loss"] != metrics[1]["test_loss"]
