"""A cache of decoded data sets, so that slow decoding (JPEG, text) happens once."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def cache_dir(cfg_data: DictConfig) -> Path:
    return Path(cfg_data.get("cache_dir") or "~/.cache/lossgrad").expanduser()


def load_or_build(cfg_data: DictConfig, key: str, build: Callable[[], Any]) -> Any:
    """Returns the object cached under ``key``, building and saving it first if needed."""
    path = cache_dir(cfg_data) / f"{key}.pt"
    if path.is_file():
        log.info("reading cached %s", path)
        return torch.load(path, weights_only=False)
    log.info("decoding data once; the result is cached in %s", path)
    value = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(value, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return value
