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
from adapters.databento.dbn_files import decompress
from ifd.errors import IfdError

# MBO actions that NautilusTrader turns into OrderBookDelta rows (T and F are not book changes).
BOOK_ACTIONS = (b"A", b"C", b"M", b"R")


class NautilusDbnLoader:
    """Wraps one ``DatabentoDataLoader`` and knows which raw symbols it can price."""

    def __init__(self, known_instruments: Iterable[Instrument] = ()) -> None:
        self._loader = DatabentoDataLoader()
        for instrument in known_instruments:
            self._loader.set_price_precision(instrument.raw_symbol.value, instrument.price_precision)

    def known_symbols(self) -> set[str]:
        return set(self._loader.get_price_precisions())

    def load_definitions(self, dbn: DbnFile) -> list[Instrument]:
        try:
            return list(self._loader.from_dbn_file(dbn.path))
        except Exception as exc:
            raise IfdError(f"{dbn.path}: NautilusTrader cannot decode definitions ({exc})") from None

    def require_definitions(self, dbn: DbnFile, defined: set[str]) -> None:
        """Refuse market data whose instruments have no definition (no price precision)."""
        missing = sorted(set(dbn.raw_symbols) - defined)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise IfdError(
                f"{dbn.path}: no instrument definitions for {shown} "
                "(ingest the definition file first or in the same command)",
            )

    def load_mbo(self, dbn: DbnFile) -> tuple[dict[int, list], list[TradeTick]]:
        """Return pyo3 ``OrderBookDelta`` lists keyed by numeric instrument id, and the trades.

        Deltas come from the fast pyo3 path; they are grouped by the instrument ids read
        from the same records (one delta per A/C/M/R record, as NautilusTrader maps MBO).
        Trades are NautilusTrader's own ``TradeTick`` decoding of the file's 'T' records.
        """
        try:
            deltas = self._loader.from_dbn_file(dbn.path, as_legacy_cython=False)
        except Exception as exc:
            raise IfdError(f"{dbn.path}: NautilusTrader cannot decode MBO ({exc})") from None
        records = dbn.records
        book_rows = np.isin(records["action"], BOOK_ACTIONS)
        ids = records["instrument_id"][book_rows]
        if len(ids) != len(deltas):
            raise IfdError(
                f"{dbn.path}: NautilusTrader decoded {len(deltas)} book deltas "
                f"from {len(ids)} A/C/M/R records",
            )
        grouped: dict[int, list] = {}
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
        for chunk in np.split(order, bounds):
            if len(chunk):
                grouped[int(ids[chunk[0]])] = [deltas[i] for i in chunk.tolist()]
        return grouped, self._mbo_trades(dbn)

    def _mbo_trades(self, dbn: DbnFile) -> list[TradeTick]:
        """Decode only the 'T' records, through NautilusTrader's MBO trade mapping."""
        trade_rows = dbn.records["action"] == b"T"
        if not trade_rows.any():
            return []
        data = decompress(dbn.path)
        meta_end = 8 + int.from_bytes(data[4:8], "little")
        with tempfile.TemporaryDirectory(prefix="ifd-trades-") as tmp:
            subset = Path(tmp) / "trades.mbo.dbn.zst"
            payload = data[:meta_end] + dbn.records[trade_rows].tobytes()
            subset.write_bytes(zstandard.ZstdCompressor(level=1).compress(payload))
            try:
                loaded = self._loader.from_dbn_file(subset, include_trades=True)
            except Exception as exc:
                raise IfdError(f"{dbn.path}: NautilusTrader cannot decode MBO trades ({exc})") from None
        return [obj for obj in loaded if isinstance(obj, TradeTick)]

    def load_market_data(self, dbn: DbnFile) -> list:
        """Trades, MBP-1/TBBO quotes with their trades, or statistics, as NautilusTrader data."""
        try:
            if dbn.schema == "statistics":
                return list(self._loader.from_dbn_file(dbn.path, as_legacy_cython=False))
            include_trades = dbn.schema in ("mbp-1", "tbbo")
            return list(self._loader.from_dbn_file(dbn.path, include_trades=include_trades))
        except Exception as exc:
            raise IfdError(f"{dbn.path}: NautilusTrader cannot decode {dbn.schema} ({exc})") from None
