"""Shared fixtures: where the real benchmark files live (tests that need them skip without)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``$ADAREC_TEST_DATA_DIR``, else ``shared/data`` beside the repository; skip if absent."""
    env = os.environ.get("ADAREC_TEST_DATA_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"benchmark data not found at {path} (set ADAREC_TEST_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def beauty_file(shared_data_dir: Path) -> Path:
    """The real Beauty.txt; skip if it is not there."""
    path = shared_data_dir / "Beauty.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path
