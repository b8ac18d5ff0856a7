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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> tuple[str, int]:
    """(host, port) of a real Redis on loopback: the configured one, or a private redis-server."""
    from tests.support import redis_server as rs

    host, port = rs.configured()
    if rs.answers(host, port):
        yield host, port
        return
    if not rs.available():
        message = f"no Redis at {host}:{port} and no redis-server binary (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    proc, port = rs.start_private(tmp_path_factory.mktemp("redis"))
    try:
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def small_session_catalog(tmp_path_factory) -> Path:
    """A generated 8-minute NQ session (4 strikes, 1 expiry, seed 5) ingested into a catalog."""
    from catalogs.ingest import ingest
    from ifd.scenario.generate import ScenarioConfig, generate_scenario

    root = tmp_path_factory.mktemp("small_session")
    generate_scenario(root / "scenario", ScenarioConfig(seed=5, strikes=4, expiries=1, minutes=8, rate=100))
    ingest([root / "scenario" / "definition.dbn.zst", root / "scenario" / "mbo.dbn.zst"], root / "catalog")
    return root / "catalog"
