"""Helpers for the Hydra configuration: resolvers and programmatic composition."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"


def run_name(optimizer: str, scheduler: str, overrides: str, seed: int) -> str:
    """The folder of one run under its experiment: ``<optimizer>[+<scheduler>]/<overrides>,
    seed=<seed>``, so that runs with different settings never share a folder."""
    method = optimizer if scheduler == "none" else f"{optimizer}+{scheduler}"
    settings = f"{overrides},seed={seed}" if overrides else f"seed={seed}"
    return f"{method}/{settings}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Composes the suite's configuration as ``run.py`` would, for tests and scripts."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []))
