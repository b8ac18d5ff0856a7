"""``ifd catalog ingest``: DBN files -> NautilusTrader ParquetDataCatalog, staged then moved.

Every input file is validated and decoded before the catalog is touched. New rows are
written to a staging folder inside the catalog, merged with any overlapping files
(exact duplicate rows dropped, so re-ingesting a file adds nothing), then moved into
place file by file with ``os.replace``. A failure leaves the catalog as it was.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from nautilus_trader.core import nautilus_pyo3
from nautilus_trader.model.data import OrderBookDelta
from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog
from nautilus_trader.serialization.arrow.serializer import ArrowSerializer

from adapters.databento.dbn_files import DbnFile
from adapters.databento.dbn_files import instrument_symbols
from adapters.databento.dbn_files import open_dbn
from adapters.databento.loading import NautilusDbnLoader
from catalogs import tables
from catalogs.layout import DATA_DIR
from catalogs.layout import STAGING_PREFIX
from catalogs.layout import check_catalog_path
from catalogs.layout import file_interval
from catalogs.layout import file_name
from catalogs.layout import leaf_dir

ROW_GROUP_SIZE = 5_000  # NautilusTrader's catalog default


@dataclass
class IngestReport:
    """What one ingest read and wrote."""

    catalog: str
    files: list[dict] = field(default_factory=list)
    rows_written: dict[str, int] = field(default_factory=dict)
    duplicate_rows_skipped: int = 0
    records: int = 0
    seconds: float = 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "catalog": self.catalog,
            "files": self.files,
            "records": self.records,
            "rows_written": self.rows_written,
            "rows_written_total": sum(self.rows_written.values()),
            "duplicate_rows_skipped": self.duplicate_rows_skipped,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second),
        }


def ingest(
    paths: Iterable[Path | str],
    catalog_root: Path | str,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Load DBN files (definitions first) into the catalog at ``catalog_root``."""
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    root = check_catalog_path(Path(catalog_root), create=True)
    report = IngestReport(catalog=str(root))

    # Validate everything first: nothing is written unless every file is good.
    files = [open_dbn(p) for p in paths]
    files.sort(key=lambda f: f.schema != "definition")
    known = ParquetDataCatalog(str(root)).instruments() if (root / DATA_DIR).is_dir() else []
    loader = NautilusDbnLoader(known)
    defined = loader.known_symbols() | {
        symbol.decode() for f in files if f.schema == "definition" for symbol in f.records["raw_symbol"]
    }
    for dbn in files:
        if dbn.schema != "definition":
            loader.require_definitions(dbn, defined)

    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        pending: dict[str, list[pa.Table]] = defaultdict(list)
        for index, dbn in enumerate(files):
            say(f"loading {dbn.path.name} ({dbn.schema}, {dbn.record_count:,} records)")
            for rel, table in _load_tables(dbn, loader, staging / f"file{index}"):
                pending[rel].append(table)
            report.files.append(_file_entry(dbn))
            report.records += dbn.record_count
        say(f"writing {len(pending)} catalog folders")
        _commit(root, staging, pending, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _file_entry(dbn: DbnFile) -> dict:
    entry = {
        "path": str(dbn.path),
        "schema": dbn.schema,
        "records": dbn.record_count,
        "instruments": len(instrument_symbols(dbn)),
    }
    actions = dbn.action_counts()
    if actions:
        entry["actions"] = actions
    return entry


def _load_tables(dbn: DbnFile, loader: NautilusDbnLoader, scratch: Path) -> list[tuple[str, pa.Table]]:
    """Decode one file into Arrow tables keyed by their catalog folder (relative path)."""
    if dbn.schema == "definition":
        return _via_nautilus_writer(loader.load_definitions(dbn), scratch)
    if dbn.schema != "mbo":
        return _via_nautilus_writer(loader.load_market_data(dbn), scratch)

    deltas_by_id, trades = loader.load_mbo(dbn)
    out: list[tuple[str, pa.Table]] = []
    for deltas in deltas_by_id.values():
        identifier = deltas[0].instrument_id.value
        table = ArrowSerializer.serialize_batch(deltas, data_cls=nautilus_pyo3.OrderBookDelta)
        rel = leaf_dir(Path(), OrderBookDelta, identifier).as_posix()
        out.append((rel, tables.sort_by_ts_init(table)))
    out.extend(_via_nautilus_writer(trades, scratch))
    return out


def _via_nautilus_writer(objects: list, scratch: Path) -> list[tuple[str, pa.Table]]:
    """Serialize with NautilusTrader's own catalog writer into a scratch catalog, read back."""
    if not objects:
        return []
    scratch.mkdir(parents=True, exist_ok=True)
    ParquetDataCatalog(str(scratch)).write_data(objects)
    out = []
    for file in sorted((scratch / DATA_DIR).rglob("*.parquet")):
        rel = file.parent.relative_to(scratch).as_posix()
        out.append((rel, pq.read_table(file)))
        file.unlink()
    return out


def _commit(root: Path, staging: Path, pending: dict[str, list[pa.Table]], report: IngestReport) -> None:
    """Merge each folder's new rows with what the catalog holds, stage, then move into place."""
    moves: list[tuple[Path, Path, list[Path]]] = []
    writes = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for rel, new_tables in sorted(pending.items()):
            merged = _merge_leaf(root / rel, new_tables, report, rel)
            if merged is None:
                continue
            table, replaced = merged
            start, end = tables.ts_bounds(table)
            staged = staging / "out" / rel / file_name(start, end)
            staged.parent.mkdir(parents=True, exist_ok=True)
            writes.append(pool.submit(pq.write_table, table, staged, row_group_size=ROW_GROUP_SIZE))
            moves.append((staged, root / rel / staged.name, replaced))
        for write in writes:
            write.result()
    # Every file is complete on disk before any of them enters the catalog.
    for staged, target, replaced in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        for old in replaced:
            if old != target:
                old.unlink(missing_ok=True)


def _merge_leaf(
    leaf: Path,
    new_tables: list[pa.Table],
    report: IngestReport,
    rel: str,
) -> tuple[pa.Table, list[Path]] | None:
    """New rows for one folder, merged with overlapping existing files; None when nothing is new."""
    new = new_tables[0]
    for extra in new_tables[1:]:  # the same data given twice in one call counts once
        fresh = tables.without_rows_in(extra, new)
        report.duplicate_rows_skipped += extra.num_rows - fresh.num_rows
        new = tables.concat([new, fresh])
    new = tables.sort_by_ts_init(new)
    start, end = tables.ts_bounds(new)

    overlapping = []
    if leaf.is_dir():
        for file in sorted(leaf.glob("*.parquet")):
            interval = file_interval(file)
            if interval is None or (interval[0] <= end and start <= interval[1]):
                overlapping.append(file)
    if not overlapping:
        report.rows_written[rel] = new.num_rows
        return new, []

    existing = tables.concat([pq.read_table(f) for f in overlapping])
    fresh = tables.without_rows_in(new, existing)
    report.duplicate_rows_skipped += new.num_rows - fresh.num_rows
    if fresh.num_rows == 0:
        return None
    report.rows_written[rel] = fresh.num_rows
    return tables.sort_by_ts_init(tables.concat([existing, fresh])), overlapping
