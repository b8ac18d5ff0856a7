"""Shared fixtures: the real Databento samples beside the project, and temp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "databento"


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"real Databento sample missing: {path}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + " (CI=true needs ../shared/data/databento)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real DBN samples; fails under CI=true when missing, skips elsewhere."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def real_file(shared_data: Path):
    """Return a function that resolves one sample file below the shared data root."""

    def resolve(relative: str) -> Path:
        return _require(shared_data / relative)

    return resolve
