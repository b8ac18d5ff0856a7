"""What streaming from Databento's live gateway costs: bytes received, priced per schema.

Databento bills live data, like historical streaming, per uncompressed DBN byte sent, at a USD
per GB unit price per dataset, schema and feed mode (``metadata.list_unit_prices``, mode
``live``; a free metadata call). A node does not see the wire, so the bytes are counted from the
records it receives, at their DBN v3 sizes. NautilusTrader turns an MBO stream's add / cancel /
modify / clear records into book deltas but not its trade and fill records, so each trade also
counts ``mbo_bytes_per_trade`` of MBO (a trade and one fill record by default): an estimate meant
to err high. Databento's own usage report is the bill; this is what keeps the node under budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import databento_dbn

from ifd.errors import IfdError

LIVE_MODE = "live"
RECORD_BYTES = {  # DBN v3 record sizes
    "mbo": databento_dbn.MBOMsg.size_hint,
    "trades": databento_dbn.TradeMsg.size_hint,
    "definition": databento_dbn.InstrumentDefMsg.size_hint,
}
BYTES_PER_GB = 1_000_000_000


def live_unit_prices(client, dataset: str) -> dict[str, float]:
    """USD per GB by schema for the live feed of ``dataset`` (``client``: a ``databento.Historical``)."""
    listing = client.metadata.list_unit_prices(dataset=dataset)
    for entry in listing or []:
        if entry.get("mode") == LIVE_MODE:
            return {str(schema): float(price) for schema, price in (entry.get("unit_prices") or {}).items()}
    raise IfdError(f"{dataset}: Databento lists no live unit prices (modes: "
                   f"{', '.join(str(e.get('mode')) for e in listing or []) or 'none'})")


@dataclass
class LiveUsage:
    """Records received per schema since the last ``take``, and their cost at ``unit_prices`` (USD/GB)."""

    unit_prices: Mapping[str, float]
    mbo_bytes_per_trade: int = 2 * RECORD_BYTES["mbo"]
    _records: dict[str, int] = field(default_factory=dict)
    _bytes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for schema in ("mbo", "trades"):
            if schema not in self.unit_prices:
                raise IfdError(f"live unit prices: no price for schema {schema!r}")
            if not self.unit_prices[schema] >= 0:
                raise IfdError(f"live unit prices: {schema} price must be >= 0, got {self.unit_prices[schema]!r}")

    def add_book_records(self, count: int) -> None:
        """``count`` MBO add / cancel / modify / clear records (one per book delta)."""
        self._add("mbo", count, count * RECORD_BYTES["mbo"])

    def add_trades(self, count: int) -> None:
        """``count`` trades from the trades schema, and their records in the MBO stream."""
        self._add("trades", count, count * RECORD_BYTES["trades"])
        self._add("mbo", 0, count * self.mbo_bytes_per_trade)

    def add_definitions(self, count: int) -> None:
        """``count`` instrument definitions (sent when the node subscribes)."""
        self._add("definition", count, count * RECORD_BYTES["definition"])

    def _add(self, schema: str, records: int, size: int) -> None:
        self._records[schema] = self._records.get(schema, 0) + records
        self._bytes[schema] = self._bytes.get(schema, 0) + size

    def take(self) -> list[tuple[str, int, int, float, float]]:
        """(schema, records, bytes, unit price, cost USD) per schema since the last call; resets."""
        out = []
        for schema, size in sorted(self._bytes.items()):
            if size:
                price = float(self.unit_prices.get(schema, 0.0))
                out.append((schema, self._records.get(schema, 0), size, price, size / BYTES_PER_GB * price))
        self._records.clear()
        self._bytes.clear()
        return out
