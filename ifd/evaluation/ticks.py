"""Trades and instruments read straight from a NautilusTrader catalog's Parquet files, vectorized.

``TradeTick`` files (``<catalog>/data/trade_tick/<instrument_id>/*.parquet``) hold ``price``
and ``size`` as Arrow ``fixed_size_binary`` values: NautilusTrader's fixed-point raw integers,
little-endian. In this build (``FIXED_PRECISION_BYTES == 16``) they are signed 128-bit
integers with ``FIXED_PRECISION == 16`` decimals; a standard-precision build stores 64-bit
integers with 9 decimals. Both are decoded here with numpy, without building ``TradeTick``
objects (``ParquetDataCatalog.query`` gives the same values, slowly, for a whole chain).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.instruments import FuturesContract
from nautilus_trader.model.instruments import OptionContract
from nautilus_trader.model.objects import FIXED_PRECISION
from nautilus_trader.persistence.funcs import class_to_filename

from catalogs.layout import DATA_DIR
from catalogs.layout import open_catalog
from ifd.errors import IfdError

TRADE_COLUMNS = ["price", "size", "aggressor_side", "ts_event"]
# Arrow byte width of a fixed-point value -> decimals of its raw integer.
_DECIMALS_BY_WIDTH = {16: FIXED_PRECISION, 8: 9}
AGGRESSOR_BUYER = 1
AGGRESSOR_SELLER = 2


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
    if width not in _DECIMALS_BY_WIDTH or not pa.types.is_fixed_size_binary(array.type):
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
    values = raw / float(10 ** _DECIMALS_BY_WIDTH[width])
    return np.round(values, precision) if precision is not None else values


def _meta_int(metadata: dict[bytes, bytes] | None, key: str) -> int | None:
    if not metadata or key.encode() not in metadata:
        return None
    try:
        return int(metadata[key.encode()])
    except ValueError:
        return None


def read_trades_file(path: Path) -> pd.DataFrame:
    """One TradeTick Parquet file as ``ts_event, price, size, aggressor_side`` (file order)."""
    try:
        table = pq.read_table(path, columns=TRADE_COLUMNS)
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise IfdError(f"{path}: not a NautilusTrader TradeTick file ({exc})") from exc
    meta = table.schema.metadata
    return pd.DataFrame(
        {
            "ts_event": table.column("ts_event").to_numpy().astype(np.int64),
            "price": decode_fixed_point(table.column("price"), _meta_int(meta, "price_precision")),
            "size": decode_fixed_point(table.column("size"), _meta_int(meta, "size_precision")),
            "aggressor_side": table.column("aggressor_side").to_numpy().astype(np.int8),
        },
    )


def trade_folders(catalog: Path) -> dict[str, Path]:
    """Instrument id -> its TradeTick folder (the id from the files' metadata, else the folder name)."""
    root = Path(catalog) / DATA_DIR / class_to_filename(TradeTick)
    out: dict[str, Path] = {}
    if not root.is_dir():
        return out
    for leaf in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(leaf.glob("*.parquet"))
        if not files:
            continue
        meta = pq.read_schema(files[0]).metadata or {}
        name = meta.get(b"instrument_id", leaf.name.encode()).decode()
        out[name] = leaf
    return out


def read_trades(catalog: Path, instrument_ids: list[str] | None = None) -> pd.DataFrame:
    """Trades of the given instruments (all when None): ``instrument_id, ts_event, price, size,
    aggressor_side``, per instrument in ``ts_event`` order (ties keep file order)."""
    folders = trade_folders(catalog)
    wanted = folders if instrument_ids is None else {i: folders[i] for i in instrument_ids if i in folders}
    frames = []
    for instrument_id, leaf in wanted.items():
        parts = [read_trades_file(f) for f in sorted(leaf.glob("*.parquet"))]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        frame = frame.sort_values("ts_event", kind="stable", ignore_index=True)
        frame.insert(0, "instrument_id", instrument_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(
            {
                "instrument_id": pd.Series([], dtype=object),
                "ts_event": pd.Series([], dtype=np.int64),
                "price": pd.Series([], dtype=np.float64),
                "size": pd.Series([], dtype=np.float64),
                "aggressor_side": pd.Series([], dtype=np.int8),
            },
        )
    return pd.concat(frames, ignore_index=True)


def catalog_instruments(catalog: Path) -> pd.DataFrame:
    """The catalog's futures and options: ``instrument_id, kind ("CALL"/"PUT"/"FUT"), raw_symbol,
    underlying, strike, multiplier`` (from ``ParquetDataCatalog.instruments()``)."""
    rows = []
    for instrument in open_catalog(Path(catalog)).instruments():
        if isinstance(instrument, OptionContract):
            kind = "CALL" if int(instrument.option_kind) == 1 else "PUT"
            underlying, strike = str(instrument.underlying), float(instrument.strike_price)
        elif isinstance(instrument, FuturesContract):
            kind, underlying, strike = "FUT", "", 0.0
        else:
            continue
        rows.append(
            {
                "instrument_id": instrument.id.value,
                "kind": kind,
                "raw_symbol": instrument.raw_symbol.value,
                "underlying": underlying,
                "strike": strike,
                "multiplier": float(instrument.multiplier),
            },
        )
    columns = ["instrument_id", "kind", "raw_symbol", "underlying", "strike", "multiplier"]
    # A multi-day catalog holds one definition per instrument and day: keep one row each.
    return pd.DataFrame(rows, columns=columns).drop_duplicates("instrument_id", keep="last", ignore_index=True)
