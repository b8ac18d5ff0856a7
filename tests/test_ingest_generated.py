"""Ingest of a generated multi-instrument chain: the parallel path equals the serial one."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from adapters.databento.dbn_files import decompress
from catalogs.ingest import ingest
from ifd.scenario.generate import ScenarioConfig
from ifd.scenario.generate import generate_scenario


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenario")
    generate_scenario(out, ScenarioConfig(seed=21, strikes=3, expiries=2, minutes=6, rate=120.0))
    return out


def catalog_tables(root: Path) -> dict[str, object]:
    return {
        str(f.parent.relative_to(root)): pq.read_table(f)
        for f in sorted((root / "data").rglob("*.parquet"))
    }


def test_parallel_ingest_writes_exactly_what_the_serial_one_does(scenario, tmp_path):
    files = [scenario / "definition.dbn.zst", scenario / "mbo.dbn.zst"]
    serial = ingest(files, tmp_path / "serial", workers=1)
    parallel = ingest(files, tmp_path / "parallel", workers=2, parallel_min_records=1)
    assert serial.rows_written == parallel.rows_written
    a, b = catalog_tables(tmp_path / "serial"), catalog_tables(tmp_path / "parallel")
    assert a.keys() == b.keys()
    assert len([k for k in a if k.startswith("data/order_book_deltas/")]) == 1 + 3 * 2 * 2
    for folder in a:
        assert a[folder].equals(b[folder]), folder
    assert not list((tmp_path / "parallel").glob(".ifd-staging-*"))


def test_uncompressed_dbn_ingests_like_zstd(scenario, tmp_path):
    """NautilusTrader 1.231 reads only zstd DBN; plain .dbn files are compressed on the way in."""
    plain_def = tmp_path / "definition.dbn"
    plain_mbo = tmp_path / "mbo.dbn"
    plain_def.write_bytes(decompress(scenario / "definition.dbn.zst"))
    plain_mbo.write_bytes(decompress(scenario / "mbo.dbn.zst"))
    ingest([plain_def, plain_mbo], tmp_path / "plain")
    ingest([scenario / "definition.dbn.zst", scenario / "mbo.dbn.zst"], tmp_path / "zstd")
    a, b = catalog_tables(tmp_path / "plain"), catalog_tables(tmp_path / "zstd")
    assert a.keys() == b.keys()
    assert all(a[k].equals(b[k]) for k in a)


def test_worker_failure_leaves_the_catalog_untouched(scenario, tmp_path, monkeypatch):
    import catalogs.mbo_workers as workers

    real = workers.stage_mbo

    def fail_in_child(dbn, precisions, out_dir):
        if out_dir.name == "part1":
            raise RuntimeError("disk full")
        return real(dbn, precisions, out_dir)

    monkeypatch.setattr(workers, "stage_mbo", fail_in_child)
    root = tmp_path / "catalog"
    ingest([scenario / "definition.dbn.zst"], root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    from ifd.errors import IfdError

    with pytest.raises(IfdError, match="disk full") as err:
        ingest([scenario / "mbo.dbn.zst"], root, workers=2, parallel_min_records=1)
    assert "mbo.dbn.zst" in str(err.value)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
