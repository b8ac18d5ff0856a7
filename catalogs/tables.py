"""Arrow table helpers for catalog writes: stable ts ordering and exact-row de-duplication."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def sort_by_ts_init(table: pa.Table) -> pa.Table:
    """Stable sort on ``ts_init`` (keeps the feed order of records sharing a timestamp)."""
    ts = table.column("ts_init").to_numpy()
    if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])):
        return table
    return table.take(pa.array(np.argsort(ts, kind="stable")))


def concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables of one data type, keeping the first table's schema metadata."""
    first = tables[0]
    same = [t.replace_schema_metadata(first.schema.metadata) for t in tables]
    return pa.concat_tables(same).combine_chunks()


def _column_array(column: pa.ChunkedArray) -> np.ndarray | None:
    """A fixed-width numpy view of one column, or None where the type is not fixed-width."""
    array = column.combine_chunks()
    if pa.types.is_fixed_size_binary(array.type):
        width = array.type.byte_width
        buffer = np.frombuffer(array.buffers()[1], dtype=np.uint8)
        start = array.offset * width
        return buffer[start : start + len(array) * width].view(f"V{width}")
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        return array.to_numpy(zero_copy_only=False)
    return None


def row_keys(table: pa.Table) -> list:
    """One hashable key per row covering every column (bytes where the row is fixed-width)."""
    arrays = [_column_array(table.column(i)) for i in range(table.num_columns)]
    if all(a is not None for a in arrays):
        packed = np.empty(
            table.num_rows,
            dtype=[(f"c{i}", a.dtype) for i, a in enumerate(arrays)],
        )
        for i, a in enumerate(arrays):
            packed[f"c{i}"] = a
        return packed.view(f"V{packed.dtype.itemsize}").tolist()
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*columns, strict=True))


def without_rows_in(table: pa.Table, existing: pa.Table) -> pa.Table:
    """Rows of ``table`` whose exact content is not already in ``existing``."""
    if existing.num_rows == 0 or table.num_rows == 0:
        return table
    seen = set(row_keys(existing))
    keep = np.fromiter((key not in seen for key in row_keys(table)), dtype=bool, count=table.num_rows)
    return table.filter(pa.array(keep))


def ts_bounds(table: pa.Table) -> tuple[int, int]:
    ts = table.column("ts_init")
    bounds = pc.min_max(ts)
    return int(bounds["min"].as_py()), int(bounds["max"].as_py())
