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
from nautilus_trader.persistence.catalog.parquet import ParquetDataCatalog

from adapters.databento.dbn_files import DbnFile
from adapters.databento.dbn_files import instrument_symbols
from adapters.databento.dbn_files import open_dbn
from adapters.databento.loading import NautilusDbnLoader
from catalogs import tables
from catalogs.mbo_workers import PARQUET_OPTIONS
from catalogs.mbo_workers import StagedFile
from catalogs.mbo_workers import stage_mbo
from catalogs.mbo_workers import stage_mbo_parallel
from catalogs.serialize import TableSource
from catalogs.serialize import serialize_objects
from catalogs.layout import DATA_DIR
from catalogs.layout import STAGING_PREFIX
from catalogs.layout import check_catalog_path
from catalogs.layout import file_interval
from catalogs.layout import file_name

PARALLEL_MIN_RECORDS = 200_000  # smaller MBO files are not worth forking for


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
    workers: int | None = None,
    parallel_min_records: int = PARALLEL_MIN_RECORDS,
) -> IngestReport:
    """Load DBN files (definitions first) into the catalog at ``catalog_root``.

    MBO files of at least ``parallel_min_records`` records are loaded by ``workers``
    processes (default: one per CPU, at most 4).
    """
    workers = workers or min(os.cpu_count() or 1, 4)
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
        pending: dict[str, list[Source]] = defaultdict(list)
        for index, dbn in enumerate(files):
            say(f"loading {dbn.path.name} ({dbn.schema}, {dbn.record_count:,} records)")
            if dbn.schema == "mbo":
                scratch = staging / f"mbo{index}"
                n = workers if dbn.record_count >= parallel_min_records else 1
                if n > 1:
                    staged = stage_mbo_parallel(dbn, loader.precisions(), scratch, n)
                else:
                    staged = stage_mbo(dbn, loader.precisions(), scratch)
                for rel, file in staged.items():
                    pending[rel].append(file)
            else:
                load = loader.load_definitions if dbn.schema == "definition" else loader.load_market_data
                for rel, source in serialize_objects(load(dbn)):
                    pending[rel].append(source)
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


Source = StagedFile | TableSource


def _commit(root: Path, staging: Path, pending: dict[str, list[Source]], report: IngestReport) -> None:
    """Merge each folder's new rows with what the catalog holds, stage, then move into place."""
    moves: list[tuple[Path, Path, list[Path]]] = []
    writes = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for rel, sources in sorted(pending.items()):
            leaf = root / rel
            first = sources[0]
            if len(sources) == 1 and isinstance(first, StagedFile) and not _overlapping(leaf, first.start, first.end):
                report.rows_written[rel] = first.rows
                moves.append((first.path, leaf / file_name(first.start, first.end), []))
                continue
            new_tables = [pq.read_table(s.path) if isinstance(s, StagedFile) else s() for s in sources]
            merged = _merge_leaf(leaf, new_tables, report, rel)
            if merged is None:
                continue
            table, replaced = merged
            start, end = tables.ts_bounds(table)
            staged = staging / "out" / rel / file_name(start, end)
            staged.parent.mkdir(parents=True, exist_ok=True)
            writes.append(pool.submit(pq.write_table, table, staged, **PARQUET_OPTIONS))
            moves.append((staged, leaf / staged.name, replaced))
        for write in writes:
            write.result()
    # Every file is complete on disk before any of them enters the catalog.
    for staged, target, replaced in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        for old in replaced:
            if old != target:
                old.unlink(missing_ok=True)


def _overlapping(leaf: Path, start: int, end: int) -> list[Path]:
    """Catalog files in ``leaf`` whose time range meets [start, end] (unnamed files count)."""
    if not leaf.is_dir():
        return []
    out = []
    for file in sorted(leaf.glob("*.parquet")):
        interval = file_interval(file)
        if interval is None or (interval[0] <= end and start <= interval[1]):
            out.append(file)
    return out


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
    overlapping = _overlapping(leaf, *tables.ts_bounds(new))
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
