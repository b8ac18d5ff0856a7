"""The no-op baseline: subscribes to every book delta and trade of the chain and does nothing.

It has no Python handlers, so a replay with it measures NautilusTrader's own cost (data engine,
L3 books, matching engine); `make bench` compares the IFD strategies against it.
"""

from __future__ import annotations

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.enums import BookType
from nautilus_trader.trading.strategy import Strategy


class NoOpConfig(StrategyConfig, frozen=True):
    """Subscribes to book deltas (L3, managed books) and trades of every instrument in the cache."""


class NoOp(Strategy):
    def on_start(self) -> None:
        for instrument_id in self.cache.instrument_ids():
            self.subscribe_order_book_deltas(instrument_id, book_type=BookType.L3_MBO)
            self.subscribe_trade_ticks(instrument_id)
