"""Train one paper experiment with one optimizer; the configuration lives in conf/.

python run.py                                          # MNIST MLP with LOSSGRAD
python run.py experiment=cifar_cnn optimizer=sgd optimizer.lr=0.01 epochs=5
python run.py -m experiment=cifar_cnn optimizer.c=1.01,1.05,1.1   # a sweep
python run.py budget=smoke                             # a few steps on synthetic data
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments.config import register_resolvers

log = logging.getLogger("run")
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict | None:
    from datasets import DataNotFoundError
    from experiments.train import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return train(cfg, run_dir)
    except (ValueError, DataNotFoundError) as error:
        log.error("%s", error)
        if in_sweep:
            return None
        sys.exit(2)
    except Exception:
        log.exception("run failed; see %s", run_dir / "metrics.json")
        if in_sweep:
            return None
        sys.exit(1)


if __name__ == "__main__":
    main()
