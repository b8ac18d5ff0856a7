"""Turn validated DBN files into NautilusTrader objects with ``DatabentoDataLoader``.

One loader instance is used per ingest so price precisions learned from definitions
(or from instruments already in the catalog) resolve the market-data files that follow.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zstandard
from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.instruments import Instrument

from adapters.databento.dbn_files import DbnFile
from ifd.errors import IfdError

# MBO actions that NautilusTrader does not turn into OrderBookDelta rows (not book changes).
NON_BOOK_ACTIONS = (ord("T"), ord("F"))


def book_rows(records: np.ndarray) -> np.ndarray:
    """Mask of the MBO records NautilusTrader maps to one ``OrderBookDelta`` each (A/C/M/R/N)."""
    action = records["action"].view(np.uint8)
    return (action != NON_BOOK_ACTIONS[0]) & (action != NON_BOOK_ACTIONS[1])


def group_by_instrument(records: np.ndarray, objects: list) -> dict[int, list]:
    """Split ``objects`` (one per record, same order) by numeric instrument id, each in ts_recv order."""
    ids = records["instrument_id"]
    order = np.argsort(ids, kind="stable")
    ts = records["ts_recv"][order]
    sorted_ids = ids[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    same_instrument = sorted_ids[1:] == sorted_ids[:-1]
    if np.any(same_instrument & (ts[1:] < ts[:-1])):  # a file not in ts_recv order
        order = np.lexsort((np.arange(len(ids)), records["ts_recv"], ids))
    grouped: dict[int, list] = {}
    for chunk in np.split(order, bounds):
        if len(chunk):
            grouped[int(ids[chunk[0]])] = [objects[i] for i in chunk.tolist()]
    return grouped


class NautilusDbnLoader:
    """Wraps one ``DatabentoDataLoader`` and knows which raw symbols it can price."""

    def __init__(self, known_instruments: Iterable[Instrument] = (), precisions: dict[str, int] | None = None) -> None:
        self._loader = DatabentoDataLoader()
        for instrument in known_instruments:
            self._loader.set_price_precision(instrument.raw_symbol.value, instrument.price_precision)
        for symbol, precision in (precisions or {}).items():
            self._loader.set_price_precision(symbol, precision)

    def precisions(self) -> dict[str, int]:
        return dict(self._loader.get_price_precisions())

    def known_symbols(self) -> set[str]:
        return set(self._loader.get_price_precisions())

    def load_definitions(self, dbn: DbnFile) -> list[Instrument]:
        try:
            with _zstd_path(dbn) as path:
                return list(self._loader.from_dbn_file(path))
        except Exception as exc:
            raise IfdError(f"{dbn.path}: NautilusTrader cannot decode definitions ({exc})") from None

    @staticmethod
    def require_definitions(dbn: DbnFile, defined: set[str]) -> None:
        """Refuse market data whose instruments have no definition (no price precision)."""
        missing = sorted(set(dbn.raw_symbols) - defined)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise IfdError(
                f"{dbn.path}: no instrument definitions for {shown} "
                "(ingest the definition file first or in the same command)",
            )

    def load_mbo_deltas(self, dbn: DbnFile) -> dict[int, list]:
        """Pyo3 ``OrderBookDelta`` lists keyed by numeric instrument id, each in ``ts_init`` order.

        The fast pyo3 path; deltas are grouped by the instrument ids of the same records
        (NautilusTrader maps each non-T/F MBO record to one delta, in file order).
        """
        try:
            with _zstd_path(dbn) as path:
                deltas = self._loader.from_dbn_file(path, as_legacy_cython=False)
        except Exception as exc:
            raise IfdError(f"{dbn.path}: NautilusTrader cannot decode MBO ({exc})") from None
        book = dbn.records[book_rows(dbn.records)]
        if len(book) != len(deltas):
            raise IfdError(
                f"{dbn.path}: NautilusTrader decoded {len(deltas)} book deltas from {len(book)} book records",
            )
        return group_by_instrument(book, deltas)

    def load_mbo_trades(self, dbn: DbnFile) -> list[TradeTick]:
        """NautilusTrader's own ``TradeTick`` decoding of the file's 'T' records only."""
        trade_rows = dbn.records["action"] == b"T"
        if not trade_rows.any():
            return []
        subset = dbn.records[trade_rows]
        with tempfile.TemporaryDirectory(prefix="ifd-trades-") as tmp:
            path = write_subset(dbn, subset, Path(tmp) / "trades.mbo.dbn.zst")
            try:
                loaded = self._loader.from_dbn_file(path, include_trades=True)
            except Exception as exc:
                raise IfdError(f"{dbn.path}: NautilusTrader cannot decode MBO trades ({exc})") from None
        return [obj for obj in loaded if isinstance(obj, TradeTick)]

    def load_market_data(self, dbn: DbnFile) -> list:
        """Trades, MBP-1/TBBO quotes with their trades, or statistics, as NautilusTrader data."""
        try:
            with _zstd_path(dbn) as path:
                if dbn.schema == "statistics":
                    return list(self._loader.from_dbn_file(path, as_legacy_cython=False))
                include_trades = dbn.schema in ("mbp-1", "tbbo")
                return list(self._loader.from_dbn_file(path, include_trades=include_trades))
        except Exception as exc:
            raise IfdError(f"{dbn.path}: NautilusTrader cannot decode {dbn.schema} ({exc})") from None


def write_subset(dbn: DbnFile, records: np.ndarray, target: Path) -> Path:
    """Write some of a file's records as a (fast, lightly compressed) zstd DBN file with the same metadata."""
    payload = dbn.header + records.tobytes()
    target.write_bytes(zstandard.ZstdCompressor(level=-1).compress(payload))
    return target


class _zstd_path:
    """The file's own path, or a temporary zstd copy: NautilusTrader 1.231 reads only zstd DBN."""

    def __init__(self, dbn: DbnFile) -> None:
        self._dbn = dbn
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if self._dbn.compressed:
            return self._dbn.path
        self._tmp = tempfile.TemporaryDirectory(prefix="ifd-dbn-")
        target = Path(self._tmp.name) / (self._dbn.path.name + ".zst")
        target.write_bytes(zstandard.ZstdCompressor(level=1).compress(self._dbn.path.read_bytes()))
        return target

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
