"""NautilusTrader's fixed-point Price/Quantity columns and TradeTick files, decoded with numpy.

``TradeTick`` Parquet files (``<catalog>/data/trade_tick/<instrument_id>/*.parquet``) hold
``price`` and ``size`` as Arrow ``fixed_size_binary`` raw integers, little-endian: signed
128-bit with 16 decimals in the high-precision build NautilusTrader ships for Linux
(``FIXED_PRECISION``), signed 64-bit with 9 decimals in a standard build. Decoding them here
avoids building ``TradeTick`` objects; tests check the values equal ``ParquetDataCatalog.query``.
No NautilusTrader import, so research code can use it without the engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ifd.errors import IfdError

TRADE_COLUMNS = ["price", "size", "aggressor_side", "ts_event"]
# Arrow byte width of a fixed-point value -> decimals of its raw integer.
DECIMALS_BY_WIDTH = {16: 16, 8: 9}


def decode_fixed_point(array: pa.Array | pa.ChunkedArray, precision: int | None = None) -> np.ndarray:
    """Float values of a ``fixed_size_binary`` column of NautilusTrader raw fixed-point integers.

    128-bit values are read as two little-endian 64-bit words (low unsigned, high signed);
    the result is rounded to ``precision`` decimals when given (the Parquet file's
    ``price_precision`` / ``size_precision``), which removes the float conversion's last-bit
    noise and gives the same doubles as ``Price``/``Quantity.as_double``.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], array.type)
    width = getattr(array.type, "byte_width", None)
    if width not in DECIMALS_BY_WIDTH or not pa.types.is_fixed_size_binary(array.type):
        raise ValueError(f"not a NautilusTrader fixed-point column: {array.type}")
    n = len(array)
    if n == 0:
        return np.empty(0, dtype=np.float64)
    data = array.buffers()[1]
    if width == 16:
        words = np.frombuffer(data, dtype="<u8")[2 * array.offset : 2 * (array.offset + n)]
        low = words[0::2].astype(np.float64)
        high = words[1::2].view("<i8").astype(np.float64)
        raw = high * 18446744073709551616.0 + low
    else:
        raw = np.frombuffer(data, dtype="<i8")[array.offset : array.offset + n].astype(np.float64)
    values = raw / float(10 ** DECIMALS_BY_WIDTH[width])
    return np.round(values, precision) if precision is not None else values


def _meta_int(metadata: dict[bytes, bytes] | None, key: str) -> int | None:
    if not metadata or key.encode() not in metadata:
        return None
    try:
        return int(metadata[key.encode()])
    except ValueError:
        return None


def read_trade_arrays(path: Path | str) -> dict[str, np.ndarray | str]:
    """One TradeTick Parquet file as numpy arrays (file order) and its ``instrument_id``."""
    try:
        table = pq.read_table(path, columns=TRADE_COLUMNS)
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise IfdError(f"{path}: not a NautilusTrader TradeTick file ({exc})") from exc
    meta = table.schema.metadata or {}
    return {
        "instrument_id": meta.get(b"instrument_id", b"").decode(),
        "ts_event": table.column("ts_event").to_numpy().astype(np.int64),
        "price": decode_fixed_point(table.column("price"), _meta_int(meta, "price_precision")),
        "size": decode_fixed_point(table.column("size"), _meta_int(meta, "size_precision")),
        "aggressor_side": table.column("aggressor_side").to_numpy().astype(np.int8),
    }
