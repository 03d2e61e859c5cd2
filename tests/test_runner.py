"""The shared runner: every experiment with every optimizer, resuming, divergence, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments import io
from experiments.config import CONFIG_DIR, compose
from experiments.tasks import Classification
from experiments.train import train

EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))
OPTIMIZERS = sorted(path.stem for path in (CONFIG_DIR / "optimizer").glob("*.yaml"))


def smoke_config(tmp_path: Path, *overrides: str):
    return compose(
        ["budget=smoke", "progress_bar=false", f"data.cache_dir={tmp_path / 'cache'}", *overrides]
    )


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_every_optimizer(tmp_path, experiment, optimizer):
    cfg = smoke_config(tmp_path, f"experiment={experiment}", f"optimizer={optimizer}")
    metrics = train(cfg, tmp_path / "run")
    assert metrics["status"] in ("completed", "diverged")
    assert metrics["epochs"] == (2 if metrics["status"] == "completed" else metrics["epochs"])
    for name in ("config.yaml", "metrics.json", "history.csv", "steps.csv"):
        assert (tmp_path / "run" / name).is_file(), name
    steps = io.read_csv(tmp_path / "run" / "steps.csv")
    assert len(steps) == metrics["steps"]


def test_outputs_hold_the_figures(tmp_path):
    cfg = smoke_config(tmp_path, "optimizer=sgd", "eval_train_at_end=true")
    metrics = train(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("train_loss", "test_loss", "test_acc", "epochs", "steps", "wall_time_s"):
        assert isinstance(saved[key], (int, float)), key
    for key in ("status", "seed", "git_commit", "device", "torch_version", "machine", "command"):
        assert key in saved, key
    assert saved["steps"] == 6 and saved["epochs"] == 2
    history = io.read_csv(tmp_path / "history.csv")
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert {"train_loss", "test_loss", "test_acc", "lr", "train_time_s"} <= set(history[0])
    assert "epochs: 2" in (tmp_path / "config.yaml").read_text()


def test_seed_makes_runs_repeatable(tmp_path):
    first = train(smoke_config(tmp_path, "optimizer=sgd"), tmp_path / "a")
    second = train(smoke_config(tmp_path, "optimizer=sgd"), tmp_path / "b")
    other = train(smoke_config(tmp_path, "optimizer=sgd", "seed=1"), tmp_path / "c")
    assert first["test_loss"] == second["test_loss"]
    assert first["test_loss"] != other["test_loss"]


def test_completed_run_is_skipped(tmp_path):
    cfg = smoke_config(tmp_path, "optimizer=sgd")
    train(cfg, tmp_path)
    (tmp_path / "history.csv").unlink()
    again = train(cfg, tmp_path)
    assert again["status"] == "completed"
    assert not (tmp_path / "history.csv").exists()


class InterruptedClassification(Classification):
    """Classification that raises KeyboardInterrupt at a chosen training step."""

    calls = 0
    interrupt_at = 5

    def loss(self, model, batch):
        if torch.is_grad_enabled():
            type(self).calls += 1
            if type(self).calls == self.interrupt_at:
                raise KeyboardInterrupt
        return super().loss(model, batch)


@pytest.mark.parametrize("optimizer", ["sgd", "lossgrad"])
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, optimizer):
    common = [f"optimizer={optimizer}", "epochs=3", "max_steps_per_epoch=4"]
    whole = train(smoke_config(tmp_path, *common), tmp_path / "whole")

    interrupted = [*common, f"task._target_={__name__}.InterruptedClassification"]
    InterruptedClassification.calls = 0
    with pytest.raises(KeyboardInterrupt):
        train(smoke_config(tmp_path, *interrupted), tmp_path / "resumed")
    status = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert status["status"] == "interrupted" and status["epochs"] == 1

    resumed = train(smoke_config(tmp_path, *common, "resume=true"), tmp_path / "resumed")
    for key in ("train_loss", "test_loss", "test_acc", "steps", "epochs", "final_lr"):
        assert resumed[key] == whole[key], key
    assert io.read_csv(tmp_path / "resumed" / "steps.csv") == io.read_csv(
        tmp_path / "whole" / "steps.csv"
    )


def test_diverging_run_is_recorded_and_does_not_raise(tmp_path):
    cfg = smoke_config(
        tmp_path,
        "optimizer=sgd",
        "optimizer.lr=1e30",
        "check_every=1",
        "model_init.weight_std=3.0",
    )
    metrics = train(cfg, tmp_path)
    assert metrics["status"] == "diverged"
    assert "loss" in metrics["error"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "diverged"


def test_failed_run_is_recorded_and_raised(tmp_path):
    cfg = smoke_config(tmp_path, "optimizer=sgd", "model.sizes=[784,10,3]")
    with pytest.raises(Exception):  # noqa: B017  (any error from the mismatched model)
        train(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "failed"
    assert saved["error"]


def test_scheduled_learning_rate_reaches_history(tmp_path):
    cfg = smoke_config(
        tmp_path,
        "experiment=fmnist_ae",
        "optimizer=sgd",
        "optimizer.lr=1.0",
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=0.5",
    )
    train(cfg, tmp_path)
    history = io.read_csv(tmp_path / "history.csv")
    assert [float(row["lr"]) for row in history] == [1.0, 0.5]


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    io.write_json(path, {"status": "completed"})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        io.write_json(path, {"status": Unserialisable()})
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_non_finite_values_are_written_as_null(tmp_path):
    io.write_json(tmp_path / "m.json", {"loss": float("nan"), "acc": 0.5})
    assert json.loads((tmp_path / "m.json").read_text()) == {"loss": None, "acc": 0.5}


def test_progress_is_logged_during_an_epoch_without_a_terminal(tmp_path, caplog):
    cfg = smoke_config(tmp_path, "optimizer=lossgrad", "check_every=1", "progress_log_s=1e-9")
    with caplog.at_level("INFO", logger="experiments.train"):
        train(cfg, tmp_path / "run")
    lines = [r.getMessage() for r in caplog.records if "left)" in r.getMessage()]
    # three steps per epoch at the smoke budget: lines after steps 1 and 2 of each epoch
    assert [line.split("  ")[1] for line in lines] == ["step 1/3", "step 2/3"] * 2
    assert all("loss " in line and "lr " in line for line in lines)

    caplog.clear()
    quiet = smoke_config(tmp_path, "optimizer=sgd", "check_every=1", "progress_log_s=null")
    with caplog.at_level("INFO", logger="experiments.train"):
        train(quiet, tmp_path / "quiet")
    assert not [r for r in caplog.records if "left)" in r.getMessage()]
