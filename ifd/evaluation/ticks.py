"""Trades and instruments read straight from a NautilusTrader catalog's Parquet files, vectorized
(the decoding itself is ``catalogs.fixed_point``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.instruments import FuturesContract
from nautilus_trader.model.instruments import OptionContract
from nautilus_trader.persistence.funcs import class_to_filename

from catalogs.fixed_point import decode_fixed_point  # noqa: F401  (re-exported)
from catalogs.fixed_point import read_trade_arrays
from catalogs.layout import DATA_DIR
from catalogs.layout import open_catalog
from ifd.errors import IfdError

AGGRESSOR_BUYER = 1
AGGRESSOR_SELLER = 2


def read_trades_file(path: Path) -> pd.DataFrame:
    """One TradeTick Parquet file as ``ts_event, price, size, aggressor_side`` (file order)."""
    arrays = read_trade_arrays(path)
    return pd.DataFrame({key: arrays[key] for key in ("ts_event", "price", "size", "aggressor_side")})


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
        return empty_trades()
    return pd.concat(frames, ignore_index=True)


def empty_trades() -> pd.DataFrame:
    """A trades frame (``read_trades``'s columns and types) with no rows."""
    return pd.DataFrame(
        {
            "instrument_id": pd.Series([], dtype=object),
            "ts_event": pd.Series([], dtype=np.int64),
            "price": pd.Series([], dtype=np.float64),
            "size": pd.Series([], dtype=np.float64),
            "aggressor_side": pd.Series([], dtype=np.int8),
        },
    )


def catalog_instruments(catalog: Path) -> pd.DataFrame:
    """The catalog's futures and options: ``instrument_id, kind ("CALL"/"PUT"/"FUT"), raw_symbol,
    underlying, strike, multiplier`` (from ``ParquetDataCatalog.instruments()``); ``IfdError``
    when the instrument files cannot be read."""
    try:
        instruments = open_catalog(Path(catalog)).instruments()
    except IfdError:
        raise
    except Exception as exc:  # a damaged instrument file: NautilusTrader's reader raises anything
        raise IfdError(f"{catalog}: instruments unreadable ({type(exc).__name__}: {exc})") from exc
    rows = []
    for instrument in instruments:
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
