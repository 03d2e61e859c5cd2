"""Shared fixtures: the suite's configuration, composed as run.py would, and the optional
offline copy of the real data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The read-only folder of real data sets kept next to the repository, if there is one."""
    candidate = Path(os.environ.get("LOSSGRAD_SHARED_DATA", REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    folder = shared_data_dir()
    if folder is None:
        pytest.skip("no shared data folder (set LOSSGRAD_SHARED_DATA to one)")
    return folder


@pytest.fixture
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "data-cache"
