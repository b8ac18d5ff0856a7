"""The run's market data from its catalog: the underlying future's trades and the options' trades.

Trades are decoded straight from the catalog's TradeTick Parquet files with
``catalogs.fixed_point`` (no ``TradeTick`` objects); only files whose time range (from the file
name) overlaps the run are read, so a catalog holding history days costs no more than the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import numpy as np
import pandas as pd

from catalogs.fixed_point import read_trade_arrays
from catalogs.layout import DATA_DIR
from catalogs.layout import file_interval
from ifd.evaluation.ticks import catalog_instruments
from ifd.evaluation.ticks import empty_trades
from ifd.evaluation.ticks import trade_folders

# ts_init (file names) follows ts_event by the feed latency: read files a little past the range.
FILE_MARGIN_NS = 60 * 1_000_000_000
TRADE_COLUMNS = ("ts_event", "price", "size", "aggressor_side")


@dataclass
class MarketData:
    """The underlying's trades (``ts_event, price``) and the options' trades (``instrument_id,
    ts_event, price, size, aggressor_side, kind, strike, multiplier``) within the run's range.
    ``available`` is False (and ``note`` says why) when the catalog could not be read."""

    available: bool
    underlying: str | None = None
    underlying_trades: pd.DataFrame = field(default_factory=lambda: empty_trades())
    option_trades: pd.DataFrame = field(default_factory=lambda: empty_trades())
    note: str = ""


def read_trades_in_range(leaf: Path, instrument_id: str, start_ns: int | None, end_ns: int | None) -> pd.DataFrame:
    """One instrument's trades with ``start_ns <= ts_event <= end_ns`` (open ends when None)."""
    lo = -(2**63) if start_ns is None else start_ns
    hi = 2**63 - 1 if end_ns is None else end_ns
    parts = []
    for path in sorted(leaf.glob("*.parquet")):
        interval = file_interval(path)
        if interval is not None and (interval[1] < lo or interval[0] > hi + FILE_MARGIN_NS):
            continue
        arrays = read_trade_arrays(path)
        keep = (arrays["ts_event"] >= lo) & (arrays["ts_event"] <= hi)
        if keep.any():
            parts.append(pd.DataFrame({c: arrays[c][keep] for c in TRADE_COLUMNS}))
    if not parts:
        return empty_trades()
    frame = pd.concat(parts, ignore_index=True).sort_values("ts_event", kind="stable", ignore_index=True)
    frame.insert(0, "instrument_id", instrument_id)
    return frame


def choose_underlying(instruments: pd.DataFrame, hints: list[str]) -> str | None:
    """The future to draw: the one the signals (``hints``: underlying raw symbols, most common
    first) or, failing that, most options name as underlying; else the first future."""
    futures = instruments[instruments["kind"] == "FUT"]
    if futures.empty:
        return None
    by_symbol = dict(zip(futures["raw_symbol"], futures["instrument_id"], strict=True))
    options = instruments[instruments["kind"].isin(["CALL", "PUT"])]
    ranked = list(hints) + options["underlying"].value_counts().index.astype(str).tolist()
    for symbol in ranked:
        if symbol in by_symbol:
            return by_symbol[symbol]
    return str(futures["instrument_id"].iloc[0])


def load_market_data(
    catalog: Path | None, start_ns: int | None, end_ns: int | None, underlying_hints: list[str],
) -> MarketData:
    """Read the run's trades from ``catalog``; a missing catalog gives ``available=False`` with a
    note (the report then shows signals without prices), a damaged one raises ``IfdError``."""
    if catalog is None:
        return MarketData(available=False, note="the run names no catalog")
    catalog = Path(catalog)
    if not (catalog / DATA_DIR).is_dir():
        return MarketData(available=False, note=f"catalog {catalog} is not there any more")
    instruments = catalog_instruments(catalog)
    folders = trade_folders(catalog)
    underlying = choose_underlying(instruments, underlying_hints)
    options = instruments[instruments["kind"].isin(["CALL", "PUT"])].set_index("instrument_id")

    future = empty_trades()
    if underlying is not None and underlying in folders:
        future = read_trades_in_range(folders[underlying], underlying, start_ns, end_ns)
    parts = [read_trades_in_range(folders[i], i, start_ns, end_ns) for i in options.index if i in folders]
    trades = pd.concat(parts, ignore_index=True) if parts else empty_trades()
    info = options.reindex(trades["instrument_id"])
    trades["kind"] = info["kind"].to_numpy()
    trades["strike"] = info["strike"].to_numpy(dtype=np.float64)
    trades["multiplier"] = info["multiplier"].to_numpy(dtype=np.float64)
    note = "" if underlying else f"catalog {catalog} holds no future to draw as the underlying"
    return MarketData(
        available=True, underlying=underlying, underlying_trades=future, option_trades=trades, note=note,
    )
