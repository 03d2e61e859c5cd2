"""Short runs on the real data sets, when an offline copy of them is at hand."""

from __future__ import annotations

import pytest

from experiments.config import compose
from experiments.train import train


def test_one_epoch_of_mnist_with_lossgrad_from_a_tiny_step(shared_data, tmp_path):
    cfg = compose(
        [
            "experiment=mnist_mlp",
            "optimizer=lossgrad",
            "optimizer.lr=1e-4",
            "epochs=1",
            f"data.root={shared_data}",
            "eval_train_at_end=false",
            "progress_bar=false",
        ]
    )
    metrics = train(cfg, tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["test_acc"] >= 0.90
    assert metrics["final_lr"] > 1e-3  # h grew by orders of magnitude from 1e-4


@pytest.mark.slow
def test_small_cnn_learns_on_the_cifar_copy(shared_data, tmp_path):
    cfg = compose(
        [
            "experiment=cifar_cnn",
            "optimizer=lossgrad",
            "optimizer.lr=0.1",
            "epochs=1",
            "max_steps=150",
            f"data.root={shared_data}",
            "eval_train_at_end=false",
            "progress_bar=false",
        ]
    )
    metrics = train(cfg, tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["test_acc"] > 0.2
