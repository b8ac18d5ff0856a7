"""Large MBO files on several cores: each worker process loads some instruments' records.

NautilusTrader's DBN decoding and Arrow encoding hold the GIL, so threads do not help.
The validated records are split by instrument into balanced groups, each written as a DBN
file with the original metadata; forked workers and this process then run the same
``DatabentoDataLoader`` path on one group each and write staged Parquet files.
"""

from __future__ import annotations

import io
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
import warnings
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from nautilus_trader.core import nautilus_pyo3
from nautilus_trader.model.data import OrderBookDelta

from adapters.databento.dbn_files import DbnFile
from adapters.databento.loading import NautilusDbnLoader
from adapters.databento.loading import write_subset
from catalogs import tables
from catalogs.layout import leaf_dir
from catalogs.serialize import serialize_objects
from ifd.errors import IfdError

ROW_GROUP_SIZE = 5_000  # NautilusTrader's catalog default
# Dictionary encoding buys ~10% size on book data and costs half the write time.
PARQUET_OPTIONS = {"row_group_size": ROW_GROUP_SIZE, "use_dictionary": False}


@dataclass(frozen=True)
class StagedFile:
    """A complete Parquet file in the staging folder, ready to move into the catalog."""

    path: Path
    rows: int
    start: int
    end: int


def deltas_table(deltas: list) -> pa.Table:
    """NautilusTrader's Arrow encoding of pyo3 deltas already in ``ts_init`` order.

    (``ArrowSerializer.serialize_batch`` would re-sort them with a Python key function.)
    """
    batch = nautilus_pyo3.book_deltas_to_arrow_record_batch_bytes(deltas)
    return pa.ipc.open_stream(io.BytesIO(batch)).read_all()


def _stage(table: pa.Table, out_dir: Path, writer: ThreadPoolExecutor, pending: list) -> StagedFile:
    # Flat staging folder (one mkdir): the catalog name is given when the file is moved.
    start, end = tables.ts_bounds(table)
    path = out_dir / f"{len(pending)}.parquet"
    pending.append(writer.submit(pq.write_table, table, path, **PARQUET_OPTIONS))
    return StagedFile(path=path, rows=table.num_rows, start=start, end=end)


def stage_mbo(dbn: DbnFile, precisions: dict[str, int], out_dir: Path) -> dict[str, StagedFile]:
    """Load one MBO file's book deltas and trades; write one staged Parquet file per folder."""
    loader = NautilusDbnLoader(precisions=precisions)
    staged: dict[str, StagedFile] = {}
    pending: list = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1) as writer:  # Parquet writes release the GIL
        for deltas in loader.load_mbo_deltas(dbn).values():
            rel = leaf_dir(Path(), OrderBookDelta, deltas[0].instrument_id.value).as_posix()
            staged[rel] = _stage(deltas_table(deltas), out_dir, writer, pending)
        for rel, source in serialize_objects(loader.load_mbo_trades(dbn)):
            staged[rel] = _stage(source(), out_dir, writer, pending)
        for future in pending:
            future.result()
    return staged


# Each instrument costs about as much fixed work (files, Arrow batches) as this many records.
INSTRUMENT_COST_RECORDS = 5_000


def balanced_groups(instrument_ids: np.ndarray, n: int) -> list[np.ndarray]:
    """Split instruments into ``n`` groups of about equal work (largest first, greedy)."""
    ids, counts = np.unique(instrument_ids, return_counts=True)
    loads = [0] * n
    groups: list[list[int]] = [[] for _ in range(n)]
    for i in np.argsort(-counts, kind="stable"):
        k = loads.index(min(loads))
        groups[k].append(int(ids[i]))
        loads[k] += int(counts[i]) + INSTRUMENT_COST_RECORDS
    return [np.array(g, dtype=instrument_ids.dtype) for g in groups if g]


def _stage_group(dbn: DbnFile, group: np.ndarray, precisions: dict[str, int], out_dir: Path) -> dict[str, StagedFile]:
    """Stage the records of one instrument group, via a DBN file of just those records."""
    records = dbn.records[np.isin(dbn.records["instrument_id"], group)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_subset(dbn, records, out_dir / "part.mbo.dbn.zst")
    return stage_mbo(replace(dbn, path=path, records=records, compressed=True), precisions, out_dir)


def _child(dbn: DbnFile, group: np.ndarray, precisions: dict[str, int], out_dir: Path, conn) -> None:
    """Forked worker: stage its instruments and send the result (or the error) back."""
    try:
        conn.send(("ok", _stage_group(dbn, group, precisions, out_dir)))
    except BaseException as exc:  # reported by the parent as a one-line error
        conn.send(("error", str(exc)))
    finally:
        conn.close()


def stage_mbo_parallel(
    dbn: DbnFile,
    precisions: dict[str, int],
    out_dir: Path,
    workers: int,
) -> dict[str, StagedFile]:
    """``stage_mbo`` split by instrument over ``workers`` processes (this one included)."""
    groups = balanced_groups(dbn.records["instrument_id"], workers)
    if len(groups) < 2:
        return stage_mbo(dbn, precisions, out_dir)
    ctx = multiprocessing.get_context("fork")  # children inherit the imported modules and records
    children = []
    for index, group in enumerate(groups[1:], start=1):
        receive, send = ctx.Pipe(duplex=False)
        with warnings.catch_warnings():
            # Python warns on fork with threads alive; here they are only numpy/Arrow pool threads
            # idling in their own libraries, and the child runs only the DBN decoder and Parquet.
            warnings.simplefilter("ignore", DeprecationWarning)
            child = ctx.Process(target=_child, args=(dbn, group, precisions, out_dir / f"part{index}", send))
            child.start()
        send.close()
        children.append((child, receive))

    staged = _stage_group(dbn, groups[0], precisions, out_dir / "part0")
    errors = []
    for child, receive in children:
        try:
            status, result = receive.recv()
        except EOFError:
            status, result = "error", f"worker process exited with code {child.exitcode}"
        child.join()
        if status == "ok":
            staged.update(result)
        else:
            errors.append(result)
    if errors:
        raise IfdError(f"{dbn.path}: {errors[0]}")
    return staged
